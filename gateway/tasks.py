"""Celery tasks of the gateway: each safe to run twice."""

from celery import shared_task

from gateway import cache


@shared_task  # type: ignore[untyped-decorator]  # celery ships no type hints
def expire_response_cache() -> int:
    return cache.sweep()
