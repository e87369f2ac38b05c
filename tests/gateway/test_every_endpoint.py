"""Every /v1 API endpoint (gateway.v1.ENDPOINTS) through the machinery they share, end to end:
one table, ENDPOINT_CASES, says how to ask each endpoint (a minimal body for a model, the usage
log's `endpoint`, the shape its errors come in), and every test below runs for every row. A new
endpoint fails `test_every_endpoint_has_a_case` until it has its row, and then gets all the
rest: a usage row per request, spend limits (402/401), IAM rules (403), an unknown model (404),
bad bodies (400 naming the field, 413 too large, 405 not a POST), the response cache (streams
too, parsed by the official SDKs, never across endpoints), CORS preflights, keys of other
organizations, both key headers, streams cut by the provider or stopped by deleting the project
(an error event in the endpoint's shape), and credits that add up to the usage rows.

Requests are plain httpx posts of orjson bytes, so identical requests are byte-identical and
one code path covers every endpoint."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import orjson
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from apikeys import services as key_services
from apikeys.models import ApiKey
from gateway import catalog, v1
from projects import services as project_services
from projects.models import Organization
from tests.gateway.conftest import eventually, gateway_key
from usage.models import UsageLog
from usage.services import credits_add

CLAUDE, GPT, EMBEDDER = "claude-haiku-4-5", "gpt-4o-mini", "text-embedding-3-small"
TINY_LIMIT = "0.000001"  # $0.000001: below every case's `costly` worst case
ORIGIN = "https://foreign-app.example"  # no origin the gateway knows: CORS_ALLOWED_ORIGINS is "*" in the live gateway

# --- how to ask each endpoint ---------------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    """An error answer, read in its endpoint's shape (Anthropic's has no param nor code)."""

    type: str
    message: str
    param: str | None
    code: str | None


def openai_error(response: httpx.Response) -> Error:
    """OpenAI's shape, exactly: {"error": {"message", "type", "param", "code"}}."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    e = body["error"]
    return Error(e["type"], e["message"], e["param"], e["code"])


def anthropic_error(response: httpx.Response) -> Error:
    """Anthropic's shape, exactly: {"type": "error", "error": {"type", "message"}}."""
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    return Error(body["error"]["type"], body["error"]["message"], None, None)


# The error `type` each shape gives a status (OpenAI's API reference; Anthropic's Errors page,
# its 402 being the gateway's own spend limits).
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
                403: "permission_error", 404: "invalid_request_error", 405: "invalid_request_error",
                413: "invalid_request_error", 502: "api_error"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                   413: "request_too_large", 502: "api_error"}


def _openai_stream(raw: bytes, cast_to: Any) -> list[Any]:
    return list(openai.Stream(cast_to=cast_to, response=_sse_response(raw), client=openai.OpenAI(api_key="unused")))


def _anthropic_stream(raw: bytes) -> list[Any]:
    client = anthropic.Anthropic(api_key="unused")
    return list(anthropic.Stream(cast_to=RawMessageStreamEvent, response=_sse_response(raw), client=client))


def _sse_response(raw: bytes) -> httpx2.Response:
    """The bytes of a stream as the SDKs' own HTTP client hands them to their SSE decoder."""
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw,
                           request=httpx2.Request("POST", "http://gateway.invalid/v1"))


def sse_frames(raw: bytes) -> list[tuple[str | None, str]]:
    """A stream's frames: (event name or None, data)."""
    frames = []
    for block in raw.decode().split("\n\n"):
        lines = block.split("\n")
        event = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if data:
            frames.append((event, "\n".join(data)))
    return frames


def _chat_stream_error(raw: bytes) -> Error:
    """A chat completion stream's error: a last `data: {"error": {...}}` (OpenAI's shape), which
    the openai SDK raises."""
    event, data = sse_frames(raw)[-1]
    body = orjson.loads(data)
    assert event is None and set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    with pytest.raises(openai.APIError):
        _openai_stream(raw, ChatCompletionChunk)
    e = body["error"]
    return Error(e["type"], e["message"], e["param"], e["code"])


