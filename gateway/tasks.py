"""Celery tasks of the gateway: each safe to run twice."""

from celery import shared_task

from gateway import cache, store


@shared_task  # type: ignore[untyped-decorator]  # celery ships no type hints
def expire_response_cache() -> int:
    return cache.sweep()


@shared_task  # type: ignore[untyped-decorator]  # celery ships no type hints
def expire_holds() -> int:
    """Releases spend reservations their process stopped renewing (gateway/store.py)."""
    return store.sweep_expired_holds()
