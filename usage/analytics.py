"""What a project's usage came to over the last days, read from the daily rollups."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from core.money import format_money
from usage.models import DailyUsage
from usage.rollups import empty_histogram, percentile


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def usage_summary(*, project, days: int = 30) -> dict:
    since = timezone.now().date() - timedelta(days=days - 1)
    rows = DailyUsage.objects.filter(project=project, day__gte=since).order_by("day")
    total: dict[str, Any] = {"requests": 0, "errors": 0, "hits": 0, "misses": 0, "prompt": 0, "completion": 0,
             "cost": Decimal(0), "saved": Decimal(0)}
    histogram = empty_histogram()
    daily: dict = defaultdict(lambda: {"requests": 0, "cost": Decimal(0), "promptTokens": 0, "completionTokens": 0,
                                       "cacheHits": 0, "errors": 0})
    by_model: dict = defaultdict(lambda: {"requests": 0, "cost": Decimal(0), "promptTokens": 0, "completionTokens": 0})
    for row in rows:
        for name, value in (("requests", row.requests), ("errors", row.errors), ("hits", row.cache_hits),
                            ("misses", row.cache_misses), ("prompt", row.prompt_tokens),
                            ("completion", row.completion_tokens), ("cost", row.cost), ("saved", row.saved_cost)):
            total[name] += value
        histogram = [a + b for a, b in zip(histogram, row.duration_histogram or empty_histogram(), strict=False)]  # rows stored before a bucket was added are shorter
        day = daily[row.day.isoformat()]
        day["requests"] += row.requests
        day["cost"] += row.cost
        day["promptTokens"] += row.prompt_tokens
        day["completionTokens"] += row.completion_tokens
        day["cacheHits"] += row.cache_hits
        day["errors"] += row.errors
        model = by_model[(row.model, row.provider)]
        model["requests"] += row.requests
        model["cost"] += row.cost
        model["promptTokens"] += row.prompt_tokens
        model["completionTokens"] += row.completion_tokens
    return {
        "summary": {
            "requests": total["requests"],
            "cost": format_money(total["cost"]),
            "promptTokens": total["prompt"],
            "completionTokens": total["completion"],
            "cacheHitRate": _rate(total["hits"], total["hits"] + total["misses"]),
            "cacheSavings": format_money(total["saved"]),
            "errorRate": _rate(total["errors"], total["requests"]),
            "p50Duration": percentile(histogram, 0.5),
            "p95Duration": percentile(histogram, 0.95),
        },
        "daily": [
            {"date": (since + timedelta(days=i)).isoformat(),
             **_money(daily.get((since + timedelta(days=i)).isoformat(), _zero_day()))}
            for i in range(days)
        ],
        "byModel": sorted(
            ({"model": m, "provider": p, **_money(v)} for (m, p), v in by_model.items()),
            key=lambda item: (-Decimal(item["cost"]), -item["requests"]),
        ),
    }


def _zero_day() -> dict:
    return {"requests": 0, "cost": Decimal(0), "promptTokens": 0, "completionTokens": 0, "cacheHits": 0, "errors": 0}


def _money(values: dict) -> dict:
    return {k: format_money(v) if k == "cost" else v for k, v in values.items()}


def spend_since(*, organization_id: str, project_id: str | None, since) -> Decimal:
    """What an organization (or one project) spent from `since` (a date) on."""
    rows = DailyUsage.objects.filter(project__organization_id=organization_id, day__gte=since)
    if project_id:
        rows = rows.filter(project_id=project_id)
    return sum((r for r in rows.values_list("cost", flat=True)), Decimal(0))
