"""Usage ingestion off the Redis stream (usage/stream.py): batches sized by count and time,
not by how often the gateway rings, and several workers sharing one stream with every record
stored exactly once."""

import os
import subprocess
import threading
import time

import orjson
import pytest

from core.redis import sync_client
from gateway.record import USAGE_STREAM
from tests.gateway.conftest import BIN, ROOT, _database_url
from tests.usage.test_ingest import record
from usage import services, stream
from usage.models import UsageLog


@pytest.fixture
def on_redis(settings, redis_server):
    settings.REDIS_URL = redis_server.url
    sync_client.cache_clear()  # one client per process, made for the first URL it saw
    yield redis_server
    sync_client.cache_clear()


@pytest.fixture
def batch_sizes(monkeypatch):
    """The size of every batch handed to storage, in order."""
    sizes: list[int] = []
    real = services.usage_ingest_payloads

    def counting(payloads):
        sizes.append(len(payloads))
        return real(payloads)

    monkeypatch.setattr(services, "usage_ingest_payloads", counting)
    return sizes


def _add(client, project, api_key, count: int) -> None:
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        pipe.xadd(USAGE_STREAM, {"r": orjson.dumps(record(project, api_key))})
    pipe.execute()


def test_a_backlog_is_stored_in_batches_of_the_configured_count(on_redis, settings, batch_sizes, project, api_key):
    settings.USAGE_INGEST_BATCH = 100
    settings.USAGE_INGEST_BATCH_SECONDS = 0.01
    _add(on_redis.client(), project, api_key, 250)
    assert stream.ingest_stream() == 250
    assert batch_sizes == [100, 100, 50]
    assert UsageLog.objects.filter(project=project).count() == 250
    assert on_redis.client().xlen(USAGE_STREAM) == 0  # acknowledged and deleted


def test_records_arriving_within_the_window_join_the_batch(on_redis, settings, batch_sizes, project, api_key):
    """One record on the stream, three more 50 ms later: one batch of four, not four of one."""
    settings.USAGE_INGEST_BATCH = 100
    settings.USAGE_INGEST_BATCH_SECONDS = 0.5
    client = on_redis.client()
    _add(client, project, api_key, 1)
    later = threading.Timer(0.05, _add, args=(client, project, api_key, 3))
    later.start()
    started = time.monotonic()
    assert stream.ingest_stream() == 4
    later.join()
    assert batch_sizes == [4]
    assert time.monotonic() - started < 2  # the run ends once the stream is empty


def test_an_empty_stream_returns_at_once(on_redis, settings, batch_sizes):
    settings.USAGE_INGEST_BATCH_SECONDS = 5
    started = time.monotonic()
    assert stream.ingest_stream() == 0
    assert time.monotonic() - started < 1
    assert batch_sizes == []


def test_a_run_stops_after_its_record_budget_and_the_next_goes_on(on_redis, settings, batch_sizes, project, api_key):
    settings.USAGE_INGEST_BATCH = 50
    settings.USAGE_INGEST_BATCH_SECONDS = 0.01
    _add(on_redis.client(), project, api_key, 120)
    assert stream.ingest_stream(max_records=60) == 100  # two whole batches: the budget is checked between them
    assert stream.ingest_stream() == 20


INGESTER = """
import django; django.setup()
from usage import stream
print(stream.ingest_stream(max_seconds=60), flush=True)
"""


def test_two_workers_share_the_stream_and_store_every_record_once(transactional_db, on_redis, project, api_key):
    """Two processes (two consumers of the group) ingest one stream while records keep coming:
    both take part, and the log holds each record once."""
    client = on_redis.client()
    _add(client, project, api_key, 2000)
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": on_redis.url, "DJANGO_SETTINGS_MODULE": "config.settings",
           "USAGE_INGEST_BATCH": "200", "USAGE_INGEST_BATCH_SECONDS": "0.05", "LOG_LEVEL": "WARNING"}
    workers = [subprocess.Popen([str(BIN / "python"), "-c", INGESTER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for _ in range(10):  # more arrive while they work
        _add(client, project, api_key, 200)
        time.sleep(0.05)
    stored = [int(w.communicate(timeout=120)[0].split()[-1]) for w in workers]
    stored.append(stream.ingest_stream())  # whatever came after both had found the stream empty
    assert sum(stored) == 4000
    assert min(stored[:2]) > 0, stored
    logs = UsageLog.objects.filter(project=project)
    assert logs.count() == 4000 and logs.values("request_id").distinct().count() == 4000
    assert client.xlen(USAGE_STREAM) == 0
