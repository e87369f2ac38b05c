"""Reading usage records off the Redis stream the gateway writes them to (gateway/store.py's
settle script), in a consumer group: each worker reads its own share, acknowledges and
deletes entries once their rows are committed, and takes over the entries of a worker that
died before acknowledging (after STALE_MS). A record delivered twice is stored once (its log
id), so nothing is lost and nothing doubled.

Batches are sized by count and time, not by how often the gateway rings: once a batch has
its first record, the ingester waits up to USAGE_INGEST_BATCH_SECONDS for more (up to
USAGE_INGEST_BATCH records) before storing it, because each batch costs one transaction, a
lock per project, a rollup merge and a key update whatever its size. A run goes on while
records keep coming and ends as soon as the stream is empty (or after MAX_SECONDS, so the
worker's other tasks get their turn; the next ring goes on). Several workers ringing at
once read disjoint shares of the same group: ingestion spreads over them.
"""

import os
import socket
import time
from typing import Any, cast

from django.conf import settings
from redis import Redis
from redis.exceptions import ResponseError

from core.redis import sync_client
from gateway.record import USAGE_GROUP, USAGE_STREAM
from usage import services

STALE_MS = 30_000  # an entry delivered this long ago and never acknowledged: its worker is gone
MAX_SECONDS = 10.0  # one run's share of the worker

Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group() -> None:
    try:
        sync_client().xgroup_create(USAGE_STREAM, USAGE_GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def _store(client: Redis, entries: Entries) -> int:
    """Stores the entries' records in one batch, then acknowledges and deletes the entries
    (one round trip). Returns how many new rows were stored."""
    if not entries:
        return 0
    stored = services.usage_ingest_payloads([fields.get(b"r", b"") for _, fields in entries])
    ids = [entry_id for entry_id, _ in entries]
    pipe = client.pipeline(transaction=False)
    pipe.xack(USAGE_STREAM, USAGE_GROUP, *ids)
    pipe.xdel(USAGE_STREAM, *ids)
    pipe.execute()
    return stored


def _read(client: Redis, consumer: str, start: str, count: int) -> Entries:
    """Up to `count` entries, at once: "0" this consumer's unacknowledged ones, ">" new ones.
    redis-py types its sync and async answers as one union: these are the sync client's."""
    answer = cast(list[Any], client.xreadgroup(USAGE_GROUP, consumer, {USAGE_STREAM: start}, count=count))
    return answer[0][1] if answer else []


def ingest_stream(max_records: int = 100_000, max_seconds: float = MAX_SECONDS) -> int:
    """Stores what the stream holds and what comes while it runs, in batches of up to
    USAGE_INGEST_BATCH records gathered over at most USAGE_INGEST_BATCH_SECONDS; returns
    when the stream is empty, or after `max_records` records or `max_seconds` seconds (the
    next call goes on). Returns how many new rows were stored. Raises redis and database
    errors; unacknowledged entries are then read again by the next run."""
    if not settings.REDIS_URL:
        return 0
    _ensure_group()
    client, consumer = sync_client(), _consumer()
    size, window = settings.USAGE_INGEST_BATCH, settings.USAGE_INGEST_BATCH_SECONDS
    # What this consumer was given and did not acknowledge (a run that failed, the database
    # away), then what dead consumers left, then what is new.
    stored = _store(client, _read(client, consumer, "0", size))
    claimed = cast(list[Any], client.xautoclaim(USAGE_STREAM, USAGE_GROUP, consumer, min_idle_time=STALE_MS,
                                                start_id="0", count=size))
    stored += _store(client, claimed[1])
    started, seen = time.monotonic(), 0
    while seen < max_records and time.monotonic() - started < max_seconds:
        batch = _read(client, consumer, ">", size)
        if not batch:
            break  # the stream is empty
        if len(batch) < size:
            time.sleep(window)  # let the batch fill: what it costs hardly depends on its size
            batch += _read(client, consumer, ">", size - len(batch))
        stored += _store(client, batch)
        seen += len(batch)
    return stored


def backlog() -> int:
    """Records on the stream not yet stored."""
    return int(cast(int, sync_client().xlen(USAGE_STREAM))) if settings.REDIS_URL else 0
