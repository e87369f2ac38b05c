"""The conformance corpus (tests/conformance/cases/*/*.json) end to end: each recorded case's
request goes through the live gateway with the official openai SDK, its provider pinned
(`<provider>/<model>`) and paid with the organization's own key, while the fake upstream
replays the provider's recorded bytes, written in 7-byte pieces (cut inside multibyte
characters too). The gateway must send the provider exactly the case's `upstream_request` (the
model, in the body or the URL, is the pinned model's upstream id), the client must get the
case's `expected` answer (the raw SSE events of a stream, `[DONE]` last), and the usage log
must hold the case's usage and finish reason.

The fields the gateway sets itself are compared by type only: `id`, `created`, `model`, and
the `cost` it adds to usage objects. A refused case (`expected_error`) must be refused with
its status, code and parameter before anything reaches the provider.
"""

import inspect
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from apikeys import services as key_services
from gateway import catalog
from gateway.providers import PROVIDERS
from gateway.wire.google import call_id
from tests.conformance.test_transcripts import _call, _stream
from tests.fake_upstream import split_bytes
from tests.gateway.conftest import eventually
from usage.models import UsageLog

CASES_DIR = Path(__file__).resolve().parents[1] / "conformance" / "cases"
CASES = sorted(CASES_DIR.glob("*/*.json"))
SPLIT = 7  # bytes per piece the fake writes: cuts JSON, SSE framing and UTF-8 characters alike
SDK_PARAMS = set(inspect.signature(openai.resources.chat.Completions.create).parameters) - {"self"}
LOOSE = {"id": str, "created": int, "model": str}  # set by the gateway (or a passthrough host)
KNOWN_BUGS: dict[str, str] = {}  # case name → why it fails today (strict xfail)


def _case_param(path: Path):
    name = f"{path.parent.name}/{path.stem}"
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])] if name in KNOWN_BUGS else []
    return pytest.param(path, id=name, marks=marks)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _pinned(case: dict[str, Any]) -> tuple[str, catalog.Offer]:
    """The model id to send (the request's when it pins the case's provider, else pinned
    here) and the catalog's offer for it."""
    provider, model = case["provider"], case["request"]["model"]
    prefix, slash, rest = model.partition("/")
    bare = rest if slash and prefix == provider else model
    offer = catalog.resolve(provider, bare)
    assert offer is not None, f"the catalog does not know {provider}/{bare}: pick a known id of the same provider"
    return f"{provider}/{bare}", offer


