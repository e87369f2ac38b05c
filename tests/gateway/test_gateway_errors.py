"""Every error /v1/chat/completions answers, in OpenAI's shape, read with `requests` so
nothing is hidden by an SDK: bad requests, bad keys, refusals, upstream failures before and
after the first streamed byte. Each leaves one usage row (unless no key was recognised), and
none gives away the organization's provider key or where the upstream lives."""

import http.client
import json
import time
from urllib.parse import urlsplit

import openai
import pytest
import requests

from apikeys import services as key_services
from projects import services
from tests.fake_upstream import free_port
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

OWN_KEY = "sk-own-openai-very-secret-token"
HI = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "gpt-4o-mini", "messages": HI}
FIRST_BYTE_TIMEOUT, IDLE_TIMEOUT = 3, 2  # as the live gateway is configured (tests/gateway/conftest.py)


@pytest.fixture
def token(org, project, key_for):
    """A key of a hybrid project whose organization has its own OpenAI key: gpt-4o-mini has
    exactly one provider, so one upstream failure is the request's failure."""
    key_services.provider_key_create(organization=org, provider="openai", token=OWN_KEY, validate=False)
    return key_for(project)


def post(gateway, token=None, body=None, *, data=None, headers=None, stream=False):
    sent = {"Content-Type": "application/json"}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body)
    return requests.post(
        f"{gateway.url}/v1/chat/completions", data=data, headers={**sent, **(headers or {})}, stream=stream, timeout=20
    )


def assert_no_secrets(text: str, fake=None) -> None:
    """Neither the organization's provider key (nor a piece of it), nor the gateway's own
    provider keys, nor (given the fake) the upstream's address."""
    assert OWN_KEY[:12] not in text and OWN_KEY[-12:] not in text
    assert "gw-own-" not in text
    if fake is not None:
        assert f":{fake.port}" not in text and "127.0.0.1" not in text


def openai_error(response, status: int, code: str, fake) -> dict:
    """The error object of a JSON error answer, checked for OpenAI's shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert_no_secrets(response.text, fake)
    return error


def sse_events(response) -> list[str]:
    """The `data:` payloads of a streamed answer, in order."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return [line[6:] for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def stream_error(events: list[str], code: str, fake) -> dict:
    """The SSE error event that ends a failed stream: last, after some content, with no [DONE]
    and no made-up finish_reason."""
    assert "[DONE]" not in events
    *chunks, last = events
    error = json.loads(last)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    parsed = [json.loads(c) for c in chunks]
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in parsed)
    assert not any(c["choices"] and c["choices"][0].get("finish_reason") for c in parsed)
    assert_no_secrets("\n".join(events), fake)
    return error


def one_log(project, status: int) -> UsageLog:
    """The request's usage row: exactly one, an error with this status code."""
    eventually(lambda: UsageLog.objects.filter(project=project).exists(), timeout=5)
    time.sleep(0.1)
    logs = list(UsageLog.objects.filter(project=project))
    assert len(logs) == 1, logs
    assert (logs[0].status_code, logs[0].has_error) == (status, True)
    assert logs[0].error_message
    assert_no_secrets(logs[0].error_message)
    return logs[0]


# --- the request itself ------------------------------------------------------------------------


def test_malformed_json_is_a_400(gateway, project, token, fake_upstream):
    response = post(gateway, token, data=b'{"model": "gpt-4o-mini", "messages": [')
    error = openai_error(response, 400, "invalid_request_error", fake_upstream)
    assert error["type"] == "invalid_request_error"
    assert fake_upstream.calls == []
    one_log(project, 400)


