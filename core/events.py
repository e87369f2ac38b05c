"""Changes the gateway processes must hear about at once: configuration that their key
snapshots hold, and projects deleted while requests of theirs are in flight.

Every event goes out after its transaction commits. With Redis, events go over pub/sub;
on the embedded defaults through a small table that each gateway process polls, so that
separate processes (web, Celery) still reach each other without Redis.

Pub/sub is quick but not instant, so a configuration change also bumps the organization's
configuration version, before the change's 2xx answer is sent: in Redis (INCR), or in this
process's memory on the embedded defaults (where the web process that answers the change is
the only gateway process). The gateway reads the version with the spend script every request
already runs, and a snapshot older than it is reloaded: a change is in force on every
process once its answer is out.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from core.models import Event
from core.redis import async_listener, sync_client

log = logging.getLogger(__name__)

CHANNEL = "llmgw:events"
POLL_SECONDS = 0.25
CONFIG_VERSION_KEY = "llmgw:cfgver:{}"  # organization id → its configuration version (Redis)
_local_versions: dict[str, int] = {}  # the same on the embedded defaults (one web process)


def config_version(organization_id: str) -> int:
    """The organization's configuration version now (0 before its first change)."""
    if settings.REDIS_URL:
        # redis-py types its sync and async answers as one union; the sync client's is bytes
        return int(cast(bytes | None, sync_client().get(CONFIG_VERSION_KEY.format(organization_id))) or 0)
    return _local_versions.get(organization_id, 0)


def local_config_version(organization_id: str) -> int:
    """The embedded defaults' version, read without I/O (the gateway's memory store)."""
    return _local_versions.get(organization_id, 0)


def _bump_version(organization_id: str) -> None:
    if settings.REDIS_URL:
        sync_client().incr(CONFIG_VERSION_KEY.format(organization_id))
    else:
        _local_versions[organization_id] = _local_versions.get(organization_id, 0) + 1


def _publish_now(event: dict[str, Any]) -> None:
    if settings.REDIS_URL:
        sync_client().publish(CHANNEL, orjson.dumps(event))
    else:
        Event.objects.create(data=event)


def publish(kind: str, **data: Any) -> None:
    """Sends the event once the current transaction commits (at once outside one)."""
    event = {"kind": kind, **data}

    def send() -> None:
        try:
            _publish_now(event)
        except Exception:  # the snapshot TTL still bounds staleness; never fail the write
            log.exception("could not publish event %s", kind)

    transaction.on_commit(send)


def config_changed(organization_id: str) -> None:
    """The organization's keys, rules, provider keys, projects or credits changed: once the
    transaction commits, its version goes up (synchronously) and the event goes out."""

    def bump() -> None:
        try:
            _bump_version(organization_id)
        except Exception:  # the event (and the snapshot TTL) still bound staleness
            log.exception("could not bump the configuration version of %s", organization_id)

    transaction.on_commit(bump)
    publish("config", organization=organization_id)


def project_deleted(project_id: str, organization_id: str) -> None:
    config_changed(organization_id)
    publish("project_deleted", project=project_id, organization=organization_id)


async def listen(handle: Callable[[dict[str, Any]], None]) -> None:
    """Calls `handle(event)` for every event, for as long as the process lives."""
    if settings.REDIS_URL:
        await _listen_redis(handle)
    else:
        await _listen_table(handle)


async def _listen_redis(handle: Callable[[dict[str, Any]], None]) -> None:
    while True:
        try:
            pubsub = async_listener().pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(CHANNEL)
            handle({"kind": "resync"})  # events may have been missed while disconnected
            async for message in pubsub.listen():
                if message and message.get("type") == "message":
                    handle(orjson.loads(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("event subscription lost; reconnecting", exc_info=True)
            await asyncio.sleep(1)


async def _listen_table(handle: Callable[[dict[str, Any]], None]) -> None:
    @sync_to_async
    def latest_id() -> int:
        return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    @sync_to_async
    def since(last: int) -> list[tuple[int, Any]]:
        return list(Event.objects.filter(id__gt=last).order_by("id").values_list("id", "data")[:1000])

    last = None
    while True:
        try:
            if last is None:
                last = await latest_id()
            for event_id, data in await since(last):
                last = event_id
                handle(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("could not read events; retrying", exc_info=True)
        await asyncio.sleep(POLL_SECONDS)
