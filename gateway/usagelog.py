"""Usage records leave the request path at once: buffered in memory for a moment, then sent
in batches to the Celery task that bulk-inserts them (usage.tasks.ingest_usage).

Sending happens in a thread so a slow broker never blocks the event loop; a batch that
cannot be sent stays buffered and is tried again.
"""

import asyncio
import logging

import orjson
from celery import current_app as celery_app
from django.conf import settings

from gateway.record import UsageRecord

log = logging.getLogger(__name__)

INGEST_TASK = "usage.tasks.ingest_usage"  # stores the records (usage/services.py)
MAX_BATCH = 500
MAX_BUFFERED = 200_000  # beyond this the broker has been down for long; keep memory bounded


class UsageLogBuffer:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.sent = 0
        self.dropped = 0

    def add(self, record: UsageRecord) -> None:
        if len(self.records) >= MAX_BUFFERED:
            self.dropped += 1
            log.error("usage log buffer full; dropping record %s", record.request_id)
            return
        self.records.append(record)

    async def flush(self) -> None:
        while self.records:
            batch = self.records[:MAX_BATCH]
            try:
                await asyncio.to_thread(_send, batch)
            except Exception:
                log.warning("could not queue %d usage records; retrying", len(batch), exc_info=True)
                return
            del self.records[: len(batch)]
            self.sent += len(batch)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(settings.USAGE_LOG_FLUSH_SECONDS)
            await self.flush()


def _send(batch: list[UsageRecord]) -> None:
    # By name: the data plane hands records over without importing the usage app. One string
    # argument: orjson encodes the batch far faster than kombu's json would.
    celery_app.send_task(
        INGEST_TASK, args=[orjson.dumps(batch).decode()],
        retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2},
    )
