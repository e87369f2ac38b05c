"""Daily aggregates of the usage log, so analytics stay fast at millions of rows."""

from bisect import bisect_left
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction

from gateway.record import UsageRecord
from projects.models import Project
from usage.models import DURATION_BUCKETS, DailyUsage, UsageLog


def empty_histogram() -> list[int]:
    return [0] * (len(DURATION_BUCKETS) + 1)


def bucket(duration_ms: int) -> int:
    return bisect_left(DURATION_BUCKETS, duration_ms)


def percentile(histogram: list[int], p: float) -> int | None:
    """The duration (ms, a bucket's upper bound) under which a share p of requests fall."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen = p * total, 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return DURATION_BUCKETS[index] if index < len(DURATION_BUCKETS) else DURATION_BUCKETS[-1] * 2
    return None


class _Sums:
    def __init__(self):
        self.requests = self.errors = self.cache_hits = self.cache_misses = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = self.saved_cost = Decimal(0)
        self.histogram = empty_histogram()

    def add(self, *, has_error, cache_status, prompt_tokens, completion_tokens, cost, saved_cost, duration):
        self.requests += 1
        self.errors += bool(has_error)
        self.cache_hits += cache_status == "hit"
        self.cache_misses += cache_status == "miss"
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost += Decimal(cost)
        self.saved_cost += Decimal(saved_cost)
        self.histogram[bucket(duration)] += 1

    def apply_to(self, row: DailyUsage) -> None:
        for field in ("requests", "errors", "cache_hits", "cache_misses", "prompt_tokens", "completion_tokens", "cost", "saved_cost"):
            setattr(row, field, getattr(row, field) + getattr(self, field))
        current = row.duration_histogram or empty_histogram()
        row.duration_histogram = [a + b for a, b in zip(current, self.histogram, strict=False)]


def _group(project_id: str, created_at: datetime, api_key_id: str, model: str, provider: str) -> tuple:
    return (project_id, created_at.date(), api_key_id, model, provider)


def add_records(records: list[UsageRecord]) -> None:
    """Adds freshly stored log records to their days' rows (inside the ingest transaction)."""
    groups: dict[tuple, _Sums] = defaultdict(_Sums)
    for r in records:
        model = r.used_model or r.requested_model
        key = _group(r.project_id, r.created, r.api_key_id, model[:200], r.used_provider)
        groups[key].add(
            has_error=r.has_error, cache_status=r.cache_status, prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens, cost=r.cost, saved_cost=r.saved_cost, duration=r.duration,
        )
    _merge(groups)


def _merge(groups: dict[tuple, "_Sums"]) -> None:
    for key in sorted(groups):  # a fixed order: concurrent batches cannot deadlock
        project_id, day, api_key_id, model, provider = key
        row, _ = DailyUsage.objects.select_for_update().get_or_create(
            project_id=project_id, day=day, api_key_id=api_key_id, model=model, provider=provider,
            defaults={"duration_histogram": empty_histogram()},
        )
        groups[key].apply_to(row)
        row.save()


_REBUILD_FIELDS = (
    "project_id", "created_at", "api_key_id", "used_model", "requested_model", "used_provider", "has_error",
    "cache_status", "prompt_tokens", "completion_tokens", "cost", "saved_cost", "duration",
)


@transaction.atomic
def rebuild_day(day: date) -> int:
    """Recomputes one day's rows from the raw logs: the repair for any drift. Idempotent."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    groups: dict[tuple, _Sums] = defaultdict(_Sums)
    # Project by project, so that each scan runs on the (project, created_at) index.
    for project_id in Project.objects.values_list("id", flat=True):
        logs = UsageLog.objects.filter(
            project_id=project_id, created_at__gte=start, created_at__lt=start + timedelta(days=1)
        ).values_list(*_REBUILD_FIELDS)
        for (project, created_at, key_id, used_model, requested_model, provider, has_error, cache_status,
             prompt, completion, cost, saved, duration) in logs.iterator(chunk_size=5000):
            groups[_group(project, created_at, key_id, (used_model or requested_model)[:200], provider)].add(
                has_error=has_error, cache_status=cache_status, prompt_tokens=prompt, completion_tokens=completion,
                cost=cost, saved_cost=saved, duration=duration,
            )
    DailyUsage.objects.filter(day=day).delete()
    _merge(groups)
    return len(groups)
