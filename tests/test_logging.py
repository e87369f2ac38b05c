"""Log lines: text by default, one JSON object per line with LOG_FORMAT=json, the ids of the
request (or usage record) on each line, and never a key, a prompt or an answer.

The end-to-end test runs `bin/run web` and `bin/run worker` as production does (Redis, so the
worker stores the usage records), with LOG_FORMAT=json and LOG_LEVEL=DEBUG, and follows one
request from the web process's lines to the worker's."""

import asyncio
import dataclasses
import io
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import requests
from django.conf import settings

from apikeys import services as key_services
from core import logs
from tests.fake_upstream import fake_upstream, fake_upstream_server, free_port  # noqa: F401  (fixtures)
from tests.gateway.conftest import ROOT, _wait_until_up, eventually
from tests.reliability.conftest import base_env, redis_server  # noqa: F401  (fixtures)
from tests.test_settings_and_run import _env, _settings_of
from tests.usage.test_ingest import record
from usage.models import UsageLog
from usage.services import usage_ingest_payloads

PROVIDER_SECRET = "sk-live-Lg9LOGSECRETprovider2207"
PROMPT = "Tell me about the purple elephant 7731"
ANSWER = "The green giraffe 4410 says hello"


def _handler(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A logger writing through the project's filters and `formatter` into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(logs.RedactFilter())
    logger = logging.getLogger(f"tests.logging.{id(stream)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    return logger, stream


def _json_lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_the_text_format_is_the_default_and_shows_the_request_id():
    if "LOG_FORMAT" not in os.environ:
        assert settings.LOG_FORMAT == "text"
        assert settings.LOGGING["handlers"]["console"]["formatter"] == "text"
    logger, stream = _handler(logs.TextFormatter())
    logger.info("before any request")
    with logs.bound(request_id="req_text1", project_id="proj_1"):
        logger.info("during it")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(" INFO " + logger.name + " before any request")
    assert second.endswith(f" INFO {logger.name} [req_text1] during it")


def test_an_unknown_log_format_refuses_to_start_naming_the_setting(tmp_path):
    result = _settings_of(_env(tmp_path, LOG_FORMAT="xml"))
    assert result.returncode != 0 and "LOG_FORMAT must be text or json, not 'xml'" in result.stderr


def test_a_json_line_has_the_fields_and_every_bound_id():
    logger, stream = _handler(logs.JsonFormatter())
    logger.info("outside")
    logs_before = logs.current()
    with logs.bound(request_id="req_1"):
        logs.bind(organization_id="org_1", project_id="proj_1", api_key_id="key_1")
        logger.warning("upstream %s failed", "openai", extra={"status": 502})
    assert logs.current() == logs_before  # the block's ids went with it
    outside, inside = _json_lines(stream)
    assert set(outside) == {"timestamp", "level", "logger", "message"}
    assert outside["timestamp"].endswith("Z") and outside["level"] == "INFO" and outside["logger"] == logger.name
    assert inside == {
        "timestamp": inside["timestamp"], "level": "WARNING", "logger": logger.name, "message": "upstream openai failed",
        "status": 502, "request_id": "req_1", "organization_id": "org_1", "project_id": "proj_1", "api_key_id": "key_1",
    }


def test_key_like_tokens_are_cut_from_messages_arguments_tracebacks_and_extras():
    token, provider = "llmgw_" + "A1b2C3d4" * 4, "sk-proj-" + "Z9y8X7w6" * 3
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        logger, stream = _handler(formatter)
        logger.warning(f"presented {token}")
        logger.warning("Authorization: Bearer %s, upstream key %s", token, provider)
        try:
            raise ValueError(f"the provider refused {provider}")
        except ValueError:
            logger.exception("upstream failed", extra={"header": f"Bearer {token}"})
        text = stream.getvalue()
        assert token[6:] not in text and provider[3:] not in text and token[-8:] not in text
        assert "llmgw_[redacted]" in text and "Bearer [redacted]" in text and "sk-[redacted]" in text
        assert "ValueError: the provider refused sk-[redacted]" in text


def test_a_message_without_a_token_keeps_its_template():
    """Error reports group by the template: only a message that held a token is rewritten."""
    logger, _ = _handler(logs.JsonFormatter())
    seen: list[logging.LogRecord] = []
    logger.handlers[0].addFilter(lambda r: seen.append(r) or True)
    logger.warning("stored %d records", 3)
    logger.warning("key %s", "llmgw_" + "x" * 20)
    assert (seen[0].msg, seen[0].args) == ("stored %d records", (3,))
    assert (seen[1].msg, seen[1].args) == ("key llmgw_[redacted]", None)


def test_each_request_task_keeps_its_own_ids_and_its_tasks_inherit_them():
    logger, stream = _handler(logs.JsonFormatter())

    async def request(n: int) -> None:
        logs.start(request_id=f"req_{n}")
        await asyncio.sleep(0)
        logs.bind(organization_id=f"org_{n}", project_id=f"proj_{n}", api_key_id=f"key_{n}")

        async def watcher() -> None:
            await asyncio.sleep(0.01)
            logger.info("watcher of %d", n)

        task = asyncio.create_task(watcher())
        await asyncio.sleep(0)
        logger.info("request %d", n)
        await asyncio.to_thread(logger.info, "thread of %d", n)
        await task

    async def main() -> None:
        await asyncio.gather(*(request(n) for n in range(5)))

    asyncio.run(main())
    lines = _json_lines(stream)
    assert len(lines) == 15
    for line in lines:
        n = line["message"].split()[-1]
        assert (line["request_id"], line["organization_id"], line["project_id"], line["api_key_id"]) == (
            f"req_{n}", f"org_{n}", f"proj_{n}", f"key_{n}")


def test_each_stored_record_is_logged_with_its_own_ids(project, api_key, caplog, django_capture_on_commit_callbacks):
    """DEBUG: one line per record, with the record's ids; INFO: one line per batch."""
    records = [record(project, api_key) for _ in range(3)]
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.DEBUG, logger="usage.services"), django_capture_on_commit_callbacks(execute=True):
        assert usage_ingest_payloads([orjson.dumps(r) for r in records]) == 3
    stored = [r for r in caplog.records if r.name == "usage.services" and r.levelno == logging.DEBUG]
    assert [(r.request_id, r.organization_id, r.project_id, r.api_key_id, r.log_id) for r in stored] == [
        (r.request_id, r.organization_id, r.project_id, r.api_key_id, r.id) for r in records]
    batch = [r for r in caplog.records if r.name == "usage.services" and r.levelno == logging.INFO]
    assert [r.getMessage() for r in batch] == ["3 usage records stored"]
    assert not hasattr(batch[0], "request_id")  # about no record in particular


@pytest.mark.parametrize("flaw", ["unreadable", "unstorable"])
def test_a_set_aside_record_is_logged_with_its_ids(project, api_key, caplog, flaw):
    bad = dataclasses.asdict(record(project, api_key, cost="a lot" if flaw == "unstorable" else "0.001"))
    if flaw == "unreadable":
        del bad["created_at"]
    good = record(project, api_key)
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.ERROR, logger="usage.services"):
        assert usage_ingest_payloads([orjson.dumps(bad), orjson.dumps(good)]) == 1
    [line] = [r for r in caplog.records if r.name == "usage.services"]
    assert line.getMessage().startswith("usage record set aside")
    assert (line.request_id, line.organization_id, line.project_id, line.api_key_id) == (
        bad["request_id"], bad["organization_id"], bad["project_id"], bad["api_key_id"])


