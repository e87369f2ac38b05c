"""The conformance corpus: recorded provider transcripts, one JSON file per case under
tests/conformance/cases/<wire format>/, each checked end to end through the wire module:

    {
      "description": "what the case is about (one line)",
      "source": "the provider documentation the recorded bytes follow",
      "provider": "anthropic",                 # one of gateway.providers.PROVIDERS
      "upstream_model": "claude-sonnet-4-5",   # the id the provider knows the model by
      "request": {...},                        # the OpenAI chat completion request the client sends
      "upstream_request": {...},               # the body the gateway must send (exact JSON)
      "upstream_response": {"status": 200, "body": "..."},  # the provider's bytes (JSON or SSE text)
      "expected": {...} or [...],              # the client's answer: a chat.completion, or the list
                                               # of chunks of a stream (`finish()` included)
      "expected_usage": {...},                 # optional: gateway.tokens.Usage fields recorded
      "expected_finish_reason": "stop",        # optional
      "expected_stream_error": "overloaded",   # optional: the provider's in-band error (a part of
                                               # its message); the stream then ends with no finish()
      "expected_error": {"status": 400, "code": "...", "param": "..."}  # instead of the above,
                                               # when the request is refused before it is sent
    }

A translated answer's ids are fixed: `id` "chatcmpl-conformance", `created` 1750000000, and
its `model` is the request's `model` (OpenAI-format hosts' own ids pass through). A stream is fed to the translator split at awkward places (every
1, 2, 3, 7 and 64 bytes, and whole): the chunks the client gets must be the same each time.
"""

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.providers import PROVIDERS
from gateway.tokens import Usage
from gateway.validation import validate_chat
from gateway.wire import for_format
from gateway.wire.base import SSEDecoder, UpstreamFormatError

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(CASES_DIR.glob("*/*.json"))
IDS = {"completion_id": "chatcmpl-conformance", "created": 1750000000}
SPLITS = (1, 2, 3, 7, 64, None)  # None: the whole body at once


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _call(case: dict[str, Any]):
    request = case["request"]
    validate_chat(request)
    provider = PROVIDERS[case["provider"]]
    wire = for_format(provider.wire_format)
    call = wire.build_call(body=request, upstream_model=case["upstream_model"], base_url=provider.base_url or "https://custom.example/v1",
                           token="sk-conformance", stream=bool(request.get("stream")))
    return wire, call


def _as_json(item: Any) -> Any:
    return orjson.loads(item) if isinstance(item, (bytes, str)) else item


def _stream(wire, case: dict[str, Any], raw: bytes, split: int | None) -> tuple[list[Any], Any]:
    request = case["request"]
    translator = wire.stream_translator(model=request["model"], include_usage=bool(
        (request.get("stream_options") or {}).get("include_usage")), **IDS)
    decoder = SSEDecoder()
    pieces = [raw] if split is None else [raw[i:i + split] for i in range(0, len(raw), split)]
    items: list[Any] = []
    for piece in [*pieces, b""]:
        events = decoder.feed(piece) if piece else decoder.close()
        for event, data in events:
            items.extend(_as_json(item) for item in translator.feed(event, data))
    if translator.state.error is None:
        items.extend(_as_json(item) for item in translator.finish())
    return items, translator.state


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_transcript(path: Path):
    case = _load(path)
    assert case.get("description") and case.get("source"), "each case says what it is and where its bytes come from"
    if "expected_error" in case:
        with pytest.raises(GatewayError) as refused:
            _call(case)
        expected = case["expected_error"]
        assert {k: getattr(refused.value, k) for k in expected} == expected
        return
    wire, call = _call(case)
    assert orjson.loads(call.body) == case["upstream_request"]
    raw = case["upstream_response"]["body"].encode()
    if case["request"].get("stream"):
        results = [_stream(wire, case, raw, split) for split in SPLITS]
        items, state = results[-1]
        for split, (other, _) in zip(SPLITS, results, strict=True):
            assert other == items, f"split every {split} bytes"
        assert items == case["expected"]
        usage, reason = state.usage, state.finish_reason
    else:
        try:
            answer, usage, reason = wire.parse_response(orjson.loads(raw), model=case["request"]["model"], **IDS)
        except UpstreamFormatError as e:
            pytest.fail(f"the recorded answer could not be read: {e}")
        assert answer == case["expected"]
    if "expected_usage" in case:
        assert usage == Usage(**case["expected_usage"])
    if "expected_finish_reason" in case:
        assert reason == case["expected_finish_reason"]
    if "expected_stream_error" in case:
        assert case["expected_stream_error"] in (state.error or "")


def test_the_corpus_covers_every_wire_format():
    formats = {path.parent.name for path in CASES}
    assert formats >= {"openai", "anthropic", "google"}