def _messages_stream_error(raw: bytes) -> Error:
    """Anthropic's `event: error` with {"type": "error", "error": {"type", "message"}}, which the
    anthropic SDK raises."""
    event, data = sse_frames(raw)[-1]
    body = orjson.loads(data)
    assert event == "error" and set(body) == {"type", "error"} and set(body["error"]) == {"type", "message"}, body
    with pytest.raises(anthropic.APIStatusError):
        _anthropic_stream(raw)
    return Error(body["error"]["type"], body["error"]["message"], None, None)


def _responses_stream_error(raw: bytes) -> Error:
    """The Responses API's `error` event {"type": "error", "code", "message", "param",
    "sequence_number"}; the SDK yields it."""
    event, data = sse_frames(raw)[-1]
    body = orjson.loads(data)
    assert event == "error" and body["type"] == "error" and isinstance(body["sequence_number"], int), body
    assert _openai_stream(raw, ResponseStreamEvent)[-1].type == "error"
    return Error("error", body["message"], body["param"], body["code"])


def _responses_numbered(raw: bytes) -> None:
    """Every event of a Responses stream has its sequence_number, from 0 in order, the error
    event that ends it included (OpenAI's Streaming events reference)."""
    numbers = [orjson.loads(data)["sequence_number"] for _, data in sse_frames(raw)]
    assert numbers == list(range(len(numbers))), numbers


def _chat_text(events: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in events if c.choices)


def _messages_text(events: list[Any]) -> str:
    assert events[0].type == "message_start" and events[-1].type == "message_stop", [e.type for e in events]
    return "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")


def _responses_text(events: list[Any]) -> str:
    assert events[0].type == "response.created" and events[-1].type == "response.completed", [e.type for e in events]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text
    return text


@dataclass(frozen=True)
class Case:
    logged_as: str  # the usage log's `endpoint`
    models: tuple[str, ...]  # models it serves; the first is the one the tests ask by default
    body: Callable[[str], dict[str, Any]]  # a minimal valid request for a model
    required: tuple[str, ...]  # the fields the API requires besides `model`
    wrong: dict[str, Any]  # a value of the wrong type for each field it names
    costly: dict[str, Any]  # fields that make the request's worst case exceed TINY_LIMIT
    error: Callable[[httpx.Response], Error]  # reads an error in the endpoint's shape
    types: dict[int, str]  # the error `type` of each status in that shape
    answered: Callable[[dict[str, Any]], bool]  # a successful answer is the endpoint's own kind
    streamed_text: Callable[[bytes], str] | None = None  # parses a stream with the official SDK; None: no streams
    stream_error: Callable[[bytes], Error] | None = None  # reads the error event that ends a stream
    stream_order: Callable[[bytes], None] | None = None  # checks the order of a stream's events, if it has one

    def request(self, model: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**self.body(model or self.models[0]), **extra}

    def refused(self, response: httpx.Response, status: int, code: str) -> Error:
        """The error of `response`, checked: its status, its shape, the shape's type for the
        status, and (in OpenAI's shape, which has one) its code."""
        assert response.status_code == status, (response.status_code, response.text)
        error = self.error(response)
        assert error.type == self.types[status], error
        if self.types is OPENAI_TYPES:
            assert error.code == code, error
        return error

    def stream_refused(self, raw: bytes, status: int, code: str) -> Error:
        """The error event that ends the stream `raw`, checked as `refused` checks an answer."""
        assert self.stream_error is not None
        error = self.stream_error(raw)
        if self.types is ANTHROPIC_TYPES:
            assert error.type == self.types[status], error
        else:
            assert error.code == code, error
        if self.stream_order is not None:
            self.stream_order(raw)
        return error


HI = [{"role": "user", "content": "Hi"}]

