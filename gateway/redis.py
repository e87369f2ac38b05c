"""One Redis client per process and kind (sync for services and tasks, async for /v1)."""

from functools import cache

from django.conf import settings


@cache
def sync_client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


_async_clients: dict = {}


def async_client():
    """An asyncio client bound to the running event loop (each loop needs its own)."""
    import asyncio

    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, max_connections=200
        )
        _async_clients[loop] = client
    return client
