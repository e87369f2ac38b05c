"""A live gateway for end-to-end tests: uvicorn serving the real ASGI app and a real
Celery worker, both as subprocesses on the test database, calling the fake upstream that
runs in this process. Tests drive it with the official `openai` SDK."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import requests
from django.conf import settings
from django.db import connection

from apikeys import services as key_services
from gateway.providers import PROVIDERS
from tests.fake_upstream import fake_upstream, fake_upstream_server, free_port  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def gateway_key(provider: str) -> str:
    """The gateway's own (credits) key for a provider, as the live server is given it."""
    return f"gw-own-{provider}-key"


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def _env(fake, data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATA_DIR=data_dir,
        DATABASE_URL=_database_url(),
        SECRET_KEY=settings.SECRET_KEY,
        ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        ALLOW_PRIVATE_PROVIDER_URLS="true",
        UPSTREAM_CONNECT_TIMEOUT="2",
        UPSTREAM_FIRST_BYTE_TIMEOUT="3",
        UPSTREAM_IDLE_TIMEOUT="2",
        USAGE_LOG_FLUSH_SECONDS="0.05",
        LOG_LEVEL="WARNING",
        # One test's failing provider must not reorder the next test's providers: this shared
        # gateway never cools a provider down (tests/gateway/test_key_failover.py starts one that does).
        GATEWAY_COOLDOWN_FAILURES="0",
    )
    for provider in PROVIDERS.values():
        if provider.id != "custom":
            env[f"{provider.env_prefix}_BASE_URL"] = fake.base_url(provider.id)
            env[f"{provider.env_prefix}_API_KEY"] = gateway_key(provider.id)
    return env


def _wait_until_up(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class LiveGateway:
    url: str
    env: dict
    data_dir: Path  # holds server.log and worker.log

    def client(self, api_key: str, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=20, **kwargs)

    def async_client(self, api_key: str, **kwargs) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=30, **kwargs)


@pytest.fixture(scope="session")
def live_gateway(django_db_setup, django_db_blocker, fake_upstream_server):
    data_dir = tempfile.mkdtemp(prefix="llmgw-live-")
    env = _env(fake_upstream_server, data_dir)
    port = free_port()
    with django_db_blocker.unblock():
        url = f"http://127.0.0.1:{port}"
        log_dir = Path(data_dir)
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=open(log_dir / "worker.log", "w"), stderr=subprocess.STDOUT,
        )
        server = subprocess.Popen(
            [str(BIN / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--lifespan", "on", "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=open(log_dir / "server.log", "w"), stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(f"{url}/healthz", server, "the gateway")
            yield LiveGateway(url=url, env=env, data_dir=log_dir)
        finally:
            _stop(server)
            _stop(worker)
            for name in ("server.log", "worker.log"):
                tail = (log_dir / name).read_text()[-3000:]
                if "Traceback" in tail:
                    print(f"--- {name} ---\n{tail}")
            shutil.rmtree(data_dir, ignore_errors=True)


def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """Retries `check` until it returns a truthy value (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def _broker_idle(env: dict) -> bool:
    """No usage batch waiting in the broker or held by the worker."""
    if env.get("REDIS_URL"):
        import redis

        client = redis.Redis.from_url(env["REDIS_URL"])
        from gateway.record import USAGE_STREAM

        return client.llen("celery") == 0 and client.hlen("unacked") == 0 and client.xlen(USAGE_STREAM) == 0
    queue = Path(env["DATA_DIR"]) / "broker" / "queue"
    return not any(queue.glob("*")) if queue.exists() else True


@pytest.fixture
def gateway(live_gateway, transactional_db, fake_upstream):
    """The live gateway, with committed data the server can see and a clean fake upstream.
    Afterwards it waits for the worker to finish the test's usage batches: emptying the
    tables under a worker mid-transaction would deadlock on PostgreSQL."""
    yield live_gateway
    time.sleep(0.15)  # the gateway flushes its buffer every 0.05 s
    eventually(lambda: _broker_idle(live_gateway.env), timeout=10)


@pytest.fixture
def key_for():
    """Makes an API key for a project and returns its plaintext token."""

    def make(project, usage_limit=None) -> str:
        token, _ = key_services.api_key_create(project=project, usage_limit=usage_limit)
        return token

    return make