ENDPOINT_CASES: dict[str, Case] = {
    "/v1/chat/completions": Case(
        logged_as="chat.completions", models=(GPT, CLAUDE),
        body=lambda model: {"model": model, "messages": HI},
        required=("messages",), wrong={"messages": "Hi", "max_tokens": "64", "stream": "yes"},
        costly={"max_tokens": 4000},
        error=openai_error, types=OPENAI_TYPES, answered=lambda a: a.get("object") == "chat.completion",
        streamed_text=lambda raw: _chat_text(_openai_stream(raw, ChatCompletionChunk)), stream_error=_chat_stream_error,
    ),
    "/v1/messages": Case(
        logged_as="messages", models=(CLAUDE, GPT),
        body=lambda model: {"model": model, "max_tokens": 64, "messages": HI},
        required=("max_tokens", "messages"), wrong={"messages": "Hi", "max_tokens": "64", "stream": "yes"},
        costly={"max_tokens": 4000},
        error=anthropic_error, types=ANTHROPIC_TYPES, answered=lambda a: a.get("type") == "message",
        streamed_text=lambda raw: _messages_text(_anthropic_stream(raw)), stream_error=_messages_stream_error,
    ),
    "/v1/responses": Case(
        logged_as="responses", models=(GPT, CLAUDE),
        body=lambda model: {"model": model, "input": "Hi"},
        required=("input",), wrong={"input": 42, "max_output_tokens": "64", "stream": "yes"},
        costly={"max_output_tokens": 4000},
        error=openai_error, types=OPENAI_TYPES, answered=lambda a: a.get("object") == "response",
        streamed_text=lambda raw: _responses_text(_openai_stream(raw, ResponseStreamEvent)),
        stream_error=_responses_stream_error, stream_order=_responses_numbered,
    ),
    "/v1/embeddings": Case(
        logged_as="embeddings", models=(EMBEDDER,),
        body=lambda model: {"model": model, "input": "Hi", "encoding_format": "float"},
        required=("input",), wrong={"input": 42, "dimensions": "8", "encoding_format": 7},
        costly={"input": "word " * 400},  # up to 2,000 tokens × $0.02/1M = $0.00004
        error=openai_error, types=OPENAI_TYPES, answered=lambda a: a.get("object") == "list" and bool(a.get("data")),
    ),
}
PATHS = list(ENDPOINT_CASES)
STREAMING = [path for path, case in ENDPOINT_CASES.items() if case.streamed_text]
PATH_MODELS = [(path, model) for path, case in ENDPOINT_CASES.items() for model in case.models]


def post(gateway, path: str, token: str | None, body: dict[str, Any] | None = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return httpx.post(f"{gateway.url}{path}", content=raw if raw is not None else orjson.dumps(body), headers=sent,
                      timeout=30)


def rows(project, n: int = 1) -> list[UsageLog]:
    """The project's usage rows once there are `n`, after a moment more for any extra."""
    eventually(lambda: UsageLog.objects.filter(project=project).count() >= n)
    time.sleep(0.3)
    found = list(UsageLog.objects.filter(project=project).order_by("created_at"))
    assert len(found) == n, [(r.endpoint, r.status_code, r.error_message) for r in found]
    return found


def generate_calls(fake) -> list:
    return [c for c in fake.calls if c.endpoint in ("generate", "responses", "embeddings")]


def providers_of(path: str, model: str) -> set[str]:
    offers = catalog.embedding_offers(model) if ENDPOINT_CASES[path].logged_as == "embeddings" else catalog.offers_of(model)
    return {o.provider for o in offers}


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


def key_with_rule(project, rule_type: str, value: dict[str, Any]) -> str:
    token, key = key_services.api_key_create(project=project)
    key_services.iam_rule_create(api_key=key, rule_type=rule_type, rule_value=value)
    return token


# --- the table is complete ------------------------------------------------------------------------


def test_every_endpoint_has_a_case():
    """An endpoint added to gateway.v1.ENDPOINTS fails here until it has its row above, and
    then every test of this file covers it."""
    assert set(ENDPOINT_CASES) == set(v1.ENDPOINTS)


@pytest.mark.parametrize("path", PATHS)
def test_each_case_logs_under_the_endpoints_own_name(path):
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    logged_as, _, _ = v1.ENDPOINTS[path](scope)
    assert logged_as == ENDPOINT_CASES[path].logged_as


# --- a successful request -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "model"), PATH_MODELS)
def test_a_successful_request_leaves_one_usage_row(gateway, org, project, key_for, fake_upstream, paid, path, model):
    case = ENDPOINT_CASES[path]
    response = post(gateway, path, key_for(project), case.request(model))
    assert response.status_code == 200, response.text
    assert case.answered(response.json()), response.json()
    [provider] = providers_of(path, model)
    assert response.headers["x-gateway-provider"] == provider
    [row] = rows(project)
    assert (row.endpoint, row.status_code, row.used_provider, row.requested_model) == (case.logged_as, 200, provider, model)
    assert row.cost > 0 and not row.has_error and not row.cached
    assert Decimal(response.headers["x-gateway-cost"]) == row.cost  # what the client is told it was billed
    usage = response.json().get("usage") or {}
    if "cost" in usage:
        assert Decimal(str(usage["cost"])) == row.cost
    assert len(generate_calls(fake_upstream)) == 1


@pytest.mark.parametrize("path", PATHS)
def test_bearer_and_x_api_key_both_carry_the_key_and_a_wrong_one_is_a_401(gateway, org, project, key_for, fake_upstream,
                                                                          paid, path):
    case, token = ENDPOINT_CASES[path], key_for(project)
    assert post(gateway, path, token, case.request()).status_code == 200
    assert post(gateway, path, None, case.request(), headers={"x-api-key": token}).status_code == 200
    unknown = post(gateway, path, "llmgw_not_a_key", case.request())
    assert "API key" in case.refused(unknown, 401, "invalid_api_key").message
    missing = post(gateway, path, None, case.request())
    assert "API key" in case.refused(missing, 401, "invalid_api_key").message
    assert len(generate_calls(fake_upstream)) == 2


@pytest.mark.parametrize("path", PATHS)
def test_a_get_is_a_405_in_the_endpoints_shape(gateway, org, project, key_for, path):
    response = httpx.get(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key_for(project)}"}, timeout=20)
    assert "POST" in ENDPOINT_CASES[path].refused(response, 405, "method_not_allowed").message


# --- spend limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_usage_limit_too_small_for_the_worst_case_is_a_402_naming_it_and_logged(gateway, org, project, key_for,
                                                                                   fake_upstream, paid, path):
    case = ENDPOINT_CASES[path]
    response = post(gateway, path, key_for(project, usage_limit=TINY_LIMIT), case.request(**case.costly))
    error = case.refused(response, 402, "usage_limit_insufficient")
    assert "usage limit" in error.message and "0.000001" in error.message, error
    assert generate_calls(fake_upstream) == []
    [row] = rows(project)
    assert (row.endpoint, row.status_code, row.cost, row.has_error) == (case.logged_as, 402, 0, True)


