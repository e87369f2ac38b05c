"""The response cache: identical requests to a caching project get the stored answer.

The key is the project, its cache version (bumped when caching settings change, so old
answers are unreachable at once) and a hash of the complete request body: the smallest
change of any parameter misses. Never shared across projects, hence never across
organizations. Only complete, successful answers are stored.

With Redis, entries expire by themselves (SET EX) and every gateway process shares them. On
the embedded defaults they live in a database table that the cache-expiry task sweeps.
"""

import hashlib
from datetime import datetime, timedelta, timezone

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings

PREFIX = "llmgw:rc:"
MAX_ENTRY_BYTES = 4 * 1024 * 1024  # larger answers are served but not stored


def cache_key(project_id: str, version: int, body: bytes) -> str:
    return f"{PREFIX}{project_id}:{version}:{hashlib.sha256(body).hexdigest()}"


def project_prefix(project_id: str) -> str:
    return f"{PREFIX}{project_id}:"


class RedisResponseCache:
    async def get(self, key: str) -> dict | None:
        from gateway.redis import async_client

        raw = await async_client().get(key)
        return orjson.loads(raw) if raw else None

    async def put(self, key: str, project_id: str, entry: dict, ttl: int) -> None:
        from gateway.redis import async_client

        raw = orjson.dumps(entry)
        if len(raw) <= MAX_ENTRY_BYTES:
            await async_client().set(key, raw, ex=ttl)


class DatabaseResponseCache:
    @staticmethod
    @sync_to_async
    def get(key: str) -> dict | None:
        from gateway.models import CachedResponse

        row = CachedResponse.objects.filter(key=key, expires_at__gt=datetime.now(timezone.utc)).only("value").first()
        return orjson.loads(bytes(row.value)) if row else None

    @staticmethod
    @sync_to_async
    def put(key: str, project_id: str, entry: dict, ttl: int) -> None:
        from gateway.models import CachedResponse

        raw = orjson.dumps(entry)
        if len(raw) <= MAX_ENTRY_BYTES:
            CachedResponse.objects.update_or_create(
                key=key,
                defaults={"project_id": project_id, "value": raw, "size": len(raw),
                          "expires_at": datetime.now(timezone.utc) + timedelta(seconds=ttl)},
            )


_cache = None


def response_cache():
    global _cache
    if _cache is None:
        _cache = RedisResponseCache() if settings.REDIS_URL else DatabaseResponseCache()
    return _cache
