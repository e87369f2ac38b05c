"""Where usage records go once `chat.conclude` has written them.

With Redis, the settle script has already put each record on a Redis stream, durable with
the settlement; this only rings the usage app's ingester (a Celery task, by name) at most
every USAGE_LOG_FLUSH_SECONDS when there is something to read. Celery beat rings too, every
few seconds, for records a stopped process left behind.

On the embedded defaults (one web process, SQLite) the memory store hands each record here,
and this process stores them itself every USAGE_LOG_FLUSH_SECONDS, in a thread, through the
same ingestion code: nothing waits in a file broker, and a restart loses at most the records
of that last moment (README, Reliability).
"""

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from celery import current_app as celery_app
from django.conf import settings

from core import metrics
from usage import services as usage_services

log = logging.getLogger(__name__)

INGEST_TASK = "usage.tasks.ingest_stream"  # reads the Redis stream (usage/stream.py)
MAX_BATCH = 1000
MAX_BUFFERED = 200_000  # embedded: beyond this the database has been away for long; keep memory bounded


class UsagePipeline:
    """One per process: `sink` takes records to store here (embedded defaults), `written`
    notes records put on the Redis stream; `run` does the rest in the background."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.queued_at: list[float] = []  # when each pending record came (monotonic), for /metrics
        self.dirty = False
        self.stored = 0
        self.dropped = 0

    def sink(self, record: bytes) -> None:
        if len(self.pending) >= MAX_BUFFERED:
            self.dropped += 1
            metrics.USAGE_DROPPED.labels("buffer_full").inc()
            log.error("usage records waiting for the database exceed %d; dropping one", MAX_BUFFERED)
            return
        self.pending.append(record)
        self.queued_at.append(time.monotonic())
        metrics.USAGE_QUEUED.inc()

    def written(self) -> None:
        self.dirty = True

    async def flush(self) -> None:
        if self.dirty:
            self.dirty = False
            try:
                await asyncio.to_thread(_ring)
            except Exception:
                self.dirty = True
                log.warning("could not ring the usage ingester; the periodic one will read the stream", exc_info=True)
        while self.pending:
            batch = self.pending[:MAX_BATCH]
            try:
                await sync_to_async(usage_services.usage_ingest_payloads, thread_sensitive=False)(batch)
            except Exception:
                log.warning("could not store %d usage records now; retrying", len(batch), exc_info=True)
                return
            del self.pending[: len(batch)]
            del self.queued_at[: len(batch)]
            self.stored += len(batch)

    def backlog(self) -> tuple[float, float]:
        """(records waiting here, seconds since the oldest came): /metrics on the embedded defaults."""
        oldest = self.queued_at[0] if self.queued_at else None
        return float(len(self.pending)), 0.0 if oldest is None else time.monotonic() - oldest

    async def run(self) -> None:
        while True:
            await asyncio.sleep(settings.USAGE_LOG_FLUSH_SECONDS)
            await self.flush()


# Seconds a ring waits in the broker before a worker drops it unread: longer than one ingestion
# run lasts (usage/stream.py, MAX_SECONDS), so that no ring expires while a worker is busy
# (each expiry is a log line); rings piled up while no worker ran are dropped.
RING_EXPIRES = 20.0


def _ring() -> None:
    celery_app.send_task(INGEST_TASK, expires=RING_EXPIRES, retry=True,
                         retry_policy={"max_retries": 2, "interval_start": 0.2})


_pipeline = UsagePipeline()


def pipeline() -> UsagePipeline:
    return _pipeline


def written() -> None:
    """Records went onto the Redis stream (a no-op worth nothing on the embedded defaults)."""
    if settings.REDIS_URL:
        _pipeline.written()