@pytest.mark.parametrize("state", ["at-its-limit", "disabled-for-its-limit"])
@pytest.mark.parametrize("path", PATHS)
def test_a_key_already_spent_is_a_401_and_logged(gateway, org, project, fake_upstream, paid, path, state):
    case = ENDPOINT_CASES[path]
    token, key = key_services.api_key_create(project=project, usage_limit="0.01")
    ApiKey.objects.filter(pk=key.pk).update(usage=Decimal("0.01"))  # what the worker leaves after spending it
    if state == "disabled-for-its-limit":
        key_services.api_key_update(api_key=ApiKey.objects.get(pk=key.pk), usage_limit="0.01")
        assert ApiKey.objects.get(pk=key.pk).disabled_reason == "usage_limit"
    response = post(gateway, path, token, case.request())
    assert "usage limit" in case.refused(response, 401, "usage_limit_reached").message
    assert generate_calls(fake_upstream) == []
    [row] = rows(project)
    assert (row.endpoint, row.status_code, row.cost) == (case.logged_as, 401, 0)


# --- IAM rules, unknown models ----------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["deny_models", "deny_providers"])
@pytest.mark.parametrize("path", PATHS)
def test_an_iam_deny_rule_is_a_403_in_the_endpoints_shape_and_logged(gateway, org, project, fake_upstream, paid, path,
                                                                     rule):
    case = ENDPOINT_CASES[path]
    model = case.models[0]
    value = {"models": [model]} if rule == "deny_models" else {"providers": sorted(providers_of(path, model))}
    response = post(gateway, path, key_with_rule(project, rule, value), case.request())
    error = case.refused(response, 403, "permission_denied")
    assert model in error.message and "IAM" in error.message, error
    assert generate_calls(fake_upstream) == []
    [row] = rows(project)
    assert (row.endpoint, row.status_code, row.requested_model, row.has_error) == (case.logged_as, 403, model, True)


@pytest.mark.parametrize("path", PATHS)
def test_an_unknown_model_is_a_404_in_the_endpoints_shape(gateway, org, project, key_for, fake_upstream, paid, path):
    case = ENDPOINT_CASES[path]
    response = post(gateway, path, key_for(project), case.request("no-such-model-anywhere"))
    error = case.refused(response, 404, "model_not_found")
    assert "no-such-model-anywhere" in error.message
    if error.param is not None or case.error is openai_error:
        assert error.param == "model"
    assert generate_calls(fake_upstream) == []
    [row] = rows(project)
    assert (row.endpoint, row.status_code) == (case.logged_as, 404)