INVALID_REQUESTS = {
    "missing messages": ({"model": "gpt-4o-mini"}, "messages"),
    "empty messages": ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    "messages not a list": ({"model": "gpt-4o-mini", "messages": "Hi"}, "messages"),
    "missing model": ({"messages": HI}, "model"),
    "unknown role": ({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role"),
    "missing content": ({"model": "gpt-4o-mini", "messages": [*HI, {"role": "user"}]}, "messages[1].content"),
    "temperature hot": ({**CHAT, "temperature": "hot"}, "temperature"),
    "temperature 3": ({**CHAT, "temperature": 3}, "temperature"),
    "max_tokens -1": ({**CHAT, "max_tokens": -1}, "max_tokens"),
    "stream not a boolean": ({**CHAT, "stream": "yes"}, "stream"),
}


def test_each_invalid_request_is_a_400_naming_the_parameter_and_is_logged(gateway, project, token, fake_upstream):
    for case, (body, param) in INVALID_REQUESTS.items():
        error = openai_error(post(gateway, token, body), 400, "invalid_request_error", fake_upstream)
        assert (case, error["param"], error["type"]) == (case, param, "invalid_request_error")
    assert fake_upstream.calls == []
    eventually(lambda: UsageLog.objects.filter(project=project).count() >= len(INVALID_REQUESTS), timeout=5)
    logs = list(UsageLog.objects.filter(project=project))
    assert len(logs) == len(INVALID_REQUESTS)
    assert all((log.status_code, log.has_error) == (400, True) and log.error_message for log in logs)


def test_an_unknown_model_is_a_404_model_not_found(gateway, project, token, fake_upstream):
    error = openai_error(post(gateway, token, {**CHAT, "model": "gpt-99"}), 404, "model_not_found", fake_upstream)
    assert error["param"] == "model"
    one_log(project, 404)


def test_a_body_over_10_mb_is_a_413_before_the_server_reads_it(gateway, project, token, fake_upstream):
    # Announce 20 MB, send two bytes: the answer must come without waiting for the rest.
    url = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    started = time.monotonic()
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("Authorization", f"Bearer {token}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", "20000000")
        connection.endheaders(message_body=b"{}")
        response = connection.getresponse()
        status, raw = response.status, response.read()
    finally:
        connection.close()

    assert time.monotonic() - started < 2
    assert status == 413
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "10485760" in error["message"] or "10 MB" in error["message"]
    assert fake_upstream.calls == []
    one_log(project, 413)


# --- who is calling --------------------------------------------------------------------------------


def test_a_missing_or_unknown_key_is_a_401_invalid_api_key_and_leaves_no_row(gateway, project, token, fake_upstream):
    openai_error(post(gateway, None, CHAT), 401, "invalid_api_key", fake_upstream)
    openai_error(post(gateway, "llmgw_not-a-key", CHAT), 401, "invalid_api_key", fake_upstream)
    openai_error(post(gateway, None, CHAT, headers={"x-api-key": "llmgw_not-a-key"}), 401, "invalid_api_key", fake_upstream)
    assert fake_upstream.calls == []
    # A request with a real key afterwards: once its row is written, the earlier ones would be too.
    post(gateway, token, {"model": "gpt-4o-mini"})
    one_log(project, 400)
    assert UsageLog.objects.count() == 1


def test_a_key_disabled_by_patch_is_refused_with_401_and_the_refusal_is_logged(gateway, owner, project, fake_upstream):
    key_services.provider_key_create(organization=project.organization, provider="openai", token=OWN_KEY, validate=False)
    token, key = key_services.api_key_create(project=project)
    assert post(gateway, token, CHAT).status_code == 200  # the gateway now holds the key in its cache

    patched = owner.api.patch(f"/api/v1/api-keys/{key.id}", {"status": "inactive"})
    assert patched.status_code == 200 and patched.json()["apiKey"]["status"] == "inactive"
    answers = []

    def refused():
        answers.append(post(gateway, token, CHAT))
        return answers[-1].status_code == 401

    assert eventually(refused, timeout=5, interval=0.1)
    openai_error(answers[-1], 401, "invalid_api_key", fake_upstream)
    served = 1 + sum(a.status_code == 200 for a in answers)
    assert len(fake_upstream.calls) == served  # no refused request reached the provider
    expected = served + sum(a.status_code == 401 for a in answers)
    eventually(lambda: UsageLog.objects.filter(project=project).count() >= expected, timeout=5)
    logs = list(UsageLog.objects.filter(project=project))
    assert sorted(log.status_code for log in logs) == sorted([200] * served + [401] * (expected - served))
    assert all(log.has_error for log in logs if log.status_code == 401)


def test_a_key_of_an_archived_project_is_refused_with_403_and_the_refusal_is_logged(gateway, project, token, fake_upstream):
    services.project_update(project=project, status="archived")
    error = openai_error(post(gateway, token, CHAT), 403, "permission_denied", fake_upstream)
    assert "archived" in error["message"]
    assert fake_upstream.calls == []
    one_log(project, 403)


# --- the provider fails before the first byte -------------------------------------------------------


def test_a_500_from_every_provider_is_a_502_upstream_error(gateway, org, project, token, fake_upstream):
    credits_add(organization=org, amount="10")  # so both providers of the llama model are usable
    fake_upstream.fail("status", status=500, times=None)
    error = openai_error(post(gateway, token, {**CHAT, "model": "llama-3.3-70b-instruct"}), 502, "upstream_error", fake_upstream)
    assert error["type"]
    assert [c.provider for c in fake_upstream.calls] == ["groq", "together-ai"]
    one_log(project, 502)


def test_a_provider_that_never_answers_is_a_504_within_the_first_byte_timeout(gateway, project, token, fake_upstream):
    fake_upstream.fail("hang", provider="openai")
    started = time.monotonic()
    response = post(gateway, token, CHAT)
    elapsed = time.monotonic() - started

    openai_error(response, 504, "upstream_timeout", fake_upstream)
    assert FIRST_BYTE_TIMEOUT - 0.5 <= elapsed < FIRST_BYTE_TIMEOUT + 2
    one_log(project, 504)


def test_invalid_json_from_the_provider_is_a_502(gateway, project, token, fake_upstream):
    fake_upstream.fail("invalid_json", provider="openai")
    openai_error(post(gateway, token, CHAT), 502, "upstream_error", fake_upstream)
    one_log(project, 502)


def test_a_200_from_the_provider_that_carries_an_error_is_a_502(gateway, project, token, fake_upstream):
    fake_upstream.fail("error_in_200", provider="openai")
    error = openai_error(post(gateway, token, CHAT), 502, "upstream_error", fake_upstream)
    assert "The server had an error" in error["message"]  # the provider's reason, passed on
    one_log(project, 502)


def test_a_provider_error_that_echoes_the_key_reaches_the_client_without_it(gateway, project, token, fake_upstream):
    echo = {"error": {"message": f"Incorrect API key provided: {OWN_KEY}.", "type": "invalid_request_error",
                      "param": None, "code": "invalid_api_key"}}
    fake_upstream.fail("status", provider="openai", status=400, body=echo)
    error = openai_error(post(gateway, token, CHAT), 400, "invalid_request_error", fake_upstream)
    assert "Incorrect API key provided" in error["message"]
    log = one_log(project, 400)
    assert OWN_KEY[:12] not in log.error_message and OWN_KEY[-12:] not in log.error_message


def test_an_unreachable_provider_is_a_502_that_does_not_name_its_address(gateway, org, project, key_for, fake_upstream, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    port = free_port()  # nothing listens there
    key_services.provider_key_create(
        organization=org, provider="custom", name="dead-llm", token=OWN_KEY,
        base_url=f"http://127.0.0.1:{port}/v1", validate=False,
    )
    response = post(gateway, key_for(project), {**CHAT, "model": "dead-llm/some-model"})
    openai_error(response, 502, "upstream_error", fake_upstream)
    assert f":{port}" not in response.text
    log = one_log(project, 502)
    assert f":{port}" not in log.error_message and "127.0.0.1" not in log.error_message


# --- the provider fails after the first byte ---------------------------------------------------------


def test_a_stream_cut_by_the_provider_ends_with_an_sse_error_event_and_no_done(gateway, project, token, fake_upstream):
    fake_upstream.chunk_delay = 0.02  # the content sent before the failure reaches the gateway for sure
    fake_upstream.fail("cut_mid_stream", provider="openai", after=2)
    events = sse_events(post(gateway, token, {**CHAT, "stream": True}, stream=True))

    stream_error(events, "upstream_error", fake_upstream)
    log = one_log(project, 502)
    assert log.streamed and log.finish_reason == ""


def test_a_provider_silent_mid_stream_gets_an_sse_error_event_within_the_idle_timeout(gateway, project, token, fake_upstream):
    fake_upstream.chunk_delay = 0.02  # the content sent before the failure reaches the gateway for sure
    fake_upstream.fail("hang_mid_stream", provider="openai", after=1)
    started = time.monotonic()
    events = sse_events(post(gateway, token, {**CHAT, "stream": True}, stream=True))
    elapsed = time.monotonic() - started

    stream_error(events, "upstream_timeout", fake_upstream)
    assert IDLE_TIMEOUT - 0.5 <= elapsed < IDLE_TIMEOUT + 2
    one_log(project, 504)


def test_an_error_the_provider_sends_inside_its_stream_ends_with_an_sse_error_event(gateway, project, token, fake_upstream):
    fake_upstream.chunk_delay = 0.02  # the content sent before the failure reaches the gateway for sure
    fake_upstream.fail("error_in_200", provider="openai", after=2)
    events = sse_events(post(gateway, token, {**CHAT, "stream": True}, stream=True))

    stream_error(events, "upstream_error", fake_upstream)
    one_log(project, 502)


def test_a_stream_that_fails_before_its_first_byte_is_a_plain_json_error(gateway, project, token, fake_upstream):
    fake_upstream.fail("status", provider="openai", status=500)
    response = post(gateway, token, {**CHAT, "stream": True}, stream=True)
    openai_error(response, 502, "upstream_error", fake_upstream)
    log = one_log(project, 502)
    assert log.streamed


@pytest.mark.parametrize(("field", "value"), [
    ("web_search_options", {}),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("prediction", {"type": "content", "content": "x"}),
    ("service_tier", "priority"),
    ("service_tier", "flex"),
    ("modalities", ["text", "audio"]),
])
def test_parameters_billed_beyond_text_are_refused_naming_them(gateway, token, fake_upstream, field, value):
    client = gateway.client(token)

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={field: value})

    assert refused.value.body["param"] == field and field in refused.value.body["message"]
    assert fake_upstream.calls == []


def test_the_default_service_tier_is_served(gateway, token, fake_upstream):
    client = gateway.client(token)

    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                            extra_body={"service_tier": "default"})

    assert answer.choices[0].message.content
