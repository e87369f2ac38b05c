"""Helpers for the reliability tests: servers the tests start and stop themselves (Redis,
extra gateway processes, Celery workers), bound to 127.0.0.1 on free ports, and ways to look
at a gateway process from outside (its open sockets, its memory).

The live gateway of tests/gateway (uvicorn + Celery worker on the test database) is reused
as it is; a test that needs a gateway configured differently starts its own with the live
gateway's environment plus its changes.
"""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from apikeys import services as key_services
from tests.fake_upstream import fake_upstream, fake_upstream_server, free_port  # noqa: F401  (fixtures)
from tests.gateway.conftest import (  # noqa: F401  (fixtures)
    BIN,
    ROOT,
    _env,
    _stop,
    _wait_until_up,
    eventually,
    gateway,
    key_for,
    live_gateway,
)
from usage.models import UsageLog

# --- Redis servers of our own --------------------------------------------------------------------


class RedisServer:
    """A redis-server on its own port. `persistent`: an append-only file synced on every write,
    as a production broker runs, so that a crash (SIGKILL) loses nothing acknowledged."""

    def __init__(self, persistent: bool = False):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="llmgw-redis-")
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", self.dir, "--logfile", str(Path(self.dir) / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not eventually(self.pings, timeout=10):
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def kill(self) -> None:
        """A crash: SIGKILL, no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def broker_idle(self) -> bool:
        """No usage batch waiting in this broker or held by a worker."""
        client = self.client()
        from gateway.record import USAGE_STREAM

        return client.llen("celery") == 0 and client.hlen("unacked") == 0 and client.xlen(USAGE_STREAM) == 0


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


# --- gateway and worker processes of our own --------------------------------------------------------


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen
    env: dict
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def open_sockets(self) -> int:
        """Sockets the process holds open now (listening, clients, upstream, Redis, database)."""
        count = 0
        fd_dir = Path(f"/proc/{self.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd).startswith("socket:"):
                    count += 1
            except OSError:
                pass  # closed while we looked
        return count

    def memory_kb(self, field_name: str = "VmRSS") -> int:
        """VmRSS (now) or VmHWM (the peak so far) of the process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field_name} for process {self.pid}")


def start_gateway(env: dict, log: Path) -> GatewayProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(BIN / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--lifespan", "on", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_up(f"{url}/healthz", process, "a gateway process")
    except Exception:
        _stop(process)
        raise
    return GatewayProcess(url=url, process=process, env=env, log=log)


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
    )


@dataclass
class Processes:
    """Processes a test started; stopped (and their logs shown on a traceback) at teardown."""

    directory: Path
    gateways: list[GatewayProcess] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)

    def env(self, base: dict, **changes: str) -> dict:
        return {**base, "DATA_DIR": str(self.directory), **changes}

    def gateway(self, env: dict, name: str = "gateway") -> GatewayProcess:
        started = start_gateway(env, self.directory / f"{name}.log")
        self.gateways.append(started)
        return started

    def worker(self, env: dict, name: str = "worker") -> subprocess.Popen:
        started = start_worker(env, self.directory / f"{name}.log")
        self.workers.append(started)
        return started

    def stop(self) -> None:
        for started in self.gateways:
            _stop(started.process)
        for worker in self.workers:
            _stop(worker)
        for log in sorted(self.directory.glob("*.log")):
            tail = log.read_text(errors="replace")[-4000:]
            if "Traceback" in tail:
                print(f"--- {log.name} ---\n{tail}")


@pytest.fixture
def processes(transactional_db, fake_upstream):
    """Starts gateways and workers for one test. Torn down before the test's tables are
    emptied (it depends on transactional_db), so no worker is mid-transaction then."""
    started = Processes(Path(tempfile.mkdtemp(prefix="llmgw-rel-")))
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(started.directory, ignore_errors=True)


@pytest.fixture
def base_env(django_db_setup, fake_upstream_server):
    """The live gateway's environment (database, secrets, fake upstream, short timeouts)
    without its Redis: a test adds the Redis (or none) it wants."""
    env = _env(fake_upstream_server, tempfile.gettempdir())
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    return env


# --- requests -------------------------------------------------------------------------------------


@dataclass
class Answer:
    request_id: str
    status: int
    headers: dict
    text: str
    seconds: float

    def json(self):
        return orjson.loads(self.text)

    @property
    def code(self) -> str | None:
        try:
            return self.json()["error"]["code"]
        except Exception:
            return None

    def events(self) -> list[str]:
        """The `data:` payloads of a streamed answer."""
        return [line[6:] for line in self.text.splitlines() if line.startswith("data: ")]

    @property
    def stream_error(self) -> dict | None:
        """The error event that ended a stream, if it ended with one."""
        events = self.events()
        if not events or events[-1] == "[DONE]":
            return None
        return orjson.loads(events[-1]).get("error")

    @property
    def completed(self) -> bool:
        """A 200 whose answer is whole: JSON with choices, or a stream ending with [DONE]."""
        if self.status != 200:
            return False
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            events = self.events()
            return bool(events) and events[-1] == "[DONE]" and all("error" not in orjson.loads(e) for e in events[:-1])
        return bool(self.json().get("choices"))


def headers_for(token: str, request_id: str, extra: dict | None = None) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "x-request-id": request_id,
            **(extra or {})}


async def send_all(requests: list[tuple[str, str, str, bytes]], *, fake=None, timeout: float = 30,
                   extra_headers: dict | None = None) -> list[Answer]:
    """Sends every (base url, token, request id, raw body) at once and reads each answer
    whole. With `fake`, the upstream is held at its gate until every request is either held
    there or answered, then released: every admitted request reserves before any settles."""
    limits = httpx.Limits(max_connections=len(requests) + 10, max_keepalive_connections=len(requests) + 10)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def one(url: str, token: str, request_id: str, raw: bytes) -> Answer:
            started = time.monotonic()
            response = await client.post(f"{url}/v1/chat/completions", content=raw,
                                         headers=headers_for(token, request_id, extra_headers))
            return Answer(request_id, response.status_code, dict(response.headers), response.text,
                          time.monotonic() - started)

        tasks = [asyncio.create_task(one(*r)) for r in requests]
        if fake is not None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and fake.held + sum(t.done() for t in tasks) < len(tasks):
                await asyncio.sleep(0.02)
            fake.release()
        return await asyncio.gather(*tasks)


def send(url: str, token: str, request_id: str, raw: bytes, **kwargs) -> Answer:
    return asyncio.run(send_all([(url, token, request_id, raw)], **kwargs))[0]


# --- records ---------------------------------------------------------------------------------------


def rows_per_request(request_ids) -> Counter:
    return Counter(UsageLog.objects.filter(request_id__in=list(request_ids)).values_list("request_id", flat=True))


def wait_for_rows(request_ids, timeout: float = 30) -> Counter:
    """Waits until every request has its row, then a moment more for any duplicate."""
    request_ids = list(request_ids)
    eventually(lambda: len(rows_per_request(request_ids)) >= len(request_ids), timeout=timeout, interval=0.1)
    time.sleep(0.5)
    return rows_per_request(request_ids)


@pytest.fixture
def own_openai_key(org):
    return key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
