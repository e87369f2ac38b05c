"""Celery tasks of usage: each takes plain data or ids, and is safe to run twice."""

from celery import shared_task
from django.db import DatabaseError

from usage import services


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,  # the database coming back is worth waiting for: the records are the bill
)
def ingest_usage(self, records: list[dict]) -> int:
    """Inserts a batch of usage records; a record already stored is skipped."""
    return services.usage_ingest(records=records)