# --- end to end: bin/run web and bin/run worker, LOG_FORMAT=json ------------------------------------


def _start(role: str, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(["bin/run", role], cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop_group(process: subprocess.Popen) -> None:
    """bin/run stops its own children on SIGTERM; SIGKILL to its group if it does not."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def json_gateway(transactional_db, redis_server, base_env, fake_upstream, tmp_path):
    """`bin/run web` and `bin/run worker` with LOG_FORMAT=json and LOG_LEVEL=DEBUG on the test
    database and a Redis of their own; yields (url, web log, worker log)."""
    port = free_port()
    env = {**base_env, "DATA_DIR": str(tmp_path), "REDIS_URL": redis_server.url, "HOST": "127.0.0.1",
           "PORT": str(port), "WEB_CONCURRENCY": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    worker = _start("worker", env, worker_log)
    web = _start("web", env, web_log)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/healthz", web, "bin/run web")
        yield f"http://127.0.0.1:{port}", web_log, worker_log
    finally:
        _stop_group(web)
        _stop_group(worker)


def _lines(log: Path) -> list[dict]:
    """Every line of a log, each of which must be a JSON object."""
    lines = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{log.name} line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(parsed, dict) and {"timestamp", "level", "logger", "message"} <= set(parsed), line
        lines.append(parsed)
    return lines


def test_one_request_is_followed_through_the_web_and_worker_json_lines(json_gateway, org, project, fake_upstream):
    url, web_log, worker_log = json_gateway
    key_services.provider_key_create(organization=org, provider="openai", token=PROVIDER_SECRET, validate=False)
    token, key = key_services.api_key_create(project=project)
    fake_upstream.reply = ANSWER
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
    ok_id, refused_id = f"req_logs_ok_{time.monotonic_ns()}", f"req_logs_refused_{time.monotonic_ns()}"

    answer = requests.post(f"{url}/v1/chat/completions", json=body, timeout=20,
                           headers={"Authorization": f"Bearer {token}", "x-request-id": ok_id})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == ANSWER
    # The provider refuses the key and echoes it back: a warning of this request, key cut out.
    fake_upstream.fail("status", provider="openai", status=401,
                       body={"error": {"message": f"Incorrect API key provided: {PROVIDER_SECRET}"}})
    refused = requests.post(f"{url}/v1/chat/completions", json=body, timeout=20,
                            headers={"Authorization": f"Bearer {token}", "x-request-id": refused_id})
    assert refused.status_code >= 400

    assert eventually(lambda: UsageLog.objects.filter(request_id__in=[ok_id, refused_id]).count() == 2, timeout=20)
    assert eventually(lambda: ok_id in worker_log.read_text() and refused_id in worker_log.read_text(), timeout=10)
    web_lines, worker_lines = _lines(web_log), _lines(worker_log)
    assert not [line for line in web_lines if line["logger"] == "uvicorn.access"]  # bin/run keeps it off
    assert any(line["logger"] == "uvicorn.error" and "Application startup complete" in line["message"] for line in web_lines)

    ids = {"organization_id": org.id, "project_id": project.id, "api_key_id": key.id}
    for request_id in (ok_id, refused_id):
        web = [line for line in web_lines if line.get("request_id") == request_id]
        assert web, f"no web line carries {request_id}"
        assert all(line.items() >= {**ids, "request_id": request_id}.items() for line in web)
        done = [line for line in web if line["logger"] == "gateway.v1" and line.get("endpoint") == "chat.completions"]
        assert len(done) == 1 and done[0]["level"] == "DEBUG"
        stored = [line for line in worker_lines if line.get("request_id") == request_id]
        assert [line["message"] for line in stored] == [f"usage record {stored[0]['log_id']} stored"]
        assert stored[0].items() >= {**ids, "request_id": request_id, "logger": "usage.services"}.items()
    [ok_line] = [line for line in web_lines if line.get("request_id") == ok_id and line.get("endpoint")]
    assert (ok_line["status"], ok_line["provider"], ok_line["model"]) == (200, "openai", "gpt-4o-mini")
    [refused_line] = [line for line in web_lines if line.get("request_id") == refused_id and line.get("endpoint")]
    assert refused_line["status"] == refused.status_code
    assert any(line["logger"] == "usage.services" and line["level"] == "INFO" and "usage records stored" in line["message"]
               for line in worker_lines)

    everything = web_log.read_text() + worker_log.read_text()
    assert fake_upstream.calls[0].headers["authorization"] == f"Bearer {PROVIDER_SECRET}"  # it was used upstream
    for secret, what in ((token, "the API key"), (token[-12:], "part of the API key"), (PROVIDER_SECRET, "the provider key"),
                         (PROVIDER_SECRET[-12:], "part of the provider key"), (PROMPT, "the prompt"), (ANSWER, "the answer"),
                         ("purple elephant", "part of the prompt"), ("green giraffe", "part of the answer")):
        assert secret not in everything, f"{what} is in a log line"