# --- bad bodies ----------------------------------------------------------------------------------------


NOT_JSON = {
    "not-json": b'{"model": "x", "messages": [',
    "not-an-object": b'["a", "list"]',
    "empty": b"",
}


def _refused_before_any_call(case: Case, response: httpx.Response, project, fake, status: int = 400,
                             code: str = "invalid_request_error") -> Error:
    error = case.refused(response, status, code)
    assert generate_calls(fake) == []
    [row] = rows(project)
    assert (row.endpoint, row.status_code, row.has_error) == (case.logged_as, status, True)
    return error


@pytest.mark.parametrize("bad", list(NOT_JSON))
@pytest.mark.parametrize("path", PATHS)
def test_a_body_that_is_no_json_object_is_a_400_in_the_endpoints_shape(gateway, org, project, key_for, fake_upstream,
                                                                       paid, path, bad):
    case = ENDPOINT_CASES[path]
    response = post(gateway, path, key_for(project), raw=NOT_JSON[bad])
    error = _refused_before_any_call(case, response, project, fake_upstream)
    assert "JSON" in error.message, error


FIELD_CASES = [(path, field, how) for path, case in ENDPOINT_CASES.items()
               for field, how in [("model", "missing"), ("model", "wrong"),
                                  *((f, "missing") for f in case.required), *((f, "wrong") for f in case.wrong)]]


@pytest.mark.parametrize(("path", "field", "how"), FIELD_CASES)
def test_a_missing_or_mistyped_field_is_a_400_in_the_endpoints_shape_naming_it(gateway, org, project, key_for,
                                                                                fake_upstream, paid, path, field, how):
    case = ENDPOINT_CASES[path]
    body = {k: v for k, v in case.request().items() if k != field}
    if how == "wrong":
        body[field] = case.wrong.get(field, 42)
    response = post(gateway, path, key_for(project), body)
    error = _refused_before_any_call(case, response, project, fake_upstream)
    assert f"'{field}'" in error.message, error
    if case.error is openai_error:
        assert error.param == field, error


@pytest.mark.parametrize("path", PATHS)
def test_a_body_over_the_size_limit_is_a_413_in_the_endpoints_shape(gateway, org, project, key_for, fake_upstream, paid,
                                                                   path):
    case = ENDPOINT_CASES[path]
    raw = orjson.dumps(case.request(padding="a" * (10 * 1024 * 1024)))  # GATEWAY_MAX_BODY_BYTES: 10 MiB
    error = _refused_before_any_call(case, post(gateway, path, key_for(project), raw=raw), project, fake_upstream,
                                     413, "request_too_large")
    assert str(10 * 1024 * 1024) in error.message


# --- the response cache -------------------------------------------------------------------------------


@pytest.fixture
def caching(org, project, paid):
    project_services.project_update(project=project, caching_enabled=True)
    return project


