"""What usage came to over the last days, read from the daily rollups (usage/rollups.py): one
domain function, `usage_summary`, for the REST API (GET /api/v1/usage) and the dashboard
(a project's overview, an organization's usage page, an API key's usage panel)."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core.money import format_money
from projects.models import Organization, Project
from usage.models import DailyUsage, UsageLog
from usage.rollups import empty_histogram, percentile

# groupBy (the API's name) → the rollup column a group is keyed by.
GROUP_BY: dict[str, str] = {"apiKey": "api_key_id", "model": "model", "project": "project_id", "provider": "provider"}

_SUMS = {
    "requests": Sum("requests"),
    "cost": Sum("cost"),
    "promptTokens": Sum("prompt_tokens"),
    "completionTokens": Sum("completion_tokens"),
}
_DAY_SUMS = {**_SUMS, "cacheHits": Sum("cache_hits"), "errors": Sum("errors"),
             "cacheMisses": Sum("cache_misses"), "saved": Sum("saved_cost")}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _rollups(*, project: Project | None, organization: Organization | None, api_key_id: str | None,
             since: date) -> QuerySet[DailyUsage]:
    if (project is None) == (organization is None):
        raise TypeError("usage_summary takes a project or an organization, not both")
    rows = DailyUsage.objects.filter(day__gte=since)
    if project is not None:
        rows = rows.filter(project=project)  # the (project, day) index
    else:
        # A literal list of the organization's projects: each one a range of that index.
        rows = rows.filter(project_id__in=list(Project.objects.filter(organization=organization).values_list("pk", flat=True)))
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    return rows


def _by_cost(items: list[dict], name: str) -> list[dict]:
    """Highest cost first, then most requests, then by name (stable across calls)."""
    return sorted(items, key=lambda item: (-item["cost"], -item["requests"], item[name]))


def usage_summary(
    *,
    project: Project | None = None,
    organization: Organization | None = None,
    api_key_id: str | None = None,
    days: int = 30,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Usage of one project, or of every project of an organization (exactly one of the two),
    optionally of one API key only, over `days` UTC days ending today. Summed by the database
    from the daily rollups: one query per breakdown, however many requests there were.

    Returns (docs/api.md §14; USD as decimal strings, durations in milliseconds):
      {"summary": {"requests", "cost", "promptTokens", "completionTokens", "cacheHitRate",
                   "cacheSavings", "errorRate", "p50Duration", "p95Duration"},
       "daily": [{"date": "YYYY-MM-DD", "requests", "cost", "promptTokens", "completionTokens",
                  "cacheHits", "errors"}]  one per day, oldest first, zeros included,
       "byModel": [{"model", "provider", "requests", "cost", "promptTokens", "completionTokens"}],
       "groups": [{"key", "requests", "cost", "promptTokens", "completionTokens"}]  only with
                 `group_by` (a key of GROUP_BY); `key` is the API key's id, the model (the one
                 that answered, else the one asked for), the project's id or the provider; ""
                 when the request had none (refused before routing)}
    byModel and groups: highest cost first, then most requests."""
    if group_by is not None and group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    since = timezone.now().date() - timedelta(days=days - 1)
    rows = _rollups(project=project, organization=organization, api_key_id=api_key_id, since=since)

    sums: list[dict[str, Any]] = [dict(r) for r in rows.values("day").annotate(**_DAY_SUMS).order_by("day")]
    daily = {row["day"]: row for row in sums}
    total: dict[str, Any] = {name: sum((d[name] for d in sums), Decimal(0) if name in ("cost", "saved") else 0)
                             for name in _DAY_SUMS}
    histogram = empty_histogram()
    for counts in rows.values_list("duration_histogram", flat=True):
        # rows stored before a bucket was added are shorter
        histogram = [a + b for a, b in zip(histogram, counts or empty_histogram(), strict=False)]
    by_model: list[dict[str, Any]] = [dict(r) for r in rows.values("model", "provider").annotate(**_SUMS).order_by()]

    usage: dict[str, Any] = {
        "summary": {
            "requests": total["requests"],
            "cost": format_money(total["cost"]),
            "promptTokens": total["promptTokens"],
            "completionTokens": total["completionTokens"],
            "cacheHitRate": _rate(total["cacheHits"], total["cacheHits"] + total["cacheMisses"]),
            "cacheSavings": format_money(total["saved"]),
            "errorRate": _rate(total["errors"], total["requests"]),
            "p50Duration": percentile(histogram, 0.5),
            "p95Duration": percentile(histogram, 0.95),
        },
        "daily": [_day(since + timedelta(days=i), daily) for i in range(days)],
        "byModel": [_money(m) for m in _by_cost(by_model, "model")],
    }
    if group_by is not None:
        column = GROUP_BY[group_by]
        groups: list[dict[str, Any]] = list(rows.values(column).annotate(**_SUMS).order_by())
        usage["groups"] = [_money({"key": g.pop(column), **g}) for g in _by_cost(groups, column)]
    return usage


