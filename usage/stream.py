"""Reading usage records off the Redis stream the gateway writes them to (gateway/store.py's
settle script), in a consumer group: each worker reads its own share, acknowledges and
deletes entries once their rows are committed, and takes over the entries of a worker that
died before acknowledging (after STALE_MS). A record delivered twice is stored once (its log
id), so nothing is lost and nothing doubled."""

import os
import socket
from typing import Any, cast

from django.conf import settings
from redis.exceptions import ResponseError

from core.redis import sync_client
from gateway.record import USAGE_GROUP, USAGE_STREAM
from usage import services

BATCH = 1000
STALE_MS = 30_000  # an entry delivered this long ago and never acknowledged: its worker is gone


def _consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group() -> None:
    try:
        sync_client().xgroup_create(USAGE_STREAM, USAGE_GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def _store(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
    if not entries:
        return 0
    stored = services.usage_ingest_payloads([fields.get(b"r", b"") for _, fields in entries])
    ids = [entry_id for entry_id, _ in entries]
    client = sync_client()
    client.xack(USAGE_STREAM, USAGE_GROUP, *ids)
    client.xdel(USAGE_STREAM, *ids)
    return stored


def ingest_stream(max_records: int = 20_000) -> int:
    """Stores what the stream holds, in batches, up to `max_records` per call (the next call
    goes on). Returns how many new rows were stored."""
    if not settings.REDIS_URL:
        return 0
    _ensure_group()
    client, consumer, stored, seen = sync_client(), _consumer(), 0, 0
    # First what this consumer was given and did not acknowledge (a run that failed, the
    # database away), then what dead consumers left, then what is new. redis-py types its
    # sync and async answers as one union: these are the sync client's.
    for start in ("0", ">"):
        if start == ">":
            claim = cast(list[Any], client.xautoclaim(USAGE_STREAM, USAGE_GROUP, consumer, min_idle_time=STALE_MS,
                                                      start_id="0", count=BATCH))
            stored += _store(claim[1])
        while seen < max_records:
            answer = cast(list[Any], client.xreadgroup(USAGE_GROUP, consumer, {USAGE_STREAM: start}, count=BATCH))
            entries = answer[0][1] if answer else []
            if not entries:
                break
            stored += _store(entries)
            seen += len(entries)
    return stored


def backlog() -> int:
    """Records on the stream not yet stored."""
    return int(cast(int, sync_client().xlen(USAGE_STREAM))) if settings.REDIS_URL else 0