def _without_cost(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer with its usage.cost zeroed: a hit replays the stored answer billed nothing."""
    usage = answer.get("usage")
    if isinstance(usage, dict) and "cost" in usage:
        return {**answer, "usage": {**usage, "cost": 0}}
    return answer


@pytest.mark.parametrize("path", PATHS)
def test_the_second_identical_request_is_a_free_hit_answered_identically(gateway, caching, key_for, fake_upstream, path):
    case, token = ENDPOINT_CASES[path], key_for(caching)
    first = post(gateway, path, token, case.request())
    second = post(gateway, path, token, case.request())
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("MISS", "HIT")
    assert second.json() == _without_cost(first.json())
    assert Decimal(second.headers["x-gateway-cost"]) == 0 < Decimal(first.headers["x-gateway-cost"])
    assert len(generate_calls(fake_upstream)) == 1
    miss, hit = rows(caching, 2)
    assert (miss.endpoint, hit.endpoint) == (case.logged_as, case.logged_as)
    assert (miss.cached, miss.cache_status, hit.cached, hit.cache_status) == (False, "miss", True, "hit")
    assert hit.cost == 0 < miss.cost == hit.saved_cost
    assert (hit.prompt_tokens, hit.completion_tokens, hit.used_provider) == (miss.prompt_tokens, miss.completion_tokens,
                                                                             miss.used_provider)


@pytest.mark.parametrize("path", PATHS)
def test_x_no_cache_neither_reads_nor_writes_the_cache(gateway, caching, key_for, fake_upstream, path):
    case, token = ENDPOINT_CASES[path], key_for(caching)
    skip = {"x-no-cache": "true"}
    statuses = [post(gateway, path, token, case.request(), headers=headers).headers["x-gateway-cache"]
                for headers in (skip, None, skip)]
    assert statuses == ["MISS", "MISS", "MISS"]
    assert len(generate_calls(fake_upstream)) == 3
    assert [r.cache_status for r in rows(caching, 3)] == ["skip", "miss", "skip"]


def _frames_without_cost(raw: bytes) -> bytes:
    """A stream's bytes with each frame's usage.cost zeroed (as a hit replays it)."""
    frames = []
    for frame in raw.decode().split("\n\n"):
        lines = frame.split("\n")
        if lines[-1].startswith("data: {") and '"cost"' in lines[-1]:
            data = orjson.loads(lines[-1][6:])
            if isinstance(data.get("usage"), dict) and "cost" in data["usage"]:
                data["usage"]["cost"] = 0
            lines[-1] = "data: " + orjson.dumps(data).decode()
        frames.append("\n".join(lines))
    return "\n\n".join(frames).encode()


@pytest.mark.parametrize("model_index", [0, 1], ids=["native", "translated"])
@pytest.mark.parametrize("path", STREAMING)
def test_a_stream_is_replayed_from_the_cache_and_parses_with_the_official_sdk(gateway, caching, key_for, fake_upstream,
                                                                              path, model_index):
    case, token = ENDPOINT_CASES[path], key_for(caching)
    fake_upstream.reply = "One two three four five"
    body = case.request(case.models[model_index], stream=True)
    first = post(gateway, path, token, body)
    second = post(gateway, path, token, body)
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("MISS", "HIT")
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.content == _frames_without_cost(first.content)
    assert case.streamed_text(first.content) == case.streamed_text(second.content) == "One two three four five"
    for raw in (first.content, second.content):
        if case.stream_order is not None:
            case.stream_order(raw)
    assert len(generate_calls(fake_upstream)) == 1
    miss, hit = rows(caching, 2)
    assert (miss.streamed, hit.streamed, hit.cached, hit.endpoint) == (True, True, True, case.logged_as)
    assert hit.cost == 0 < miss.cost


def test_the_cache_key_includes_the_endpoint(gateway, caching, key_for, fake_upstream):
    """One body every chat-like endpoint accepts, byte for byte: each endpoint misses once and
    is answered in its own shape, then hits its own entry only."""
    token = key_for(caching)
    raw = orjson.dumps({"model": CLAUDE, "max_tokens": 64, "messages": HI, "input": "Hi"})
    for round_, expected in ((1, "MISS"), (2, "HIT")):
        for path in STREAMING:
            response = post(gateway, path, token, raw=raw)
            assert response.status_code == 200, (path, response.text)
            assert (round_, path, response.headers["x-gateway-cache"]) == (round_, path, expected)
            assert ENDPOINT_CASES[path].answered(response.json()), (path, response.json())
    assert len(generate_calls(fake_upstream)) == len(STREAMING)
    logged = rows(caching, 2 * len(STREAMING))
    assert sorted((r.endpoint, r.cache_status) for r in logged) == sorted(
        (ENDPOINT_CASES[p].logged_as, status) for p in STREAMING for status in ("miss", "hit"))


def test_a_chat_completion_never_gets_the_messages_answer_of_a_byte_identical_body(gateway, caching, key_for,
                                                                                    fake_upstream):
    token = key_for(caching)
    raw = orjson.dumps({"model": CLAUDE, "max_tokens": 64, "messages": HI})
    messages = post(gateway, "/v1/messages", token, raw=raw)
    assert messages.headers["x-gateway-cache"] == "MISS" and messages.json()["type"] == "message"
    chat = post(gateway, "/v1/chat/completions", token, raw=raw)
    assert chat.headers["x-gateway-cache"] == "MISS"
    assert chat.json()["object"] == "chat.completion" and "type" not in chat.json()
    assert len(generate_calls(fake_upstream)) == 2


def test_a_messages_request_with_other_anthropic_headers_is_not_answered_from_the_cache(gateway, caching, key_for,
                                                                                        fake_upstream):
    """/v1/messages passes the client's anthropic-version and anthropic-beta on to Claude, and
    they change what Claude does with the same body (a beta feature on or off, another API
    version): an answer given under one set of them is not the answer to the other."""
    token = key_for(caching)
    body = ENDPOINT_CASES["/v1/messages"].request(CLAUDE)
    plain = post(gateway, "/v1/messages", token, body)
    beta = post(gateway, "/v1/messages", token, body, headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert (plain.headers["x-gateway-cache"], beta.headers["x-gateway-cache"]) == ("MISS", "MISS")
    assert [c.headers.get("anthropic-beta") for c in generate_calls(fake_upstream)] == [None, "context-1m-2025-08-07"]
    again = post(gateway, "/v1/messages", token, body, headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert again.headers["x-gateway-cache"] == "HIT"


# --- CORS ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PATHS, "/v1/messages/count_tokens"])
def test_a_preflight_from_a_foreign_origin_is_a_204_on_every_path(gateway, path):
    response = httpx.options(f"{gateway.url}{path}", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, anthropic-version, content-type"}, timeout=20)
    assert response.status_code == 204 and response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "x-api-key, anthropic-version, content-type"


@pytest.mark.parametrize("path", PATHS)
def test_an_answer_and_an_error_to_a_foreign_origin_carry_the_cors_headers(gateway, org, project, key_for, fake_upstream,
                                                                           paid, path):
    case, token = ENDPOINT_CASES[path], key_for(project)
    for response in (post(gateway, path, token, case.request(), headers={"Origin": ORIGIN}),
                     post(gateway, path, token, case.request("no-such-model-anywhere"), headers={"Origin": ORIGIN})):
        assert response.headers["access-control-allow-origin"] == "*", response.status_code
        assert "x-gateway-cost" in response.headers["access-control-expose-headers"]


# --- other organizations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_key_of_another_organization_uses_neither_this_ones_provider_keys_nor_its_credits(
        gateway, org, project, outsider, key_for, fake_upstream, paid, path):
    """This organization has credits and its own OpenAI and Anthropic keys; the outsider's
    organization has neither. The outsider's key is refused as its own organization would be
    (402: only credits could pay, and it has none), nothing reaches a provider, nothing is
    spent here, and the refusal is logged on the outsider's project."""
    for provider in ("openai", "anthropic"):
        key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)
    case = ENDPOINT_CASES[path]
    theirs = project_services.project_create(organization=outsider.organization, name="Theirs")
    org.refresh_from_db()
    before = (org.credits, org.credits_spent)
    response = post(gateway, path, key_for(theirs), case.request())
    error = case.refused(response, 402, "insufficient_credits")
    assert "credits" in error.message
    assert generate_calls(fake_upstream) == []
    [row] = rows(theirs)
    assert (row.endpoint, row.status_code, row.cost) == (case.logged_as, 402, 0)
    assert not UsageLog.objects.filter(project=project).exists()
    org.refresh_from_db()
    assert (org.credits, org.credits_spent) == before


