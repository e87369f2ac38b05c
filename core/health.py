"""`/healthz`: the process answers. `/readyz`: its database, cache and broker answer too."""

from celery import current_app as celery_app
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.set("readyz", "1", 5)
    if cache.get("readyz") != "1":
        raise RuntimeError("cache did not return what was stored")


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


CHECKS = {"database": _database, "cache": _cache, "broker": _broker}


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as e:  # any failure means not ready; say which part, not its secrets
            results[name] = f"error: {type(e).__name__}"
    ready = all(v == "ok" for v in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)
