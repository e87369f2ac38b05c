"""One Redis client per process and kind (sync for services and tasks, async for /v1)."""

import asyncio
from functools import cache

import redis
import redis.asyncio
from django.conf import settings


@cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


_async_clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}
_listener_clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}


def async_listener() -> redis.asyncio.Redis:
    """A client for pub/sub: it waits for messages indefinitely, so it has no socket
    timeout (the shared client's would end an idle subscription every few seconds)."""
    loop = asyncio.get_running_loop()
    if loop not in _listener_clients:
        _listener_clients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=None, socket_connect_timeout=2, health_check_interval=30
        )
    return _listener_clients[loop]


def async_client() -> redis.asyncio.Redis:
    """An asyncio client bound to the running event loop (each loop needs its own)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, max_connections=200
        )
        _async_clients[loop] = client
    return client
