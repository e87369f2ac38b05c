"""Celery tasks of usage: each takes plain data or ids, and is safe to run twice."""

from datetime import date, timedelta
from typing import Any

import orjson
from celery import shared_task
from django.db import DatabaseError
from django.utils import timezone

from gateway.record import UsageRecord
from usage import services
from usage.rollups import rebuild_day


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,  # the database coming back is worth waiting for: the records are the bill
)
def ingest_usage(self, records: list[dict[str, Any]] | str) -> int:
    """Inserts a batch of usage records (a list of gateway.record.UsageRecord objects, or the
    gateway's JSON text of one); a record already stored is skipped."""
    rows: list[dict[str, Any]] = orjson.loads(records) if isinstance(records, str) else records
    return services.usage_ingest(records=[UsageRecord.from_dict(r) for r in rows])


@shared_task
def reconcile_usage() -> dict:
    """Key usage and credits from the records; keys at their limit off, raised ones back on."""
    return services.usage_reconcile()


@shared_task
def rebuild_rollups(day: str | None = None) -> int:
    """Recomputes a day's rollups from the raw logs (yesterday by default): a nightly repair."""
    target = date.fromisoformat(day) if day else timezone.now().date() - timedelta(days=1)
    return rebuild_day(target)


@shared_task
def check_spend_alerts() -> int:
    return services.alerts_check()