def _day(day: date, daily: dict) -> dict:
    row = daily.get(day, {})
    return {
        "date": day.isoformat(),
        "requests": row.get("requests", 0),
        "cost": format_money(row.get("cost", Decimal(0))),
        "promptTokens": row.get("promptTokens", 0),
        "completionTokens": row.get("completionTokens", 0),
        "cacheHits": row.get("cacheHits", 0),
        "errors": row.get("errors", 0),
    }


def _money(values: dict) -> dict:
    return {k: format_money(v) if k == "cost" else v for k, v in values.items()}


def spend_since(*, organization_id: str, project_id: str | None, since) -> Decimal:
    """What an organization (or one project) spent from `since` (a date) on."""
    rows = DailyUsage.objects.filter(project__organization_id=organization_id, day__gte=since)
    if project_id:
        rows = rows.filter(project_id=project_id)
    return sum((r for r in rows.values_list("cost", flat=True)), Decimal(0))


# --- the last hour and day per provider, from the log itself (the rollups are per day) -----------

PERCENTILES = (0.5, 0.95)
# Metric name → the log's column, in milliseconds (time to first token is null when nothing was sent).
TIMINGS = {"Duration": "duration", "TimeToFirstToken": "time_to_first_token"}


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont: the value at `fraction` of the ordered non-null values,
    interpolated between the two nearest ranks."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _interpolated(ranked: dict[int, float], count: int, fraction: float) -> int | None:
    """percentile_cont from the values at the two ranks around fraction × (count - 1)."""
    if not count:
        return None
    position = fraction * (count - 1)
    low = int(position)
    below = ranked.get(low)
    if below is None:
        return None
    above = ranked.get(low + 1, below)
    return round(below + (position - low) * (above - below))


def _ranked_percentiles(logs: QuerySet[UsageLog], column: str) -> dict[str, dict[float, int | None]]:
    """Per provider, the PERCENTILES of `column`, for databases without percentile_cont
    (SQLite): window functions number each provider's values in order, and only the rows at
    the ranks interpolation needs come back (four a provider), never the log itself."""
    ranked = (logs.filter(**{f"{column}__isnull": False}).order_by()
              .annotate(metric_value=F(column),
                        metric_rank=Window(RowNumber(), partition_by=[F("used_provider")], order_by=F(column).asc()),
                        metric_count=Window(Count("pk"), partition_by=[F("used_provider")]))
              .values_list("used_provider", "metric_value", "metric_rank", "metric_count"))
    sql, params = ranked.query.sql_with_params()
    wanted = ", ".join(f"CAST((metric_count - 1) * {p!r} AS INTEGER){extra}" for p in PERCENTILES for extra in ("", " + 1"))
    values: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT used_provider, metric_value, metric_rank, metric_count FROM ({sql}) ranked "
                       f"WHERE metric_rank - 1 IN ({wanted})", params)
        for provider, value, rank, size in cursor.fetchall():
            values.setdefault(provider, {})[rank - 1] = float(value)
            sizes[provider] = size
    return {provider: {p: _interpolated(values[provider], sizes[provider], p) for p in PERCENTILES} for provider in values}


def provider_metrics(*, organization: Organization, since: datetime) -> list[dict[str, Any]]:
    """Every project of the organization together, per provider (`""`: refused before one
    was reached) since `since`: requests, errors, errorRate and the p50/p95 of the duration
    and of the time to first token (milliseconds, None when there is none), most requests
    first. Read from the usage log, as the usage API, and aggregated by the database:
    PostgreSQL's percentile_cont, or window functions elsewhere (_ranked_percentiles)."""
    project_ids = list(Project.objects.filter(organization=organization).values_list("pk", flat=True))
    logs = UsageLog.objects.filter(project_id__in=project_ids, created_at__gte=since)
    sums: dict[str, Any] = {"requests": Count("pk"), "errors": Count("pk", filter=Q(has_error=True))}
    postgres = connection.vendor == "postgresql"
    if postgres:
        for name, column in TIMINGS.items():
            for p in PERCENTILES:
                sums[f"p{round(p * 100)}{name}"] = PercentileCont(column, p)
    rows: list[dict[str, Any]] = [dict(r) for r in logs.values("used_provider").annotate(**sums).order_by()]
    if not postgres and rows:
        for name, column in TIMINGS.items():
            percentiles = _ranked_percentiles(logs, column)
            for row in rows:
                for p in PERCENTILES:
                    row[f"p{round(p * 100)}{name}"] = percentiles.get(row["used_provider"], {}).get(p)
    out = []
    for row in rows:
        provider = row.pop("used_provider")
        timings = {k: None if v is None else round(v) for k, v in row.items() if k.startswith("p")}
        out.append({"provider": provider, "requests": row["requests"], "errors": row["errors"],
                    "errorRate": _rate(row["errors"], row["requests"]), **timings})
    return sorted(out, key=lambda r: (-r["requests"], r["provider"]))
