"""Sentry: with SENTRY_DSN, unhandled errors of the gateway and of tasks are reported, with every
secret scrubbed; without it sentry-sdk is not even imported.

In this process the SDK is started as config/settings.py starts it (core.sentry.init), with a
transport that keeps the envelopes in memory; the worker test starts a real Celery worker with
SENTRY_DSN pointing at a fake Sentry server here."""

import asyncio
import gzip
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk
from celery import Celery
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from core import logs
from core.hashing import sha256_hex
from core.sentry import before_breadcrumb, before_send
from core.sentry import init as init_sentry
from gateway import chat
from gateway.keys import load_snapshot
from gateway.v1 import GatewayApp
from tests.fake_upstream import fake_upstream, fake_upstream_server  # noqa: F401  (fixtures)
from tests.gateway.conftest import ROOT, eventually
from tests.reliability.conftest import base_env, redis_server, start_worker  # noqa: F401  (fixtures)
from usage import tasks

API_TOKEN = "llmgw_" + "Se7nTry0" * 4
PROVIDER_TOKEN = "sk-ant-api03-" + "Qx4Lw9Zt" * 4
SECRETS = (API_TOKEN, PROVIDER_TOKEN, API_TOKEN[6:], PROVIDER_TOKEN[3:], API_TOKEN[-10:], PROVIDER_TOKEN[-10:])
DSN = "https://public@sentry.example.invalid/1"


class MemoryTransport(Transport):
    """Keeps what would be sent to Sentry."""

    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def flush(self, timeout, callback=None) -> None:
        pass

    def kill(self) -> None:
        pass

    def events(self) -> list[dict]:
        return [item.payload.json for envelope in self.envelopes for item in envelope.items
                if item.type == "event" and item.payload.json]

    def text(self) -> str:
        return "\n".join(envelope.serialize().decode(errors="replace") for envelope in self.envelopes)


@pytest.fixture
def reported():
    """sentry-sdk started as the settings start it, its envelopes kept in memory."""
    transport = MemoryTransport()
    init_sentry(DSN, environment="test", release="test-release", transport=transport)
    try:
        yield transport
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def _assert_scrubbed(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret[:12]}… reached Sentry"


def test_before_send_drops_bodies_cookies_credential_headers_variables_and_tokens():
    event = {
        "request": {
            "url": "https://gw.example/v1/chat/completions", "method": "POST", "data": {"messages": "a prompt"},
            "cookies": {"sessionid": "abc"}, "query_string": f"key={API_TOKEN}",
            "headers": {"Authorization": f"Bearer {API_TOKEN}", "X-Api-Key": API_TOKEN, "Cookie": "sessionid=abc",
                        "User-Agent": "openai-python"},
        },
        "logentry": {"message": "upstream said %s", "params": [f"bad key {PROVIDER_TOKEN}"]},
        "exception": {"values": [{"type": "ValueError", "value": f"rejected {PROVIDER_TOKEN}", "stacktrace": {"frames": [
            {"function": "serve", "vars": {"key": API_TOKEN, "raw": "a prompt"}}]}}]},
        "breadcrumbs": {"values": [{"message": f"Authorization: Bearer {API_TOKEN}", "data": {"k": [PROVIDER_TOKEN]}}]},
        "extra": {"header": f"Bearer {API_TOKEN}"},
    }
    with logs.bound(request_id="req_abc", project_id="proj_1"):
        scrubbed = before_send(event, {})
    request = scrubbed["request"]
    assert "data" not in request and "cookies" not in request
    assert request["headers"] == {"Authorization": "[Filtered]", "X-Api-Key": "[Filtered]", "Cookie": "[Filtered]",
                                  "User-Agent": "openai-python"}
    assert "vars" not in scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert scrubbed["exception"]["values"][0]["value"] == "rejected sk-[redacted]"
    assert scrubbed["tags"] == {"request_id": "req_abc", "project_id": "proj_1"}
    _assert_scrubbed(json.dumps(scrubbed))
    assert "a prompt" not in json.dumps(scrubbed)
    crumb = before_breadcrumb({"message": f"sent {API_TOKEN}", "data": {"url": f"https://x/?key={PROVIDER_TOKEN}"}}, {})
    _assert_scrubbed(json.dumps(crumb))


