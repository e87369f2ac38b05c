"""Celery tasks of the kernel: each safe to run twice."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from core.models import Event


@shared_task  # type: ignore[untyped-decorator]  # celery ships no type hints
def purge_events() -> int:
    """Events are read within a second; an hour later nobody needs them."""
    deleted, _ = Event.objects.filter(created_at__lt=timezone.now() - timedelta(hours=1)).delete()
    return deleted
