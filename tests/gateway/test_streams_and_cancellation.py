"""Streams that end early, end to end: cut by the client, cut by the provider, stopped by
deleting the project; and projects deleted or archived stop their keys at once."""

import threading
import time

import orjson
import pytest
import requests

from apikeys import services as key_services
from projects import services
from tests.gateway.conftest import eventually
from usage.models import UsageLog

MESSAGES = [{"role": "user", "content": "Tell me a long story."}]
# How long a project event may take to reach the gateway process (polled table or pub/sub).
EVENT_DELAY = 1.0


@pytest.fixture
def own_openai_key(org):
    return key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)


@pytest.fixture
def token(project, own_openai_key, key_for):
    services.project_update(project=project, mode="api-keys")
    return key_for(project)


def _logs(project):
    return list(UsageLog.objects.filter(project=project))


def _open_stream(gateway, token: str) -> requests.Response:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    response = requests.post(
        f"{gateway.url}/v1/chat/completions", data=orjson.dumps(body), stream=True, timeout=20,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response


def _events(lines):
    """The `data:` payloads of an SSE stream, as they arrive."""
    for line in lines:
        if line.startswith(b"data: "):
            yield line[len(b"data: "):]


def _is_error(payload: bytes) -> bool:
    return payload != b"[DONE]" and "error" in orjson.loads(payload)


def _chat(gateway, token: str) -> requests.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
    return requests.post(
        f"{gateway.url}/v1/chat/completions", data=orjson.dumps(body), timeout=20,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def _first_status_change(gateway, token: str, status: int, within: float) -> tuple[requests.Response, float]:
    """Sends requests until one gets `status` or time is up: (the last answer, seconds taken)."""
    started = time.monotonic()
    while True:
        response = _chat(gateway, token)
        elapsed = time.monotonic() - started
        if response.status_code == status or elapsed > within:
            return response, elapsed
        time.sleep(0.05)


def test_a_stream_the_client_cuts_after_three_chunks_is_logged_once_as_canceled_and_billed(
    gateway, project, token, fake_upstream
):
    fake_upstream.chunk_delay = 0.2
    fake_upstream.stream_chunks = 20  # about 4 s in full
    stream = gateway.client(token).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    received = iter(stream)
    chunks = [next(received) for _ in range(3)]
    assert len(chunks) == 3
    stream.close()

    call = fake_upstream.wait_for_calls(1)[0]
    assert eventually(lambda: call.disconnected, timeout=3), "the gateway kept reading the provider's stream"
    assert not call.finished
    eventually(lambda: _logs(project))
    time.sleep(0.5)  # room for a second row, were there one
    logs = _logs(project)
    assert len(logs) == 1
    log = logs[0]
    assert log.canceled and log.streamed
    assert log.cost > 0 and log.completion_tokens > 0
    assert log.duration < 2500  # the whole stream takes about 3.8 s


def test_a_stream_the_provider_cuts_ends_with_an_sse_error_event_and_no_done(gateway, project, token, fake_upstream):
    fake_upstream.stream_chunks = 10
    fake_upstream.fail("cut_mid_stream", after=3)
    response = _open_stream(gateway, token)

    events = list(_events(response.iter_lines()))

    assert b"[DONE]" not in events
    assert _is_error(events[-1]), events
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_error" and "127.0.0.1" not in error["message"]
    choices = [c for e in events[:-1] for c in orjson.loads(e)["choices"]]
    assert len([c for c in choices if c["delta"].get("content")]) == 3  # what came before the cut
    assert all(c["finish_reason"] is None for c in choices)  # no made-up ending
    eventually(lambda: _logs(project))
    time.sleep(0.5)  # room for a second row, were there one
    logs = _logs(project)
    assert len(logs) == 1
    # A provider fault, not the client leaving: an error row, not a cancellation.
    assert (logs[0].has_error, logs[0].status_code, logs[0].canceled) == (True, 502, False)


def test_deleting_the_project_ends_its_stream_in_flight_with_an_sse_error_event(gateway, owner, project, token, fake_upstream):
    fake_upstream.chunk_delay = 0.5
    fake_upstream.stream_chunks = 20  # about 10 s in full
    response = _open_stream(gateway, token)
    events = _events(response.iter_lines())
    first = next(events)
    assert not _is_error(first)

    deleted = owner.api.delete(f"/api/v1/projects/{project.id}")
    assert deleted.status_code == 204, deleted.content
    deleted_at = time.monotonic()
    # Read the rest in a thread so a stream that never ends fails the test instead of hanging it.
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.extend(events), daemon=True)
    reader.start()
    reader.join(timeout=2 + EVENT_DELAY)
    ended_after = time.monotonic() - deleted_at

    assert not reader.is_alive(), f"the stream was still open {ended_after:.1f} s after the project was deleted"
    assert ended_after < 2.0
    assert b"[DONE]" not in rest
    assert rest and _is_error(rest[-1]), rest
    assert orjson.loads(rest[-1])["error"]["code"] == "permission_denied"
    call = fake_upstream.calls[0]
    assert eventually(lambda: call.disconnected, timeout=2) and not call.finished


def test_deleting_the_project_makes_its_key_stop_authenticating_at_once(gateway, owner, project, token):
    assert _chat(gateway, token).status_code == 200  # the key is known and cached by the gateway

    assert owner.api.delete(f"/api/v1/projects/{project.id}").status_code == 204
    response, elapsed = _first_status_change(gateway, token, 401, within=EVENT_DELAY + 0.5)

    assert response.status_code == 401, f"still {response.status_code} {elapsed:.1f} s after the deletion"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert _chat(gateway, token).status_code == 401


def test_an_archived_project_gets_403_on_the_next_request(gateway, owner, project, token):
    assert _chat(gateway, token).status_code == 200

    archived = owner.api.patch(f"/api/v1/projects/{project.id}", {"status": "archived"})
    assert archived.status_code == 200, archived.content
    response, elapsed = _first_status_change(gateway, token, 403, within=EVENT_DELAY + 0.5)

    assert response.status_code == 403, f"still {response.status_code} {elapsed:.1f} s after archiving"
    assert response.json()["error"]["code"] == "permission_denied"
    assert _chat(gateway, token).status_code == 403