def _sdk_kwargs(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The request as openai SDK arguments: what create() does not name goes in extra_body."""
    kwargs = {k: v for k, v in request.items() if k in SDK_PARAMS and k != "model"}
    extra = {k: v for k, v in request.items() if k not in SDK_PARAMS}
    if extra:
        kwargs["extra_body"] = extra
    return {**kwargs, "model": model}


def _strip_cost(value: Any, where: str) -> Any:
    """A copy without the `cost` the gateway adds to usage objects, checked to be a number."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "usage" and isinstance(item, dict) and "cost" in item:
                cost = item["cost"]
                assert isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0, f"{where}: usage.cost {cost!r}"
                item = {k: v for k, v in item.items() if k != "cost"}
            out[key] = _strip_cost(item, where)
        return out
    if isinstance(value, list):
        return [_strip_cost(item, where) for item in value]
    return value


def _loosened(answer: dict[str, Any], where: str) -> dict[str, Any]:
    """The answer with its gateway-set fields checked by type and replaced by a marker."""
    out = _derived_call_ids(_strip_cost(answer, where), answer.get("id", ""))
    for key, kind in LOOSE.items():
        assert isinstance(out.get(key), kind), f"{where}: {key} {out.get(key)!r} is not a {kind.__name__}"
        out[key] = f"<{key}>"
    return out


def _expected(item: dict[str, Any]) -> dict[str, Any]:
    return _derived_call_ids({**item, **{key: f"<{key}>" for key in LOOSE if key in item}}, "chatcmpl-conformance")


def _derived_call_ids(answer: dict[str, Any], completion_id: str) -> dict[str, Any]:
    """Gemini's calls mostly carry no id: the gateway derives one from the completion's id
    (gateway.wire.google.call_id). Such an id is replaced by a marker once checked to be the
    one derived from `completion_id`, the answer's own (the corpus's is fixed)."""
    for choice in answer.get("choices") or []:
        holder = choice.get("message") or choice.get("delta") or {}
        for position, call in enumerate(holder.get("tool_calls") or []):
            k = call.get("index", position)
            if call.get("id") == call_id(completion_id, choice["index"], k):
                call["id"] = "<derived call id>"
    return answer


def _upstream_expected(case: dict[str, Any], offer: catalog.Offer) -> dict[str, Any]:
    body = dict(case["upstream_request"])
    if "model" in body:  # OpenAI and Anthropic carry it in the body, Google in the URL
        body["model"] = offer.upstream_model
    return body


def _check_upstream(fake, case: dict[str, Any], offer: catalog.Offer) -> None:
    [call] = [c for c in fake.calls if c.endpoint == "generate"]
    assert call.replayed and fake.wait_for(lambda: call.finished)
    provider, wire = case["provider"], PROVIDERS[case["provider"]].wire_format
    assert call.provider == provider
    assert call.body == _upstream_expected(case, offer)
    stream = bool(case["request"].get("stream"))
    if wire == "google":
        method = "streamGenerateContent" if stream else "generateContent"
        assert call.path == f"/{provider}/v1beta/models/{offer.upstream_model}:{method}"
        assert call.query == ({"alt": "sse"} if stream else {})
        assert call.headers["x-goog-api-key"] == f"sk-own-{provider}"
    elif wire == "anthropic":
        assert call.path == f"/{provider}/v1/messages"
        assert (call.headers["x-api-key"], call.headers["anthropic-version"]) == (f"sk-own-{provider}", "2023-06-01")
    else:
        assert call.path == f"/{provider}/v1/chat/completions"
        assert call.headers["authorization"] == f"Bearer sk-own-{provider}"


def _sse_events(lines) -> list[str]:
    """The `data:` payloads of an SSE stream, in order."""
    events, data = [], []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            events.append("\n".join(data))
            data = []
    if data:
        events.append("\n".join(data))
    return events


def _offline(case: dict[str, Any]):
    """The corpus's own translation of the recorded stream (its state: error, usage, finish)."""
    wire, _ = _call(case)
    return _stream(wire, case, case["upstream_response"]["body"].encode(), None)[1]


def _log(project) -> UsageLog:
    rows = eventually(lambda: list(UsageLog.objects.filter(project=project)))
    assert len(rows) == 1, rows
    return rows[0]


def _check_log(case: dict[str, Any], log: UsageLog, offer: catalog.Offer, error: str | None) -> None:
    assert (log.endpoint, log.used_provider, log.used_model, log.used_mode) == (
        "chat.completions", case["provider"], offer.model, "api-keys")
    assert log.streamed == bool(case["request"].get("stream"))
    for name, value in case.get("expected_usage", {}).items():
        if name == "completion_tokens" and error:  # a stream cut short: at least one token per chunk sent
            assert log.completion_tokens >= value
        elif hasattr(log, name):
            assert getattr(log, name) == value, f"usage log {name}"
    if error:
        assert log.status_code == 502 and error in log.error_message
    else:
        assert log.status_code == 200 and not log.has_error
        if "expected_finish_reason" in case:
            assert log.finish_reason == case["expected_finish_reason"]


def test_the_fake_replays_recorded_bytes_exactly_in_pieces_cut_inside_characters(fake_upstream):
    body = '{"note": "déjà vu — 東京 🙂", "n": 1}'.encode()
    assert any(len(piece.decode("utf-8", "ignore").encode()) != len(piece) for piece in split_bytes(body, SPLIT))
    assert b"".join(split_bytes(body, [1, 13, 14])) == body and len(split_bytes(body, [1, 13, 14])) == 4
    fake_upstream.replay(body, status=201, split=SPLIT)
    sse = "event: a\ndata: é\n\n".encode()
    fake_upstream.replay(sse, split=1)
    base = fake_upstream.base_url("openai")
    first = httpx.post(f"{base}/chat/completions", json={"model": "m", "messages": []})
    second = httpx.post(f"{base}/chat/completions", json={"model": "m", "messages": [], "stream": True})
    third = httpx.post(f"{base}/chat/completions", json={"model": "m", "messages": []})
    assert (first.status_code, first.headers["content-type"], first.content) == (201, "application/json", body)
    assert (second.status_code, second.headers["content-type"], second.content) == (200, "text/event-stream", sse)
    assert third.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."  # the replays are used up
    calls = fake_upstream.calls
    assert [c.replayed for c in calls] == [True, True, False] and calls[1].body["stream"] is True
    assert fake_upstream.pending_replays == 0


@pytest.mark.parametrize("path", [_case_param(p) for p in CASES])
def test_a_recorded_case_through_the_live_gateway(gateway, org, project, key_for, fake_upstream, path):
    case = _load(path)
    provider = case["provider"]
    key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)
    model, offer = _pinned(case)
    token = key_for(project)
    request = case["request"]

    if "expected_error" in case:
        expected = case["expected_error"]
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json={**request, "model": model},
                              headers={"Authorization": f"Bearer {token}"}, timeout=20)
        error = response.json()["error"]
        assert (response.status_code, error["code"], error["param"]) == (expected["status"], expected["code"], expected["param"])
        assert fake_upstream.calls == []
        return

    recorded = case["upstream_response"]
    fake_upstream.replay(recorded["body"].encode(), status=recorded["status"], split=SPLIT, provider=provider)
    client = gateway.client(token)
    error = None
    if request.get("stream"):
        with client.chat.completions.with_streaming_response.create(**_sdk_kwargs(request, model)) as response:
            assert response.headers["x-gateway-provider"] == provider
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _sse_events(response.iter_lines())
        state = _offline(case)
        if state.error:  # the provider's in-band error ends the stream with the gateway's error event
            error = state.error
            assert case.get("expected_stream_error", "") in error
            *events, last = events
            failure = json.loads(last)["error"]
            assert failure["code"] == "upstream_error" and error in failure["message"]
        else:
            *events, last = events
            assert last == "[DONE]"
        chunks = [json.loads(event) for event in events]
        assert [_loosened(c, f"chunk {k}") for k, c in enumerate(chunks)] == [_expected(c) for c in case["expected"]]
        assert len({(c["id"], c["created"], c["model"]) for c in chunks}) <= 1, "the chunks of one stream share id, created, model"
    else:
        response = client.chat.completions.with_raw_response.create(**_sdk_kwargs(request, model))
        assert response.headers["x-gateway-provider"] == provider
        answer = json.loads(response.content)
        assert _loosened(answer, "answer") == _expected(case["expected"])
        completion = response.parse()  # the SDK reads it
        assert len(completion.choices) == len(case["expected"]["choices"])
        assert float(response.headers["x-gateway-cost"]) == answer["usage"]["cost"]
    _check_upstream(fake_upstream, case, offer)
    _check_log(case, _log(project), offer, error)


def test_a_stream_cut_by_an_in_band_error_keeps_the_providers_cache_reads(gateway, org, project, key_for, fake_upstream):
    """Claude reported 1,000 prompt tokens read from its cache, then failed mid-answer: they
    are billed at the cache-read price ($0.30/1M), not the input price ($3/1M)."""
    key_services.provider_key_create(organization=org, provider="anthropic", token="sk-own-anthropic", validate=False)
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1000, "output_tokens": 1}
    start = {"id": "msg_01Cut", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
             "stop_reason": None, "stop_sequence": None, "usage": usage}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Once upon"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    fake_upstream.replay("".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode())
    stream = gateway.client(key_for(project)).chat.completions.create(
        model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "A story"}], stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
    log = _log(project)
    assert (log.status_code, log.prompt_tokens, log.cached_tokens) == (502, 1010, 1000)
