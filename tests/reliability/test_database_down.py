"""The database goes away for 30 s under load (issue 7, item 7).

The test runs a PostgreSQL of its own (initdb into a temporary directory, its own port,
migrated by `manage.py migrate`), a Redis of its own, and a gateway and a Celery worker on
them; it stops PostgreSQL for 30 s while a warm key keeps sending, then starts it again.

A key the gateway already knows keeps being served throughout (gateway/keys.py serves its
snapshot while the database is away); a key it has never seen gets a prompt 503. The usage
records wait (the worker's task retries on DatabaseError) and all of them are written once
the database is back, each exactly once; and the gateway, never restarted, reaches the
database again on its own (a cold key authenticates).
"""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest

from tests.reliability.conftest import BIN, ROOT, Answer, RedisServer, eventually, free_port, send_all

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OUTAGE_SECONDS = 30


class PostgresServer:
    """A throwaway cluster. As root, PostgreSQL runs as the postgres user."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="llmgw-pg-"))
        self.data = self.dir / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def init(self) -> "PostgresServer":
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w", "-t", "30",
                  "-o", options, "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def query(self, sql: str, *params):
        with psycopg.connect(self.url("llmgw"), connect_timeout=5) as connection:
            return connection.execute(sql, params).fetchall()


@pytest.fixture
def postgres():
    server = PostgresServer().init()
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as connection:
            connection.execute("CREATE DATABASE llmgw")
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.dir, ignore_errors=True)


SETUP = """
import json
from apikeys import services as keys
from projects import services
user, org = services.user_signup(email="db-down@example.com", password="a long enough password")
project = services.project_create(organization=org, name="Outage", mode="api-keys")
keys.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
warm, warm_key = keys.api_key_create(project=project, usage_limit="5")
cold, _ = keys.api_key_create(project=project)
print("KEYS=" + json.dumps({"warm": warm, "warm_id": warm_key.id, "cold": cold}))
"""


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def body(n: int) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question {n}"}],
                         "max_tokens": 50, **({"stream": True} if n % 2 else {})})


class Load:
    """A warm key's steady traffic: a burst of 4 requests every 0.25 s, from a thread, until
    stopped (and never past `limit` seconds)."""

    def __init__(self, url: str, token: str, limit: float = 120):
        self.url, self.token, self.limit = url, token, limit
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started, n = time.monotonic(), 0
        while not self._stop.is_set() and time.monotonic() - started < self.limit:
            batch = [(self.url, self.token, f"load-{n + i}", body(n + i)) for i in range(4)]
            n += 4
            self.answers.extend(asyncio.run(send_all(batch, timeout=20)))
            self._stop.wait(0.25)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def test_with_the_database_down_for_30_s_warm_keys_are_served_and_every_record_is_written_once_afterwards(
    processes, base_env, postgres, fake_upstream
):
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, DATABASE_URL=postgres.url("llmgw"), REDIS_URL=redis.url,
                            CELERY_BROKER_URL=redis.url, USAGE_LOG_FLUSH_SECONDS="0.2")
        manage(env, "migrate", "--noinput")
        keys = json.loads(manage(env, "shell", "-c", SETUP).split("KEYS=")[1])
        processes.worker(env)
        gw = processes.gateway(env)
        warmed = asyncio.run(send_all([(gw.url, keys["warm"], f"warm-{i}", body(i)) for i in range(4)]))
        assert all(a.completed for a in warmed)

        with Load(gw.url, keys["warm"]) as load:
            time.sleep(1)
            postgres.stop()
            stopped_at = time.monotonic()
            served_before_stop = len(load.answers)
            time.sleep(OUTAGE_SECONDS / 2)
            cold = asyncio.run(send_all([(gw.url, keys["cold"], "cold-during", body(0))]))[0]
            time.sleep(OUTAGE_SECONDS / 2)
            during = [a for a in load.answers[served_before_stop:]]
            postgres.start()
            down_for = time.monotonic() - stopped_at
            # The gateway reaches the database again by itself: a key it never saw works.
            recovered = eventually(
                lambda: asyncio.run(send_all([(gw.url, keys["cold"], f"cold-after-{time.monotonic()}", body(0))]))[0]
                .status == 200, timeout=15, interval=0.5)
            time.sleep(1)

        assert down_for >= OUTAGE_SECONDS
        assert len(during) >= 40, len(during)  # the load went on throughout
        assert all(a.completed for a in load.answers), Counter((a.status, a.code) for a in load.answers)
        assert (cold.status, cold.code) == (503, "service_unavailable") and cold.seconds < 5
        assert recovered, "the gateway did not reach the database again"
        assert gw.alive

        sent = [a.request_id for a in warmed + load.answers]
        table = "usage_usagelog"

        def rows() -> Counter:
            found = postgres.query(f"SELECT request_id, count(*) FROM {table} WHERE request_id = ANY(%s) "
                                   "GROUP BY request_id", sent)
            return Counter(dict(found))

        eventually(lambda: len(rows()) == len(sent), timeout=60, interval=1)
        time.sleep(1)
        assert rows() == Counter({rid: 1 for rid in sent}), f"{len(rows())} of {len(sent)} requests have a row"
        (usage,), = postgres.query("SELECT usage FROM apikeys_apikey WHERE id = %s", keys["warm_id"])
        (billed,), = postgres.query(f"SELECT coalesce(sum(cost), 0) FROM {table} WHERE api_key_id = %s", keys["warm_id"])
        assert usage == billed > Decimal(0)
        assert eventually(redis.broker_idle, timeout=10)
    finally:
        processes.stop()
        redis.stop()
