"""The response cache: identical requests to a caching project get the stored answer.

The key is the project, its cache version (bumped when caching settings change, so old
answers are unreachable at once) and a hash of the complete request body: the smallest
change of any parameter misses. Never shared across projects, hence never across
organizations. Only complete, successful answers are stored.

With Redis, entries expire by themselves (SET EX) and every gateway process shares them. On
the embedded defaults they live in a database table that the cache-expiry task sweeps.
"""

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Count, Sum

from core.redis import async_client, sync_client
from gateway.models import CachedResponse, CacheStats
from projects.models import Project

PREFIX = "llmgw:rc:"
MAX_ENTRY_BYTES = 4 * 1024 * 1024  # larger answers are served but not stored


def cache_key(project_id: str, version: int, body: bytes, endpoint: str = "chat.completions") -> str:
    """The entry of a request body sent to an endpoint (the same body means different things to
    /v1/chat/completions and /v1/messages, and is answered in different shapes)."""
    digest = hashlib.sha256(endpoint.encode() + b"\n" + body).hexdigest()
    return f"{PREFIX}{project_id}:{version}:{digest}"


class RedisResponseCache:
    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await async_client().get(key)
        return orjson.loads(raw) if raw else None

    async def put(self, key: str, project_id: str, entry: dict[str, Any], ttl: int) -> None:
        raw = orjson.dumps(entry)
        if len(raw) <= MAX_ENTRY_BYTES:
            await async_client().set(key, raw, ex=ttl)


class DatabaseResponseCache:
    @staticmethod
    @sync_to_async
    def get(key: str) -> dict[str, Any] | None:
        row = CachedResponse.objects.filter(key=key, expires_at__gt=datetime.now(UTC)).only("value").first()
        return orjson.loads(bytes(row.value)) if row else None

    @staticmethod
    @sync_to_async
    def put(key: str, project_id: str, entry: dict[str, Any], ttl: int) -> None:
        raw = orjson.dumps(entry)
        if len(raw) <= MAX_ENTRY_BYTES:
            CachedResponse.objects.update_or_create(
                key=key,
                defaults={"project_id": project_id, "value": raw, "size": len(raw),
                          "expires_at": datetime.now(UTC) + timedelta(seconds=ttl)},
            )


_cache: RedisResponseCache | DatabaseResponseCache | None = None


def response_cache() -> RedisResponseCache | DatabaseResponseCache:
    global _cache
    if _cache is None:
        _cache = RedisResponseCache() if settings.REDIS_URL else DatabaseResponseCache()
    return _cache


# --- the sweep (Celery: gateway.tasks.expire_response_cache) -----------------------------------


def _live_versions() -> dict[str, int]:
    """project id → the cache version its entries must carry (caching projects only)."""
    return dict(Project.objects.filter(caching_enabled=True).values_list("id", "cache_version"))


def _is_current(key: str, live: dict[str, int]) -> bool:
    project_id, version = key[len(PREFIX):].split(":")[:2]
    return live.get(project_id) == int(version)


def _save_stats(stats: dict[str, list[int]], live: dict[str, int]) -> None:
    for project_id in live:
        entries, size = stats.get(project_id, [0, 0])
        CacheStats.objects.update_or_create(project_id=project_id, defaults={"entries": entries, "bytes": size})


def sweep() -> int:
    """Removes expired entries and those of deleted projects or changed settings, and
    measures what each project's cache holds. Returns how many entries went."""
    live = _live_versions()
    removed = _sweep_redis(live) if settings.REDIS_URL else _sweep_table(live)
    return removed


def _sweep_table(live: dict[str, int]) -> int:
    expired, _ = CachedResponse.objects.filter(expires_at__lte=datetime.now(UTC)).delete()
    stale = [k for k in CachedResponse.objects.values_list("key", flat=True).iterator() if not _is_current(k, live)]
    for start in range(0, len(stale), 500):
        CachedResponse.objects.filter(key__in=stale[start:start + 500]).delete()
    totals = CachedResponse.objects.values("project_id").annotate(n=Count("key"), size=Sum("size"))
    _save_stats({t["project_id"]: [t["n"], t["size"]] for t in totals}, live)
    return expired + len(stale)


def _sweep_redis(live: dict[str, int]) -> int:
    client = sync_client()
    removed = 0
    stats: dict[str, list[int]] = {}
    batch: list[bytes] = []

    def measure(keys: list[bytes]) -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.strlen(key)
        for key, size in zip(keys, pipe.execute(), strict=True):
            project_stats = stats.setdefault(key.decode()[len(PREFIX):].split(":")[0], [0, 0])
            project_stats[0] += 1
            project_stats[1] += size

    for key in client.scan_iter(match=f"{PREFIX}*", count=1000):
        if _is_current(key.decode(), live):
            batch.append(key)
            if len(batch) >= 1000:
                measure(batch)
                batch = []
        else:
            # redis-py types commands for its sync and async clients alike; the sync one returns an int
            removed += client.unlink(key)  # type: ignore[operator]
    if batch:
        measure(batch)
    _save_stats(stats, live)
    return removed
