"""A Celery worker killed between taking a batch and committing it loses nothing and
duplicates nothing: the broker hands the batch out again and ingestion is idempotent.

The test runs its own Redis broker (a short visibility timeout, so the redelivery comes in
seconds) and a real worker process, on whichever database the suite uses.
"""

import os
import signal
import subprocess
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from django.db import connection, transaction

from projects.models import Organization
from tests.fake_upstream import free_port
from tests.gateway.conftest import BIN, ROOT, _database_url, eventually
from tests.usage.test_ingest import record
from usage.models import UsageLog
from usage.services import credits_add


@pytest.fixture
def broker():
    port = free_port()
    directory = tempfile.mkdtemp(prefix="llmgw-redis-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        assert eventually(lambda: _pings(redis.Redis.from_url(url)), timeout=10)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def _worker(broker_url: str, log: Path) -> subprocess.Popen:
    from django.conf import settings

    env = {
        **os.environ, "DATABASE_URL": _database_url(), "CELERY_BROKER_URL": broker_url, "CELERY_VISIBILITY_TIMEOUT": "3",
        "SECRET_KEY": settings.SECRET_KEY, "ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS),
        "DATA_DIR": str(log.parent),
    }
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
    )


def _send(broker_url: str, batch: list) -> None:
    """As the gateway sends a batch: one JSON text of the records."""
    from config.celery import app
    from usage.tasks import ingest_usage

    with app.connection_for_write(broker_url) as conn:
        ingest_usage.apply_async(args=[orjson.dumps(batch).decode()], connection=conn)


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(transactional_db, org, project, api_key, broker):
    credits_add(organization=org, amount="10")
    batch = [record(project, api_key, credits=True, cost="0.01") for _ in range(25)]
    log = Path(tempfile.mkdtemp(prefix="llmgw-worker-")) / "worker.log"
    worker = _worker(broker, log)
    try:
        with transaction.atomic():
            # Hold the organization's row: the worker takes the batch, inserts its rows and
            # then waits on this lock, inside its uncommitted transaction.
            Organization.objects.select_for_update().filter(pk=org.pk).update(name="locked")
            _send(broker, batch)
            assert eventually(lambda: "ingest_usage" in log.read_text(), timeout=20), log.read_text()
            time.sleep(1)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        assert UsageLog.objects.count() == 0  # nothing was committed by the killed worker
        worker = _worker(broker, log)
        assert eventually(lambda: UsageLog.objects.count() == 25, timeout=40), log.read_text()[-3000:]
        time.sleep(2)  # were the batch delivered twice, a second run would have had time
        org.refresh_from_db()
        api_key.refresh_from_db()
        assert UsageLog.objects.count() == 25
        assert api_key.usage == Decimal("0.25")
        assert org.credits == Decimal("9.75") and org.credits_spent == Decimal("0.25")
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(15)
    connection.close()