def _asgi(app, path: str, headers: dict[str, str], body: bytes = b"{}") -> list[dict]:
    scope = {"type": "http", "path": path, "method": "POST", "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_an_unhandled_error_of_a_gateway_request_is_reported_with_its_ids_and_no_secret(
        reported, api_key, project, monkeypatch):
    """The gateway answers 502 and logs the error with log.exception: the logging integration
    makes it one event, with the traceback and the request's ids as tags."""
    snapshot = load_snapshot(sha256_hex(api_key.plaintext))
    app = GatewayApp()
    monkeypatch.setattr(app, "ensure_started", lambda: None)

    async def known(token_hash):
        return snapshot if token_hash == sha256_hex(api_key.plaintext) else None

    async def broken(exchange, raw, send, watch, reload):
        raise RuntimeError(f"the provider answered with {PROVIDER_TOKEN} for {API_TOKEN}")

    async def concluded(exchange):
        pass

    monkeypatch.setattr(app.snapshots, "warm", lambda token_hash: True)
    monkeypatch.setattr(app.snapshots, "get", known)
    monkeypatch.setattr(chat, "handle", broken)
    monkeypatch.setattr(chat, "conclude", concluded)  # no usage record: this is not a live gateway

    prompt = "a question nobody else may read"
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}).encode()
    sent = _asgi(app, "/v1/chat/completions", {"Authorization": f"Bearer {api_key.plaintext}", "x-request-id": "req_sentry_1"},
                 body)
    assert sent[0]["status"] == 502

    [event] = reported.events()
    assert event["level"] == "error" and event["logger"] == "gateway.v1"
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "the provider answered with sk-[redacted] for llmgw_[redacted]"
    assert event["tags"] == {"request_id": "req_sentry_1", "organization_id": project.organization_id,
                             "project_id": project.id, "api_key_id": api_key.id}
    assert (event["environment"], event["release"]) == ("test", "test-release")
    text = reported.text()
    _assert_scrubbed(text)
    assert api_key.plaintext not in text and api_key.plaintext[-12:] not in text and prompt not in text
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])


def test_an_unhandled_error_of_a_task_is_reported_without_its_secrets(reported):
    result = tasks.rebuild_rollups.apply(args=[f"{API_TOKEN}"])  # not a date: the task fails
    assert result.failed()
    [event] = reported.events()
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError" and "llmgw_[redacted]" in exception["value"]
    assert exception["mechanism"]["type"] == "celery"
    assert event["extra"]["celery-job"]["task_name"] == "usage.tasks.rebuild_rollups"
    _assert_scrubbed(reported.text())


def test_without_a_dsn_sentry_sdk_is_not_imported_and_with_one_the_web_app_starts_it(base_env):
    check = ("import json, config.asgi, sentry_sdk as s; c = s.get_client(); "
             "print(json.dumps([c.is_active(), sorted(c.integrations)]))")
    absent = "import sys, config.asgi, config.celery; print('sentry_sdk' in sys.modules)"
    env = {k: v for k, v in base_env.items() if k != "SENTRY_DSN"}
    without = subprocess.run([sys.executable, "-c", absent], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert without.returncode == 0, without.stderr
    assert without.stdout.strip() == "False"
    with_dsn = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env={**env, "SENTRY_DSN": DSN},
                              capture_output=True, text=True, timeout=60)
    assert with_dsn.returncode == 0, with_dsn.stderr
    active, integrations = json.loads(with_dsn.stdout.strip().splitlines()[-1])
    assert active is True
    assert {"django", "celery", "logging"} <= set(integrations)
    assert not {"aiohttp", "redis", "httpx"} & set(integrations)  # no breadcrumbs of upstream calls or records


# --- a real worker reporting to a fake Sentry ---------------------------------------------------------


class FakeSentry:
    """Takes envelopes over HTTP as Sentry's ingest endpoint does."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                fake.bodies.append(raw.decode(errors="replace"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def events(self) -> list[dict]:
        found = []
        for body in self.bodies:
            for line in body.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and "exception" in item:
                    found.append(item)
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_sentry():
    sentry = FakeSentry()
    try:
        yield sentry
    finally:
        sentry.stop()


def test_a_worker_with_a_dsn_reports_a_failing_task_scrubbed(fake_sentry, redis_server, base_env, tmp_path):
    env = {**base_env, "DATA_DIR": str(tmp_path), "REDIS_URL": redis_server.url, "SENTRY_DSN": fake_sentry.dsn,
           "SENTRY_ENVIRONMENT": "ci"}
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        client = Celery(broker=redis_server.url)
        client.send_task("usage.tasks.rebuild_rollups", args=[f"{API_TOKEN}"])
        client.close()
        assert eventually(fake_sentry.events, timeout=30), (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(20)
    [event] = fake_sentry.events()
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError" and "llmgw_[redacted]" in exception["value"]
    assert event["environment"] == "ci"
    _assert_scrubbed("\n".join(fake_sentry.bodies))