@pytest.mark.parametrize("path", PATHS)
def test_a_key_of_another_organization_with_credits_of_its_own_is_served_with_them_not_with_this_ones_keys(
        gateway, org, project, outsider, key_for, fake_upstream, paid, path):
    for provider in ("openai", "anthropic"):
        key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)
    case = ENDPOINT_CASES[path]
    theirs = project_services.project_create(organization=outsider.organization, name="Theirs")
    credits_add(organization=outsider.organization, amount="1")
    org.refresh_from_db()
    before = (org.credits, org.credits_spent)
    response = post(gateway, path, key_for(theirs), case.request())
    assert response.status_code == 200, response.text
    [call] = generate_calls(fake_upstream)
    [provider] = providers_of(path, case.models[0])
    assert any(gateway_key(provider) in value for value in call.headers.values())  # the gateway's own key: credits pay
    assert not any("sk-own-" in value for value in call.headers.values())
    [row] = rows(theirs)
    assert (row.endpoint, row.used_mode, row.status_code) == (case.logged_as, "credits", 200) and row.cost > 0
    assert not UsageLog.objects.filter(project=project).exists()
    org.refresh_from_db()
    assert (org.credits, org.credits_spent) == before


# --- the project-deletion stop --------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_deleting_the_project_stops_a_request_in_flight_in_the_endpoints_shape(gateway, owner, org, project, key_for,
                                                                               fake_upstream, paid, path):
    """The provider holds the request (it hangs: the gateway would give up on it after 3 s,
    UPSTREAM_FIRST_BYTE_TIMEOUT, a 504); the project is deleted meanwhile."""
    case, token = ENDPOINT_CASES[path], key_for(project)
    fake_upstream.fail("hang", on="any")
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(post(gateway, path, token, case.request())), daemon=True)
    sender.start()
    assert eventually(lambda: generate_calls(fake_upstream), timeout=5), "the request never reached the provider"
    assert owner.api.delete(f"/api/v1/projects/{project.id}").status_code == 204
    sender.join(timeout=2.5)
    assert answers, "the request was still waiting 2.5 s after its project was deleted"
    error = case.refused(answers[0], 403, "permission_denied")
    assert "deleted" in error.message


