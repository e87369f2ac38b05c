"""Celery tasks of usage: each takes plain data or ids, and is safe to run twice."""

import logging
from datetime import date, timedelta
from typing import Any

import orjson
from celery import Task, shared_task
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from usage import services, stream
from usage.rollups import rebuild_day

log = logging.getLogger(__name__)

@shared_task
def ingest_stream() -> int:
    """Stores the usage records waiting on the Redis stream (the gateway rings this as it
    writes them; beat every few seconds for what a stopped process left). Not retried when
    the database or Redis is away: the records wait on the stream, unacknowledged, and the
    next run takes them up."""
    try:
        return stream.ingest_stream()
    except (DatabaseError, RedisError):
        log.warning("usage stream not ingested now; the next run takes it up", exc_info=True)
        return 0


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,  # the database coming back is worth waiting for: the records are the bill
)
def ingest_usage(self: Task, records: list[dict[str, Any]] | str) -> int:
    """Stores a batch of usage records (a list of record objects, or the JSON text of one), as
    gateways before the Redis stream sent them: batches already queued in a broker during
    an upgrade. A record already stored is skipped; one that cannot be is set aside."""
    rows: list[dict[str, Any]] = orjson.loads(records) if isinstance(records, str) else records
    return services.usage_ingest_payloads(list(rows))


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


@shared_task
def expire_log_content() -> int:
    """Deletes request content older than its project's contentRetentionDays."""
    return services.log_content_expire()