@pytest.mark.parametrize("model_index", [0, 1], ids=["native", "translated"])
@pytest.mark.parametrize("path", STREAMING)
def test_deleting_the_project_mid_stream_ends_it_with_an_error_event_in_the_endpoints_shape(
        gateway, owner, org, project, key_for, fake_upstream, paid, path, model_index):
    case, token = ENDPOINT_CASES[path], key_for(project)
    fake_upstream.fail("hang_mid_stream", after=1)
    body = case.request(case.models[model_index], stream=True)
    received = b""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.stream("POST", f"{gateway.url}{path}", content=orjson.dumps(body), headers=headers,
                      timeout=httpx.Timeout(5)) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes()
        received += next(chunks)
        assert owner.api.delete(f"/api/v1/projects/{project.id}").status_code == 204
        for chunk in chunks:  # a stream that does not end is a ReadTimeout after 5 s
            received += chunk
    error = case.stream_refused(received, 403, "permission_denied")
    assert "deleted" in error.message


@pytest.mark.parametrize("model_index", [0, 1], ids=["native", "translated"])
@pytest.mark.parametrize("path", STREAMING)
def test_a_stream_the_provider_cuts_ends_with_an_error_event_in_the_endpoints_shape_and_is_logged(
        gateway, org, project, key_for, fake_upstream, paid, path, model_index):
    case = ENDPOINT_CASES[path]
    fake_upstream.fail("cut_mid_stream", after=2)
    response = post(gateway, path, key_for(project), case.request(case.models[model_index], stream=True))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    case.stream_refused(response.content, 502, "upstream_error")
    [row] = rows(project)
    assert (row.endpoint, row.streamed, row.status_code, row.has_error) == (case.logged_as, True, 502, True)


# --- credits add up -------------------------------------------------------------------------------------


def test_the_usage_rows_add_up_to_the_credits_spent_over_every_endpoint(gateway, org, project, key_for, fake_upstream):
    project_services.project_update(project=project, mode="credits")
    credits_add(organization=org, amount="5")
    org = Organization.objects.get(pk=org.pk)
    credits_before, spent_before = org.credits, org.credits_spent
    token = key_for(project)
    fake_upstream.usage = (1234, 567)
    asked = [(path, model, stream) for path, model in PATH_MODELS
             for stream in ((False, True) if ENDPOINT_CASES[path].streamed_text else (False,))]
    for path, model, stream in asked:
        body = ENDPOINT_CASES[path].request(model, **({"stream": True} if stream else {}))
        response = post(gateway, path, token, body)
        assert response.status_code == 200, (path, model, stream, response.text)
    logged = rows(project, len(asked))
    assert {r.endpoint for r in logged} == {case.logged_as for case in ENDPOINT_CASES.values()}
    assert all(r.used_mode == "credits" and r.cost > 0 and r.fee > 0 and r.status_code == 200 for r in logged)
    total = sum((r.cost for r in logged), Decimal(0))

    def settled():
        now = Organization.objects.get(pk=org.pk)
        return now if now.credits_spent - spent_before == total else None

    now = eventually(settled)
    assert now, (Organization.objects.get(pk=org.pk).credits_spent - spent_before, total)
    assert credits_before - now.credits == total
