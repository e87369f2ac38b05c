"""A fake LLM upstream for the gateway's tests: OpenAI, Anthropic and Google on one port.

The fake runs an aiohttp server in its own event loop on a daemon thread, bound to
127.0.0.1 on a free port, and is driven from the test thread:

    with FakeUpstream() as fake:
        fake.base_url("openai")      # http://127.0.0.1:PORT/openai/v1
        fake.base_url("anthropic")   # http://127.0.0.1:PORT/anthropic
        fake.base_url("google")      # http://127.0.0.1:PORT/google
        fake.reply = "Hi"; fake.usage = (12, 3)
        fake.fail("status", provider="openai", status=429, headers={"Retry-After": "3"})
        ...
        fake.calls_for("openai")[-1].body
        fake.bill_most = True        # report the most a real provider could bill (most_billed)
        fake.replay(recorded_bytes, status=200, split=7)   # answer the next call with these bytes

The wire format is chosen by the path, never by the provider name: any POST path ending
in /chat/completions speaks OpenAI, /v1/messages speaks Anthropic and
/models/{model}:generateContent|streamGenerateContent speaks Google. The first path
segment is the "provider" the fake records and matches faults against.

Responses: any POST path ending in /responses (e.g. /openai/v1/responses) speaks OpenAI's
Responses API (wire "openai", Call.endpoint "responses"): a Response object ("resp_..."), its
`output` one `message` item holding `reply`, or one `function_call` item when the request has
a function tool (the first `{"type": "function", "name": ...}` of `tools`, arguments
TOOL_ARGUMENTS); `usage` from `usage` plus `cached_tokens` (of the input) and
`reasoning_tokens` (of the output), the settings only this endpoint reports. Streamed
("stream": true), it is OpenAI's semantic events, `event: <type>` + `data: <json>` with a
`sequence_number` from 0 and no [DONE]: response.created, response.in_progress,
response.output_item.added, then for a message response.content_part.added,
response.output_text.delta x stream_chunks, response.output_text.done,
response.content_part.done, or for a call response.function_call_arguments.delta x
stream_chunks, response.function_call_arguments.done; then response.output_item.done and
response.completed (the whole Response with its usage). Deltas carry OpenAI's `obfuscation`
padding unless stream_options.include_obfuscation is false. The request's settings are echoed
(instructions, max_output_tokens, tools, tool_choice, temperature, text, reasoning, metadata,
...) with OpenAI's defaults where it sent none. With `strict`, a body without `model` or
`input` gets OpenAI's 400 naming the param (missing_required_parameter).
Faults aimed at "generate" (the default of fail()) hit Responses calls too, since a Response
is a completion and faults are rendered in each endpoint's own shape; on="responses" hits only
them. Replays are raw bytes in one wire's shape, so replay(on="generate") leaves Responses
calls alone: use on="responses" (or "any"). The gate holds Responses calls as completions.
error_in_200 mid-stream ends a Responses stream with OpenAI's documented `error` event
({"type": "error", "code", "message", "param", "sequence_number"}), or with `failed=True`
a `response.failed` event whose Response has status "failed" and `error` {code, message}.

Embeddings: POST .../embeddings with an OpenAI embeddings body (a JSON object holding
`input`) speaks OpenAI's embeddings API, and /models/{model}:batchEmbedContents|embedContent
Google's; the vectors are deterministic (embedding_vector), `embedding_dimensions` long unless
the request asks for others. A POST to .../embeddings without `input` stays an unknown path.

With `replay`, the next call(s) get recorded bytes exactly (status, content type, body),
written in pieces split at awkward places; the call is still recorded (Call.replayed).

With `bill_most`, every answer reports, in the provider's own usage shape (streamed or
not), the most that provider could bill for the request it received, whatever `usage` says:
see most_billed().

Tests use the `fake_upstream` fixture (one server per test session, reset before and
after every test) or `fake_upstream_server` (the same server, not reset: for
session-scoped setup that needs the port). A conftest imports both.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from gateway.catalog import max_output_of, resolve
from gateway.pricing import _IMAGE_TOKENS, AUDIO_TOKENS_PER_BYTE, TOOLS_OVERHEAD

DEFAULT_REPLY = "Hello from the fake upstream."
TOOL_ARGUMENTS = {"city": "Paris"}

DEFAULTS: dict[str, Any] = {
    "reply": DEFAULT_REPLY,
    "stream_chunks": 5,
    "chunk_delay": 0.0,
    "usage": (10, 5),
    "valid_tokens": None,  # None: every token is accepted; else a collection of good tokens
    "fixed_completion_id": None,
    "models": None,  # None: a few realistic ids per wire format
    "strict": True,  # reject requests a real provider would reject (see _check_request)
    "google_sse_crlf": True,  # Google separates its SSE events with \r\n\r\n
    "bill_most": False,  # report most_billed() of each request instead of `usage`
    "embedding_dimensions": 8,  # the length of an embedding when the request asks for none
    "embedding_tokens": None,  # None: embedding_tokens_of() the input; else this count per request
    "cached_tokens": 0,  # Responses only: usage.input_tokens_details.cached_tokens (of the input)
    "reasoning_tokens": 0,  # Responses only: usage.output_tokens_details.reasoning_tokens (of the output)
    # Answer in text, not with another tool call, once the request carries a tool's result
    # (as a model does when it has what it asked for): an agent's loop then ends.
    "answer_tool_results": False,
}

DEFAULT_MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o"],
    "anthropic": ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"],
    "google": ["gemini-2.0-flash", "gemini-2.5-pro"],
}

# kind -> its options and their defaults ("on" is accepted by every kind)
FAULT_KINDS: dict[str, dict[str, Any]] = {
    "status": {"status": 500, "body": None, "headers": None, "content_type": None},
    "hang": {},
    "hang_mid_stream": {"after": 1},
    "cut_mid_stream": {"after": 1, "rst": False},
    "invalid_json": {"body": None},
    "garbage_sse": {"events": None},
    "error_in_200": {"after": 0, "error": None, "failed": False},
    "bad_usage": {"mode": "negative"},
    "huge_stream": {"size_mb": 10, "chunk_kb": 64},
    "slow": {"seconds": 1.0},
    "reset_after_request": {},
}
FAULT_TARGETS = ("generate", "responses", "models", "embeddings", "any")
REPLAY_TARGETS = ("generate", "responses", "embeddings", "count_tokens", "any")
USAGE_MODES = ("negative", "missing", "absent", "null", "string")

_GOOGLE_PATH = re.compile(
    r"/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|countTokens|batchEmbedContents|embedContent)$")
_ABSENT = object()  # a usage that is left out of the answer entirely
_MISSING = object()  # a count that is left out of the usage object


# ---------------------------------------------------------------------------------------
# What the fake records and queues


@dataclass
class Call:
    """One request the fake received. Header names are lower-case."""

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body is empty or not JSON
    raw: bytes
    time: float  # time.time() when the request was read
    wire: str | None = None  # "openai" | "anthropic" | "google" | None (unknown path)
    endpoint: str | None = None  # "generate" | "responses" | "models" | "count_tokens" | "embeddings" | None
    stream: bool = False
    fault: str | None = None  # the fault kind applied to this request, if any
    status: int | None = None  # the status sent, None when no headers were sent
    finished: bool = False  # the whole answer was written
    disconnected: bool = False  # the client went away before the answer was complete
    replayed: bool = False  # answered with bytes queued by replay()

    @property
    def model(self) -> str | None:
        if isinstance(self.body, dict) and "model" in self.body:
            return self.body["model"]
        match = _GOOGLE_PATH.search(self.path)
        return match["model"] if match else None


@dataclass
class _Fault:
    kind: str
    provider: str | None
    remaining: int | None  # None: forever (until reset)
    on: str
    options: dict[str, Any]

    def matches(self, provider: str, endpoint: str | None) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        # "generate" means every completion, OpenAI's Responses included (see the module docstring)
        return self.on == "any" or self.on == endpoint or (self.on == "generate" and endpoint == "responses")


@dataclass
class _Replay:
    body: bytes
    status: int
    stream: bool | None  # None: as the request streams (and the status is 2xx)
    split: int | tuple[int, ...] | None
    content_type: str | None
    headers: dict[str, str] | None
    delay: float
    provider: str | None
    remaining: int | None
    on: str

    def matches(self, provider: str, endpoint: str | None) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        return endpoint in REPLAY_TARGETS and (self.on == "any" or self.on == endpoint)


def split_bytes(body: bytes, split: int | Iterable[int] | None) -> list[bytes]:
    """`body` in pieces: every `split` bytes (an int), cut at the given offsets (a sequence), or
    whole (None). Pieces may end inside a multibyte UTF-8 character: that is the point."""
    if split is None or not body:
        return [body]
    if isinstance(split, int):
        size = max(1, split)
        return [body[i : i + size] for i in range(0, len(body), size)]
    cuts = sorted({c for c in split if 0 < c < len(body)})
    bounds = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class _Gate:
    remaining: int | None
    provider: str | None
    event: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Reply:
    """Everything a wire format needs to write one answer."""

    wire: str
    model: str
    id: str
    created: int
    pieces: Iterable[str]  # text pieces, or pieces of the tool call's JSON arguments
    tool: tuple[str, str] | None  # (call id, function name) when answering with a tool call
    prompt_tokens: int
    completion_tokens: int
    usage_mode: str | None = None  # a bad_usage mode
    cache_write_tokens: int = 0  # of prompt_tokens: Anthropic's cache_creation_input_tokens
    include_usage: bool = False  # OpenAI stream_options.include_usage
    sse: bool = True  # Google: alt=sse; otherwise a streamed JSON array
    crlf: bool = True
    # OpenAI Responses only:
    request: dict = field(default_factory=dict)  # the request body, whose settings a Response echoes
    item_id: str = ""  # the output item's id: msg_... or fc_...
    cached_tokens: int = 0  # of prompt_tokens
    reasoning_tokens: int = 0  # of completion_tokens
    obfuscate: bool = True  # stream_options.include_obfuscation
    failed: bool = False  # an in-stream error is a response.failed event, not an `error` event
    sequence: int = 0  # the next stream event's sequence_number

    def text(self) -> str:
        return "".join(self.pieces)


# ---------------------------------------------------------------------------------------
# Usage and error shapes shared by the formats


def _counts(mode: str | None, prompt: int, completion: int) -> tuple[Any, Any]:
    if mode == "negative":
        return -max(prompt, 1), -max(completion, 1)
    if mode == "missing":
        return _MISSING, _MISSING
    if mode == "string":
        return str(prompt), str(completion)
    return prompt, completion


def _usage_obj(mode: str | None, fields: dict[str, Any]) -> Any:
    """The usage value for a format, or _ABSENT / None for the 'absent' and 'null' modes."""
    if mode == "absent":
        return _ABSENT
    if mode == "null":
        return None
    return {k: v for k, v in fields.items() if v is not _MISSING}


def _put(target: dict, key: str, value: Any) -> dict:
    if value is not _ABSENT:
        target[key] = value
    return target


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _split(text: str, n: int) -> list[str]:
    if not text:
        return [text]
    size = max(1, math.ceil(len(text) / max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _minus_missing(a: Any, b: Any) -> Any:
    if a is _MISSING or b is _MISSING or isinstance(a, str) or isinstance(b, str):
        return _MISSING
    return a + b


# ---------------------------------------------------------------------------------------
# The three wire formats


class _OpenAI:
    name = "openai"
    stream_content_type = "text/event-stream; charset=utf-8"
    _ERRORS = {
        400: ("invalid_request_error", None, "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
        403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
        404: ("invalid_request_error", "model_not_found", "The model does not exist."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
        500: ("server_error", None, "The server had an error while processing your request."),
        503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    }

    def error(self, status: int, message: str | None = None) -> dict:
        kind, code, default = self._ERRORS.get(status, ("server_error", None, f"Upstream error {status}."))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def token(self, request: web.BaseRequest) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def auth_failure(self) -> tuple[int, dict]:
        return 401, {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }

    def models(self, ids: list[str], provider: str) -> dict:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": provider} for m in ids],
        }

    def check(self, request: web.BaseRequest, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        if not body.get("model"):
            return "you must provide a model parameter"
        if not isinstance(body.get("messages"), list):
            return "Missing required parameter: 'messages'."
        return None

    def tool_name(self, body: dict) -> str | None:
        tools = body.get("tools") or []
        if tools and isinstance(tools[0], dict):
            return (tools[0].get("function") or {}).get("name") or tools[0].get("name")
        return None

    def usage(self, r: _Reply) -> Any:
        p, c = _counts(r.usage_mode, r.prompt_tokens, r.completion_tokens)
        return _usage_obj(
            r.usage_mode, {"prompt_tokens": p, "completion_tokens": c, "total_tokens": _minus_missing(p, c)}
        )

    def completion(self, r: _Reply) -> dict:
        if r.tool:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": r.tool[0], "type": "function", "function": {"name": r.tool[1], "arguments": r.text()}}
                ],
                "refusal": None,
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": r.text(), "refusal": None}
            finish = "stop"
        body = {
            "id": r.id,
            "object": "chat.completion",
            "created": r.created,
            "model": r.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        }
        _put(body, "usage", self.usage(r))
        body["system_fingerprint"] = "fp_fake"
        return body

    def event(self, data: Any) -> bytes:
        return f"data: {_dumps(data)}\n\n".encode()

    def stream(self, r: _Reply) -> Iterator[tuple[bytes, bool]]:
        """(event bytes, is a content event) in order."""
        base = {"id": r.id, "object": "chat.completion.chunk", "created": r.created, "model": r.model,
                "system_fingerprint": "fp_fake"}
        with_usage = r.include_usage or (r.usage_mode is not None and r.usage_mode != "absent")

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            data = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            if with_usage:
                data["usage"] = None
            return self.event(data)

        if r.tool:
            call_id, name = r.tool
            first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            yield chunk({"role": "assistant", "content": None, "tool_calls": [first]}), False
            for piece in r.pieces:
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), True
            yield chunk({}, "tool_calls"), False
        else:
            yield chunk({"role": "assistant", "content": "", "refusal": None}), False
            for piece in r.pieces:
                yield chunk({"content": piece}), True
            yield chunk({}, "stop"), False
        if with_usage:
            usage = self.usage(r)
            if usage is not _ABSENT:
                yield self.event(dict(base, choices=[], usage=usage)), False
        yield b"data: [DONE]\n\n", False

    def stream_error(self, error: dict | None, r: _Reply) -> bytes:
        return self.event({"error": error or self.error(500)["error"]})

    def error_in_200(self, error: dict | None) -> dict:
        return {"error": error or self.error(500)["error"]}

    def count_tokens(self, r: _Reply) -> dict:
        return {"input_tokens": r.prompt_tokens}


class _OpenAIResponses(_OpenAI):
    """OpenAI's Responses API (POST .../responses): its keys, listing and error shape are
    _OpenAI's; the Response object and its semantic stream events are its own."""

    _JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
                   float: "a decimal"}

    @staticmethod
    def _param_error(message: str, param: str | None, code: str | None) -> dict:
        return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}

    def check(self, request: web.BaseRequest, body: Any) -> str | dict | None:
        if not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        for name in ("model", "input"):
            if body.get(name) is None or (name == "model" and not body[name]):
                return self._param_error(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if not isinstance(body["input"], (str, list)):
            got = self._JSON_TYPES.get(type(body["input"]), "a value")
            return self._param_error(
                f"Invalid type for 'input': expected one of a string or an array of input items, but got {got} instead.",
                "input", "invalid_type")
        return None

    def tool_name(self, body: dict) -> str | None:
        """The first function tool's name (built-in tools such as web_search are not called)."""
        for tool in body.get("tools") or []:
            if isinstance(tool, dict) and tool.get("type") == "function" and tool.get("name"):
                return tool["name"]
        return None

    def usage(self, r: _Reply) -> Any:
        p, c = _counts(r.usage_mode, r.prompt_tokens, r.completion_tokens)
        cached, reasoning = _counts(r.usage_mode if r.usage_mode == "string" else None, r.cached_tokens,
                                    r.reasoning_tokens)
        missing = r.usage_mode == "missing"
        return _usage_obj(r.usage_mode, {
            "input_tokens": p,
            "input_tokens_details": _MISSING if missing else {"cached_tokens": cached},
            "output_tokens": c,
            "output_tokens_details": _MISSING if missing else {"reasoning_tokens": reasoning},
            "total_tokens": _minus_missing(p, c),
        })

    def response(self, r: _Reply, status: str, output: list, usage: Any, error: dict | None = None,
                 stream: bool = False) -> dict:
        """A Response object, with the request's settings echoed as OpenAI echoes them (its
        defaults where the request sent none), in the order api.openai.com writes its fields."""
        body = r.request

        def echo(name: str, default: Any) -> Any:
            value = body.get(name)
            return default if value is None else value

        reasoning = {"effort": None, "summary": None}
        if isinstance(body.get("reasoning"), dict):
            reasoning.update(body["reasoning"])
        text = {"format": {"type": "text"}, "verbosity": "medium"}
        if isinstance(body.get("text"), dict):
            text.update(body["text"])
        tier = body.get("service_tier")
        data: dict[str, Any] = {
            "id": r.id,
            "object": "response",
            "created_at": r.created,
            "status": status,
            "background": echo("background", False),
        }
        if not stream:
            data["billing"] = {"payer": "developer"}
        data.update({
            "completed_at": max(r.created, int(time.time())) if status == "completed" else None,
            "error": error,
            "incomplete_details": None,
            "instructions": echo("instructions", None),
            "max_output_tokens": echo("max_output_tokens", None),
            "max_tool_calls": echo("max_tool_calls", None),
            "model": r.model,
            "output": output,
            "parallel_tool_calls": echo("parallel_tool_calls", True),
            "previous_response_id": echo("previous_response_id", None),
            "prompt_cache_key": echo("prompt_cache_key", None),
            "prompt_cache_retention": echo("prompt_cache_retention", None),
            "reasoning": reasoning,
            "safety_identifier": echo("safety_identifier", None),
            # a finished Response names the tier that served it; "auto" while it runs
            "service_tier": tier if tier and tier != "auto" else ("default" if status == "completed" else "auto"),
            "store": echo("store", True),
            "temperature": echo("temperature", 1.0),
            "text": text,
            "tool_choice": echo("tool_choice", "auto"),
            "tools": echo("tools", []),
            "top_logprobs": echo("top_logprobs", 0),
            "top_p": echo("top_p", 1.0),
            "truncation": echo("truncation", "disabled"),
        })
        _put(data, "usage", usage)
        data["user"] = echo("user", None)
        data["metadata"] = echo("metadata", {})
        return data

    @staticmethod
    def _part(text: str) -> dict:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def _item(self, r: _Reply, text: str, done: bool) -> dict:
        status = "completed" if done else "in_progress"
        if r.tool:
            return {"id": r.item_id, "type": "function_call", "status": status, "arguments": text if done else "",
                    "call_id": r.tool[0], "name": r.tool[1]}
        return {"id": r.item_id, "type": "message", "status": status,
                "content": [self._part(text)] if done else [], "role": "assistant"}

    def completion(self, r: _Reply) -> dict:
        return self.response(r, "completed", [self._item(r, r.text(), done=True)], self.usage(r))

    def event(self, data: dict) -> bytes:
        return f"event: {data['type']}\ndata: {_dumps(data)}\n\n".encode()

    def _emit(self, r: _Reply, data: dict) -> bytes:
        data["sequence_number"] = r.sequence
        r.sequence += 1
        return self.event(data)

    @staticmethod
    def _obfuscation(r: _Reply, delta: str) -> str:
        """Random-looking padding that evens out the event sizes, as OpenAI's (deterministic here)."""
        digest = hashlib.sha256(f"{r.id}:{r.sequence}".encode()).digest()
        letters = "".join(ch for ch in base64.b64encode(digest).decode() if ch.isalnum())
        return letters[: (-len(delta)) % 16 or 16]

    def stream(self, r: _Reply) -> Iterator[tuple[bytes, bool]]:
        """(event bytes, is a content event) in order: the deltas are the content events."""
        yield self._emit(r, {"type": "response.created",
                             "response": self.response(r, "in_progress", [], None, stream=True)}), False
        yield self._emit(r, {"type": "response.in_progress",
                             "response": self.response(r, "in_progress", [], None, stream=True)}), False
        yield self._emit(r, {"type": "response.output_item.added", "item": self._item(r, "", done=False),
                             "output_index": 0}), False
        sent: list[str] = []
        if r.tool:
            for piece in r.pieces:
                sent.append(piece)
                delta = {"type": "response.function_call_arguments.delta", "delta": piece, "item_id": r.item_id}
                if r.obfuscate:
                    delta["obfuscation"] = self._obfuscation(r, piece)
                delta["output_index"] = 0
                yield self._emit(r, delta), True
            arguments = "".join(sent)
            yield self._emit(r, {"type": "response.function_call_arguments.done", "arguments": arguments,
                                 "item_id": r.item_id, "output_index": 0}), False
            item = self._item(r, arguments, done=True)
        else:
            yield self._emit(r, {"type": "response.content_part.added", "content_index": 0, "item_id": r.item_id,
                                 "output_index": 0, "part": self._part("")}), False
            for piece in r.pieces:
                sent.append(piece)
                delta = {"type": "response.output_text.delta", "content_index": 0, "delta": piece,
                         "item_id": r.item_id, "logprobs": []}
                if r.obfuscate:
                    delta["obfuscation"] = self._obfuscation(r, piece)
                delta["output_index"] = 0
                yield self._emit(r, delta), True
            text = "".join(sent)
            yield self._emit(r, {"type": "response.output_text.done", "content_index": 0, "item_id": r.item_id,
                                 "logprobs": [], "output_index": 0, "text": text}), False
            yield self._emit(r, {"type": "response.content_part.done", "content_index": 0, "item_id": r.item_id,
                                 "output_index": 0, "part": self._part(text)}), False
            item = self._item(r, text, done=True)
        yield self._emit(r, {"type": "response.output_item.done", "item": item, "output_index": 0}), False
        yield self._emit(r, {"type": "response.completed",
                             "response": self.response(r, "completed", [item], self.usage(r), stream=True)}), False

    def stream_error(self, error: dict | None, r: _Reply) -> bytes:
        """OpenAI's `error` stream event, or with r.failed a response.failed; `error` may set
        code, message and param."""
        fields = {"code": "server_error", "message": self.error(500)["error"]["message"], "param": None}
        fields.update({k: v for k, v in (error or {}).items() if k in fields})
        if r.failed:
            failed = self.response(r, "failed", [], None, error={"code": fields["code"], "message": fields["message"]},
                                   stream=True)
            return self._emit(r, {"type": "response.failed", "response": failed})
        return self._emit(r, {"type": "error", **fields})


class _Anthropic:
    name = "anthropic"
    stream_content_type = "text/event-stream; charset=utf-8"
    _ERRORS = {
        400: ("invalid_request_error", "Invalid request."),
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "Your API key does not have permission to use the specified resource."),
        404: ("not_found_error", "The requested resource could not be found."),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
        500: ("api_error", "Internal server error"),
        529: ("overloaded_error", "Overloaded"),
    }

    def error(self, status: int, message: str | None = None) -> dict:
        kind, default = self._ERRORS.get(status, ("api_error", f"Upstream error {status}."))
        return {"type": "error", "error": {"type": kind, "message": message or default}}

    def token(self, request: web.BaseRequest) -> str | None:
        return request.headers.get("x-api-key")

    def auth_failure(self) -> tuple[int, dict]:
        return 401, self.error(401)

    def models(self, ids: list[str], provider: str) -> dict:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in ids]
        return {"data": data, "has_more": False, "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None}

    def check(self, request: web.BaseRequest, body: Any) -> str | None:
        if "anthropic-version" not in request.headers:
            return "anthropic-version: header is required"
        if not isinstance(body, dict):
            return "There was an issue with your request body: it is not valid JSON."
        # Token counting takes the request without max_tokens (Anthropic's count_tokens reference).
        counting = request.path.endswith("/count_tokens")
        for required in ("model", "messages") if counting else ("model", "messages", "max_tokens"):
            if required not in body:
                return f"{required}: Field required"
        if counting and "max_tokens" in body:
            return "max_tokens: Extra inputs are not permitted"
        return None

    def tool_name(self, body: dict) -> str | None:
        tools = body.get("tools") or []
        return tools[0].get("name") if tools and isinstance(tools[0], dict) else None

    def usage(self, r: _Reply, output: Any = None) -> Any:
        p, c = _counts(r.usage_mode, r.prompt_tokens, r.completion_tokens)
        written = r.cache_write_tokens if r.usage_mode is None else 0
        # Anthropic's input_tokens leaves out the cache writes, counted apart.
        return _usage_obj(r.usage_mode, {
            "input_tokens": p - written if written else p,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": 0,
            "output_tokens": c if output is None or c is _MISSING or r.usage_mode else output,
        })

    def _block(self, r: _Reply) -> dict:
        if r.tool:
            return {"type": "tool_use", "id": r.tool[0], "name": r.tool[1], "input": json.loads(r.text())}
        return {"type": "text", "text": r.text()}

    def completion(self, r: _Reply) -> dict:
        body = {
            "id": r.id,
            "type": "message",
            "role": "assistant",
            "model": r.model,
            "content": [self._block(r)],
            "stop_reason": "tool_use" if r.tool else "end_turn",
            "stop_sequence": None,
        }
        return _put(body, "usage", self.usage(r))

    def event(self, data: dict) -> bytes:
        return f"event: {data['type']}\ndata: {_dumps(data)}\n\n".encode()

    def stream(self, r: _Reply) -> Iterator[tuple[bytes, bool]]:
        message = {"id": r.id, "type": "message", "role": "assistant", "model": r.model, "content": [],
                   "stop_reason": None, "stop_sequence": None}
        # Like the real API, message_start reports a token or so of output already;
        # the cumulative total arrives in message_delta.
        _put(message, "usage", self.usage(r, output=min(1, r.completion_tokens)))
        yield self.event({"type": "message_start", "message": message}), False
        if r.tool:
            block = {"type": "tool_use", "id": r.tool[0], "name": r.tool[1], "input": {}}
        else:
            block = {"type": "text", "text": ""}
        yield self.event({"type": "content_block_start", "index": 0, "content_block": block}), False
        yield self.event({"type": "ping"}), False
        for piece in r.pieces:
            if r.tool:
                delta = {"type": "input_json_delta", "partial_json": piece}
            else:
                delta = {"type": "text_delta", "text": piece}
            yield self.event({"type": "content_block_delta", "index": 0, "delta": delta}), True
        yield self.event({"type": "content_block_stop", "index": 0}), False
        p, c = _counts(r.usage_mode, r.prompt_tokens, r.completion_tokens)
        final = {"type": "message_delta",
                 "delta": {"stop_reason": "tool_use" if r.tool else "end_turn", "stop_sequence": None}}
        _put(final, "usage", _usage_obj(r.usage_mode, {"output_tokens": c}))
        yield self.event(final), False
        yield self.event({"type": "message_stop"}), False

    def stream_error(self, error: dict | None, r: _Reply) -> bytes:
        return self.event({"type": "error", "error": error or self.error(529)["error"]})

    def error_in_200(self, error: dict | None) -> dict:
        return {"type": "error", "error": error or self.error(529)["error"]}

    def count_tokens(self, r: _Reply) -> dict:
        return {"input_tokens": r.prompt_tokens}


class _Google:
    name = "google"
    stream_content_type = "text/event-stream"
    _STATUSES = {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
        403: ("PERMISSION_DENIED", "The caller does not have permission."),
        404: ("NOT_FOUND", "Requested entity was not found."),
        429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        500: ("INTERNAL", "An internal error has occurred."),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    }

    def error(self, status: int, message: str | None = None) -> dict:
        code, default = self._STATUSES.get(status, ("UNKNOWN", f"Upstream error {status}."))
        return {"error": {"code": status, "message": message or default, "status": code}}

    def token(self, request: web.BaseRequest) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def auth_failure(self) -> tuple[int, dict]:
        # The real API answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
        body = self.error(400, "API key not valid. Please pass a valid API key.")
        body["error"]["details"] = [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }]
        return 400, body

    def models(self, ids: list[str], provider: str) -> dict:
        return {"models": [{
            "name": f"models/{m}",
            "version": "001",
            "displayName": m,
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 8192,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        } for m in ids]}

    def check(self, request: web.BaseRequest, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "Invalid JSON payload received."
        if not body.get("contents"):
            return "* GenerateContentRequest.contents: contents is not specified\n"
        return None

    def tool_name(self, body: dict) -> str | None:
        for tool in body.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            declarations = tool.get("functionDeclarations") or tool.get("function_declarations") or []
            if declarations:
                return declarations[0].get("name")
        return None

    def usage(self, r: _Reply) -> Any:
        p, c = _counts(r.usage_mode, r.prompt_tokens, r.completion_tokens)
        return _usage_obj(
            r.usage_mode, {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": _minus_missing(p, c)}
        )

    def _chunk(self, r: _Reply, parts: list[dict], last: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if last:
            candidate["finishReason"] = "STOP"
        candidate["index"] = 0
        data: dict[str, Any] = {"candidates": [candidate]}
        if last:
            _put(data, "usageMetadata", self.usage(r))
        data["modelVersion"] = r.model
        data["responseId"] = r.id
        return data

    def _call_part(self, r: _Reply) -> dict:
        return {"functionCall": {"name": r.tool[1], "args": json.loads(r.text())}}

    def completion(self, r: _Reply) -> dict:
        parts = [self._call_part(r)] if r.tool else [{"text": r.text()}]
        return self._chunk(r, parts, last=True)

    def separator(self, r: _Reply) -> str:
        return "\r\n\r\n" if r.crlf else "\n\n"

    def event(self, r: _Reply, data: dict, first: bool = False) -> bytes:
        if r.sse:
            return f"data: {_dumps(data)}{self.separator(r)}".encode()
        return (("[" if first else ",\r\n") + _dumps(data)).encode()

    def stream(self, r: _Reply) -> Iterator[tuple[bytes, bool]]:
        if r.tool:
            yield self.event(r, self._chunk(r, [self._call_part(r)], last=True), first=True), True
        else:
            pieces = iter(r.pieces)
            current = next(pieces, "")
            first = True
            for following in pieces:
                yield self.event(r, self._chunk(r, [{"text": current}], last=False), first=first), True
                current, first = following, False
            yield self.event(r, self._chunk(r, [{"text": current}], last=True), first=first), True
        if not r.sse:
            yield b"]", False

    def stream_error(self, error: dict | None, r: _Reply) -> bytes:
        return f"data: {_dumps({'error': error or self.error(500)['error']})}{self.separator(r)}".encode()

    def error_in_200(self, error: dict | None) -> dict:
        return {"error": error or self.error(500)["error"]}

    def count_tokens(self, r: _Reply) -> dict:
        return {"totalTokens": r.prompt_tokens}


_WIRES = {"openai": _OpenAI(), "anthropic": _Anthropic(), "google": _Google()}
_RESPONSES = _OpenAIResponses()


def _wire_of(wire: str | None, endpoint: str | None) -> Any:
    """The format that writes answers for a wire and endpoint (OpenAI's Responses apart)."""
    return _RESPONSES if endpoint == "responses" else _WIRES[wire]


# ---------------------------------------------------------------------------------------
# Embeddings (OpenAI's /embeddings and Google's batchEmbedContents / embedContent)


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """The fake's embedding of one input (a string or a token array): deterministic, each
    value a multiple of 1/128 in [-1, 1) (exact in float32, so base64 round-trips exactly)."""
    seed = _dumps(item).encode()
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        values.extend((b - 128) / 128 for b in digest)
        counter += 1
    return values[:dimensions]


def embedding_tokens_of(items: list[Any]) -> int:
    """The tokens the fake reports for embedding `items`: a string counts one token per 3 UTF-8
    bytes (rounded up, at least 1), a token array its length."""
    return sum(len(i) if isinstance(i, list) else max(1, math.ceil(_utf8(str(i)) / 3)) for i in items)


def _is_token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def embedding_inputs(body: Any) -> list[Any]:
    """The inputs of an OpenAI embeddings body, one per embedding."""
    value = body.get("input") if isinstance(body, dict) else None
    if isinstance(value, str) or _is_token_array(value):
        return [value]
    return list(value) if isinstance(value, list) else []


def _check_openai_embeddings(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not body.get("model"):
        return "you must provide a model parameter"
    items = embedding_inputs(body)
    if not items or not all((isinstance(i, str) and i) or _is_token_array(i) for i in items):
        return "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    if body.get("encoding_format") not in (None, "float", "base64"):
        return "Invalid value for 'encoding_format': must be 'float' or 'base64'."
    dimensions = body.get("dimensions")
    if dimensions is not None and not (isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0):
        return "Invalid 'dimensions': must be a positive integer."
    return None


def _google_embed_requests(path_model: str, method: str, body: Any) -> tuple[list[dict], str | None]:
    """(the EmbedContentRequests of a batchEmbedContents or embedContent body, a problem)."""
    if not isinstance(body, dict):
        return [], "Invalid JSON payload received."
    if method == "embedContent":
        requests = [body]
    else:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return [], "* BatchEmbedContentsRequest.requests: requests is not specified\n"
    for k, item in enumerate(requests):
        if not isinstance(item, dict):
            return [], f"Invalid value at 'requests[{k}]'"
        if method == "batchEmbedContents" and item.get("model") != f"models/{path_model}":
            return [], (f"* BatchEmbedContentsRequest.requests[{k}].model: the model of each request must match "
                        f"the batch's model (models/{path_model}), got {item.get('model')!r}\n")
        parts = (item.get("content") or {}).get("parts") if isinstance(item.get("content"), dict) else None
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and isinstance(p.get("text"), str)
                                                                for p in parts):
            return [], f"* EmbedContentRequest.content: contents is not specified (requests[{k}])\n"
        size = item.get("outputDimensionality")
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
            return [], f"* EmbedContentRequest.outputDimensionality: must be positive (requests[{k}])\n"
    return requests, None


def _has_tool_result(body: Any) -> bool:
    """Whether a request carries a tool's result, in any wire format: an OpenAI `tool` message,
    a Responses `function_call_output` item, an Anthropic `tool_result` block or a Google
    `functionResponse` part."""
    text = json.dumps(body)
    return any(marker in text for marker in ('"role": "tool"', '"function_call_output"', '"tool_result"',
                                             '"functionResponse"'))


def _wire_for_name(provider: str) -> str:
    if provider.startswith("anthropic"):
        return "anthropic"
    if provider.startswith("google") or provider.startswith("gemini"):
        return "google"
    return "openai"


# ---------------------------------------------------------------------------------------
# The most a provider could bill (bill_most)


@dataclass(frozen=True)
class MostBilled:
    """Token counts of the costliest answer a provider could give a request."""

    prompt_tokens: int
    completion_tokens: int
    cache_write_tokens: int = 0  # of prompt_tokens


# Where each wire format keeps the prompt (tools and answer schemas are counted apart).
# "responses" is OpenAI's Responses API, a wire format of its own here.
_PROMPT_FIELDS = {"openai": ("messages",), "responses": ("instructions", "input"), "anthropic": ("system", "messages"),
                  "google": ("systemInstruction", "contents")}
# Structured values the model reads as JSON (tool calls and their results): counted whole, keys too.
_JSON_VALUES = {"arguments", "input", "args", "response"}


@dataclass
class _Tally:
    text: int = 0  # UTF-8 bytes
    images: int = 0
    audio_tokens: int = 0
    documents: int = 0
    caching: bool = False


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _audio_tokens(base64_data: Any) -> int:
    """As gateway/pricing.py counts a clip: 32 tokens per 640 bytes of decoded audio."""
    size = len(base64_data) if isinstance(base64_data, str) else 0
    return math.ceil((size * 3 // 4 + 3) * AUDIO_TOKENS_PER_BYTE)


def _google_media(holder: dict) -> tuple[str, int]:
    """Gemini reads an inline or linked file by its MIME type: pictures, audio, or else a
    document or video (priced as the whole context, the most it can be)."""
    mime = str(holder.get("mimeType") or holder.get("mime_type") or "image/")
    if mime.startswith("image/"):
        return "image", 0
    if mime.startswith("audio/") and "data" in holder:
        return "audio", _audio_tokens(holder.get("data"))
    return "document", 0


def _media(wire: str, node: dict) -> tuple[str, int] | None:
    """(kind, audio tokens) when the node is a media item of the wire format, else None."""
    kind = node.get("type")
    if wire == "openai":
        if kind == "image_url":
            return "image", 0
        if kind == "input_audio":
            audio = node.get("input_audio")
            return "audio", _audio_tokens(audio.get("data") if isinstance(audio, dict) else None)
        if kind == "file":
            return "document", 0
    elif wire == "responses":
        if kind == "input_image":
            return "image", 0
        if kind == "input_audio":
            audio = node.get("input_audio")
            return "audio", _audio_tokens(audio.get("data") if isinstance(audio, dict) else None)
        if kind == "input_file":
            return "document", 0
    elif wire == "anthropic":
        if kind == "image":  # Anthropic refuses an image block that is not a picture
            return "image", 0
        if kind == "document":
            return "document", 0
    elif wire == "google":
        for name in ("inlineData", "inline_data", "fileData", "file_data"):
            if isinstance(node.get(name), dict):
                return _google_media(node[name])
    return None


def _tally(wire: str, node: Any, tally: _Tally) -> None:
    """Counts the text a prompt holds: every string's UTF-8 bytes (JSON keys and framing left
    out), tool calls and results as their JSON, media items apart."""
    if isinstance(node, str):
        tally.text += _utf8(node)
    elif isinstance(node, list):
        for item in node:
            _tally(wire, item, tally)
    elif isinstance(node, dict):
        media = _media(wire, node)
        if media is not None:
            kind, audio = media
            tally.images += kind == "image"
            tally.documents += kind == "document"
            tally.audio_tokens += audio
            return
        for key, value in node.items():
            if key == "cache_control":  # an instruction to the provider, not prompt text
                tally.caching = True
            elif key in _JSON_VALUES and isinstance(value, (dict, list)):
                tally.text += _utf8(_dumps(value))
            else:
                _tally(wire, value, tally)


def _image_tokens(wire: str, provider: str, model: str) -> int:
    """gateway/pricing.py's per-picture maximum for the provider (gpt-4o-mini's own)."""
    if provider == "openai" and "mini" in model and "4o" in model:
        return _IMAGE_TOKENS["openai-mini"]
    if provider not in _IMAGE_TOKENS:  # a fake path named otherwise: go by the wire format
        provider = {"anthropic": "anthropic", "google": "google-ai-studio"}.get(wire, provider)
    return _IMAGE_TOKENS.get(provider, _IMAGE_TOKENS[""])


def _output_schema(wire: str, body: dict) -> Any:
    """The JSON schema the answer must follow, if the request sets one."""
    if wire == "openai":
        return body.get("response_format") or None
    if wire == "responses" and isinstance(body.get("text"), dict):
        text_format = body["text"].get("format")
        return text_format if isinstance(text_format, dict) and text_format.get("type") != "text" else None
    if wire == "google" and isinstance(body.get("generationConfig"), dict):
        config = body["generationConfig"]
        return config.get("responseJsonSchema") or config.get("responseSchema")
    return None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _output(wire: str, model: str, body: dict) -> int:
    """Output tokens at most: the request's cap (the larger, when it carries two), else the
    model's maximum; times the choices asked for (OpenAI `n`, Gemini candidateCount)."""
    if wire == "google":
        config = body.get("generationConfig") if isinstance(body.get("generationConfig"), dict) else {}
        caps = [_positive(config.get("maxOutputTokens"))]
        choices = _positive(config.get("candidateCount")) or 1
    elif wire == "responses":
        caps, choices = [_positive(body.get("max_output_tokens"))], 1
    else:
        caps = [_positive(body.get("max_tokens")), _positive(body.get("max_completion_tokens"))]
        choices = (_positive(body.get("n")) or 1) if wire == "openai" else 1
    cap = max((c for c in caps if c is not None), default=None)
    return (cap if cap is not None else max_output_of(model)) * choices


def most_billed(wire: str | None, provider: str, model: str, body: Any) -> MostBilled:
    """The most a provider could bill for `body`, the request it received in its own wire
    format ("openai" | "responses" (OpenAI's Responses API) | "anthropic" | "google") from
    the first path segment `provider`:

    - prompt: one token per UTF-8 byte of the text it holds (messages, system, and tools
      and an answer's JSON schema as their JSON, plus TOOLS_OVERHEAD for the prompt a
      provider writes around tools);
      each picture at gateway.pricing's per-item maximum for the provider, each audio clip
      at 32 tokens per 640 bytes, each document at the whole context; never more than the
      context length (10% over the catalog's figure), which a provider refuses beyond.
    - output: the cap the request carries (Responses: max_output_tokens), else the model's
      maximum (catalog.max_output_of), times the choices asked for.
    - Anthropic, when any cache_control is in the request: every prompt token as a cache
      write (the costliest way).
    """
    if wire not in _PROMPT_FIELDS or not isinstance(body, dict):
        return MostBilled(0, 0)
    tally = _Tally()
    for name in _PROMPT_FIELDS[wire]:
        _tally(wire, body.get(name), tally)
    tools = body.get("tools")
    if tools:
        probe = _Tally()
        _tally(wire, tools, probe)  # only to see a cache_control on a tool
        tally.caching = tally.caching or probe.caching
        tally.text += _utf8(_dumps(tools)) + TOOLS_OVERHEAD
    schema = _output_schema(wire, body)
    if schema is not None:  # structured output: the provider puts the schema in the prompt
        tally.text += _utf8(_dumps(schema))
    offer = resolve(provider, model) if provider and model else None
    context = (offer.context_length if offer is not None else 0) * 11 // 10
    prompt = tally.text + tally.images * _image_tokens(wire, provider, model) + tally.audio_tokens
    prompt += tally.documents * (context or 1_000_000)
    if context:
        prompt = min(prompt, context)
    written = prompt if wire == "anthropic" and tally.caching else 0
    return MostBilled(prompt, _output(wire, model, body), written)


def answer_reporting(wire: str, model: str, most: MostBilled) -> dict:
    """The provider's whole (not streamed) answer reporting `most`, as bill_most sends it
    (`wire` as most_billed takes it, "responses" included)."""
    reply = _Reply(wire="openai" if wire == "responses" else wire, model=model, id="fake", created=0,
                   pieces=[DEFAULT_REPLY], tool=None, prompt_tokens=most.prompt_tokens,
                   completion_tokens=most.completion_tokens, cache_write_tokens=most.cache_write_tokens)
    return _wire_of(reply.wire, "responses" if wire == "responses" else None).completion(reply)


# ---------------------------------------------------------------------------------------
# The server


class FakeUpstream:
    """See the module docstring. Settings are plain attributes, faults are queued with fail()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._replays: list[_Replay] = []
        self._gate: _Gate | None = None
        self._held = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._transports: set[asyncio.BaseTransport] = set()
        self._hanging: set[asyncio.BaseTransport] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._start_error: BaseException | None = None
        self._stopping = False
        self.port: int | None = None
        self._apply_defaults()

    # -- settings ------------------------------------------------------------------------

    reply: str
    stream_chunks: int
    chunk_delay: float
    usage: tuple[int, int]
    valid_tokens: Any
    fixed_completion_id: str | None
    models: list[str] | None
    strict: bool
    google_sse_crlf: bool
    bill_most: bool
    embedding_dimensions: int
    embedding_tokens: int | None
    cached_tokens: int
    reasoning_tokens: int
    answer_tool_results: bool

    def _apply_defaults(self) -> None:
        for name, value in DEFAULTS.items():
            setattr(self, name, value)

    def reset(self) -> None:
        """Back to a clean state: drop the connections of "hang" faults, release the gate,
        clear faults, replays, calls and counters, and put every setting back to its default."""
        self.release()
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._drop_hanging(), loop).result(5)
        with self._lock:
            self._faults.clear()
            self._replays.clear()
            self._calls.clear()
            self._max_in_flight = self._in_flight
        self._apply_defaults()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeUpstream:
        if self._thread is not None:
            return self
        _raise_fd_limit()
        self._stopping = False
        self._start_error = None
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(port, ready), name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._start_error is not None:
            error = self._start_error
            self.stop()
            raise RuntimeError(f"the fake upstream did not start: {error!r}")
        return self

    def stop(self) -> None:
        """Stop serving: every open connection (hung ones included) is dropped."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._stopping = True
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = self._runner = None
        self.port = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, port: int, ready: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(port))
        except BaseException as e:
            self._start_error = e
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, port: int) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0, keepalive_timeout=75.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, backlog=4096)
        await site.start()

    async def _drop_hanging(self) -> None:
        for transport in list(self._hanging):
            transport.abort()
        self._hanging.clear()
        await asyncio.sleep(0)  # let the aborted handlers see their cancellation

    async def _shutdown(self) -> None:
        with self._lock:
            gate, self._gate = self._gate, None
        if gate is not None:
            gate.event.set()
        for transport in list(self._transports):
            transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake upstream is not running")
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str = "openai", wire: str | None = None) -> str:
        """The base URL the gateway is configured with for this provider name.

        OpenAI-style names get /<name>/v1; names starting with "anthropic" or "google"
        get /<name> (the SDK conventions). `wire` overrides the guess from the name.
        """
        wire = wire or _wire_for_name(provider)
        root = f"{self.url}/{provider}"
        return f"{root}/v1" if wire == "openai" else root

    # -- faults --------------------------------------------------------------------------

    def fail(self, kind: str, provider: str | None = None, times: int | None = 1, *, on: str = "generate",
             **options: Any) -> None:
        """Queue a fault for the next `times` matching requests (None: every one until reset).

        `provider` restricts it to one first path segment; `on` picks the requests:
        "generate" (completions, the default: chat completions, messages, generateContent and
        OpenAI Responses), "responses" (OpenAI Responses only), "models" (key validation),
        "embeddings" or "any".

        Kinds and options (defaults in FAULT_KINDS):
          status(status=500, body=None|dict|str, headers=None, content_type=None)
              body None: the format's own error shape for that status.
          hang                 read the request, never send headers.
          hang_mid_stream(after=1)   headers, everything up to the after-th content
              event, then silence. after=0: headers only.
          cut_mid_stream(after=1, rst=False)   same, then close the TCP connection
              (FIN; rst=True: a TCP reset).
          invalid_json(body=None)   200, application/json, a body that does not parse.
          garbage_sse(events=None)  streaming 200 whose `data:` lines are not JSON.
          error_in_200(after=0, error=None, failed=False)   200 carrying the format's error
              object; when streaming, after `after` content events (OpenAI `data: {"error":..}`,
              Anthropic `event: error`, Google `data: {"error":..}`, OpenAI Responses an
              `event: error` {"type": "error", code, message, param, sequence_number}, taking
              code/message/param from `error`; with failed=True a `response.failed` instead).
          bad_usage(mode="negative")   negative | missing (usage object without its
              counts) | absent (no usage at all) | null | string (counts as strings).
              OpenAI streams then carry a usage chunk even without include_usage.
          huge_stream(size_mb=10, chunk_kb=64)   that much content, in chunk_kb pieces.
          slow(seconds=1.0)    wait, then answer normally.
          reset_after_request  read the whole request, then reset the connection.
        Hangs end when the client disconnects, on reset() or on stop().
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if on not in FAULT_TARGETS:
            raise ValueError(f"on must be one of {FAULT_TARGETS}")
        unknown = set(options) - set(FAULT_KINDS[kind])
        if unknown:
            raise TypeError(f"fault {kind!r} takes no option(s) {sorted(unknown)}; it takes {FAULT_KINDS[kind]}")
        merged = {**FAULT_KINDS[kind], **options}
        if kind == "bad_usage" and merged["mode"] not in USAGE_MODES:
            raise ValueError(f"bad_usage mode must be one of {USAGE_MODES}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        with self._lock:
            self._faults.append(_Fault(kind, provider, times, on, merged))

    def _take_fault(self, provider: str, endpoint: str | None) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(provider, endpoint):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- replay --------------------------------------------------------------------------

    def replay(self, body: bytes | str, status: int = 200, *, stream: bool | None = None,
               split: int | Iterable[int] | None = 7, content_type: str | None = None,
               headers: dict[str, str] | None = None, delay: float = 0.0, provider: str | None = None,
               times: int | None = 1, on: str = "generate") -> None:
        """Answer the next `times` matching calls (None: every one until reset) with `body`
        exactly: `status`, and `content_type` (default text/event-stream for a stream, else
        application/json; `stream` None: a stream when the request streams and the status is
        2xx), the bytes written in pieces (`split`: every that many bytes, at those offsets, or
        None for whole; `delay` seconds between pieces). A str body is sent as UTF-8.

        `on`: "generate" (the default; not OpenAI Responses calls, whose bytes differ),
        "responses", "embeddings", "count_tokens" or "any" of those;
        `provider` restricts it to one first path segment. Faults queued with fail() come
        first; with `strict`, a request a real provider would refuse still gets its 400 (the
        replay then waits for the next call). The call is recorded as any other
        (Call.replayed is True), so a test can compare what the gateway sent."""
        if on not in REPLAY_TARGETS:
            raise ValueError(f"on must be one of {REPLAY_TARGETS}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        data = body.encode() if isinstance(body, str) else bytes(body)
        cut = split if split is None or isinstance(split, int) else tuple(split)
        with self._lock:
            self._replays.append(_Replay(data, status, stream, cut, content_type, headers, delay, provider, times, on))

    def _take_replay(self, provider: str, endpoint: str | None) -> _Replay | None:
        with self._lock:
            for replay in self._replays:
                if replay.matches(provider, endpoint):
                    if replay.remaining is not None:
                        replay.remaining -= 1
                        if replay.remaining <= 0:
                            self._replays.remove(replay)
                    return replay
        return None

    @property
    def pending_replays(self) -> int:
        with self._lock:
            return len(self._replays)

    # -- gate ----------------------------------------------------------------------------

    def gate(self, n: int | None = None, provider: str | None = None) -> None:
        """Hold the next `n` completion requests (OpenAI Responses too; all of them if None) until release()."""
        self.release()
        with self._lock:
            self._gate = _Gate(remaining=n, provider=provider)

    def release(self) -> None:
        """Let every held request go on, and stop holding new ones."""
        with self._lock:
            gate, self._gate = self._gate, None
        loop = self._loop
        if gate is not None and loop is not None and loop.is_running():
            loop.call_soon_threadsafe(gate.event.set)

    @property
    def held(self) -> int:
        """How many requests are waiting at the gate right now."""
        return self._held

    def _enter_gate(self, provider: str) -> _Gate | None:
        with self._lock:
            gate = self._gate
            if gate is None or (gate.provider is not None and gate.provider != provider):
                return None
            if gate.remaining is not None:
                if gate.remaining <= 0:
                    return None
                gate.remaining -= 1
            return gate

    # -- recorded calls ------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every request received since the last reset, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_for(self, provider: str, endpoint: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.provider == provider and (endpoint is None or c.endpoint == endpoint)]

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since the last reset."""
        return self._max_in_flight

    def wait_for(self, predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())

    def wait_for_calls(self, n: int, provider: str | None = None, timeout: float = 5.0) -> list[Call]:
        """Wait until at least n calls (for the provider) arrived; returns them or raises."""
        def found() -> list[Call]:
            return self.calls if provider is None else self.calls_for(provider)

        if not self.wait_for(lambda: len(found()) >= n, timeout):
            raise AssertionError(f"expected {n} call(s) to the fake upstream, got {len(found())}")
        return found()

    def wait_held(self, n: int, timeout: float = 5.0) -> None:
        if not self.wait_for(lambda: self._held >= n, timeout):
            raise AssertionError(f"expected {n} request(s) held at the gate, got {self._held}")

    # -- request handling ----------------------------------------------------------------

    def _route(self, request: web.BaseRequest, body: Any = None) -> tuple[str | None, str | None, bool]:
        """(wire, endpoint, google streaming) for a request (`body`: its parsed JSON), (None,
        None, False) when unknown."""
        path = request.path
        if request.method == "POST":
            if path.endswith("/chat/completions"):
                return "openai", "generate", False
            if path.endswith("/responses"):
                return "openai", "responses", False
            if path.endswith("/embeddings") and isinstance(body, dict) and "input" in body:
                return "openai", "embeddings", False
            if path.endswith("/v1/messages"):
                return "anthropic", "generate", False
            if path.endswith("/v1/messages/count_tokens"):
                return "anthropic", "count_tokens", False
            match = _GOOGLE_PATH.search(path)
            if match:
                if match["method"] == "countTokens":
                    return "google", "count_tokens", False
                if match["method"] in ("batchEmbedContents", "embedContent"):
                    return "google", "embeddings", False
                return "google", "generate", match["method"] == "streamGenerateContent"
        if request.method == "GET" and path.rstrip("/").endswith("/models"):
            headers = request.headers
            if "/v1beta/" in path or "x-goog-api-key" in headers or "key" in request.query:
                return "google", "models", False
            if "x-api-key" in headers or "anthropic-version" in headers:
                return "anthropic", "models", False
            return "openai", "models", False
        return None, None, False

    def _track(self, transport: asyncio.BaseTransport | None, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        if transport is not None:
            if delta > 0:
                self._transports.add(transport)
            else:
                self._transports.discard(transport)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        self._track(transport, +1)
        call: Call | None = None
        try:
            raw = await request.read()
            segments = request.path.split("/")
            provider = segments[1] if len(segments) > 1 else ""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            wire_name, endpoint, google_stream = self._route(request, body)
            call = Call(
                provider=provider,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                raw=raw,
                time=time.time(),
                wire=wire_name,
                endpoint=endpoint,
            )
            if wire_name == "google":
                call.stream = google_stream
            elif isinstance(body, dict):
                call.stream = body.get("stream") is True
            with self._lock:
                self._calls.append(call)
            return await self._answer(request, call)
        except asyncio.CancelledError:
            if call is not None and not self._stopping:
                call.disconnected = True
            raise
        finally:
            self._track(transport, -1)

    async def _answer(self, request: web.BaseRequest, call: Call) -> web.StreamResponse:
        if call.wire is None:
            return self._json(call, 404, {"error": {"message": f"No route for {call.method} {call.path}",
                                                    "type": "invalid_request_error", "code": "unknown_url"}})
        wire = _wire_of(call.wire, call.endpoint)
        fault = self._take_fault(call.provider, call.endpoint)
        call.fault = fault.kind if fault else None
        opts = fault.options if fault else {}

        if call.fault == "reset_after_request":
            return self._drop(request, call, rst=True)

        gate = self._enter_gate(call.provider) if call.endpoint in ("generate", "responses") else None
        if gate is not None:
            self._held += 1
            try:
                await gate.event.wait()
            finally:
                self._held -= 1

        if call.fault == "hang":
            await self._hang(request)  # until the client goes away, reset() or stop()
        if call.fault == "slow":
            await asyncio.sleep(opts["seconds"])
        if call.fault == "status":
            return self._status_fault(call, wire, opts)
        if call.fault == "invalid_json":
            text = opts["body"] if opts["body"] is not None else '{"id": "broken", "choices": [{"message": '
            return self._text(call, 200, text, "application/json")

        if self.valid_tokens is not None and wire.token(request) not in self.valid_tokens:
            status, body = wire.auth_failure()
            return self._json(call, status, body)

        if call.endpoint == "models":
            ids = list(self.models) if self.models is not None else DEFAULT_MODELS[call.wire]
            return self._json(call, 200, wire.models(ids, call.provider))

        if call.endpoint == "embeddings":
            return await self._embeddings(request, call, wire, fault)

        if self.strict:
            problem = wire.check(request, call.body)  # a message, or a whole error body
            if problem:
                return self._json(call, 400, problem if isinstance(problem, dict) else wire.error(400, problem))

        replay = self._take_replay(call.provider, call.endpoint)
        if replay is not None:
            return await self._replay(request, call, replay)

        reply = self._reply(request, call, fault)
        if call.endpoint == "count_tokens":
            return self._json(call, 200, wire.count_tokens(reply))

        if call.fault == "error_in_200" and not call.stream:
            return self._json(call, 200, wire.error_in_200(opts["error"]))
        if call.fault == "garbage_sse":
            return await self._garbage(request, call, wire, opts)
        if not call.stream:
            return self._json(call, 200, wire.completion(reply))
        return await self._stream(request, call, wire, reply, opts)

    def _reply(self, request: web.BaseRequest, call: Call, fault: _Fault | None) -> _Reply:
        wire = _wire_of(call.wire, call.endpoint)
        responses = call.endpoint == "responses"
        body = call.body if isinstance(call.body, dict) else {}
        suffix = uuid.uuid4().hex[:24]
        long_suffix = (uuid.uuid4().hex + uuid.uuid4().hex)[:50]  # as long as OpenAI's Responses ids
        fixed = self.fixed_completion_id
        ids = {"openai": f"resp_{long_suffix}" if responses else f"chatcmpl-{suffix}", "anthropic": f"msg_01{suffix}",
               "google": suffix}
        model = call.model or "unknown-model"
        prompt_tokens, completion_tokens = self.usage
        cached_tokens, reasoning_tokens = self.cached_tokens, self.reasoning_tokens
        cache_write_tokens = 0
        if self.bill_most:
            most = most_billed("responses" if responses else call.wire, call.provider, model, body)
            prompt_tokens, completion_tokens = most.prompt_tokens, most.completion_tokens
            cache_write_tokens = most.cache_write_tokens
            cached_tokens = reasoning_tokens = 0  # no cache discount: the most it could bill
        tool_name = wire.tool_name(body) if call.endpoint in ("generate", "responses") else None
        if tool_name and self.answer_tool_results and _has_tool_result(body):
            tool_name = None
        kind = fault.kind if fault else None
        if kind == "huge_stream":
            tool_name = None
            chunk_chars = max(1, int(fault.options["chunk_kb"] * 1024))
            total = int(fault.options["size_mb"] * 1024 * 1024)
            block = ("lorem ipsum " * (chunk_chars // 12 + 1))[:chunk_chars]
            count = max(1, math.ceil(total / chunk_chars))
            pieces: Iterable[str] = itertools.repeat(block, count)
        elif tool_name:
            pieces = _split(json.dumps(TOOL_ARGUMENTS), self.stream_chunks)
        else:
            pieces = _split(self.reply, self.stream_chunks)
        tool = None
        if tool_name:
            tool = ((fixed or f"call_{suffix}") if call.wire == "openai" else (fixed or f"toolu_01{suffix}"), tool_name)
        stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        failed = bool(kind == "error_in_200" and fault.options["failed"])
        return _Reply(
            wire=call.wire,
            model=model,
            id=fixed or ids[call.wire],
            created=int(time.time()),
            pieces=pieces,
            tool=tool,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_mode=fault.options["mode"] if kind == "bad_usage" else None,
            cache_write_tokens=cache_write_tokens,
            include_usage=bool(stream_options.get("include_usage")),
            sse=request.query.get("alt") == "sse",
            crlf=self.google_sse_crlf,
            request=body if responses else {},
            item_id=f"{'fc' if tool else 'msg'}_{long_suffix}",
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
            obfuscate=stream_options.get("include_obfuscation") is not False,
            failed=failed,
        )

    async def _embeddings(self, request: web.BaseRequest, call: Call, wire: Any, fault: _Fault | None) -> web.StreamResponse:
        """OpenAI's embeddings list, or Google's {"embeddings": [{"values": [...]}]}
        (batchEmbedContents) / {"embedding": {"values": [...]}} (embedContent)."""
        body = call.body
        if call.wire == "google":
            match = _GOOGLE_PATH.search(call.path)
            requests, problem = _google_embed_requests(match["model"], match["method"], body)
        else:
            requests, problem = [], _check_openai_embeddings(body)
        if problem and self.strict:
            return self._json(call, 400, wire.error(400, problem))
        replay = self._take_replay(call.provider, call.endpoint)
        if replay is not None:
            return await self._replay(request, call, replay)
        if call.fault == "error_in_200":
            return self._json(call, 200, wire.error_in_200(fault.options["error"] if fault else None))
        if call.wire == "google":
            vectors = []
            for item in requests:
                text = "".join(p.get("text", "") for p in ((item.get("content") or {}).get("parts") or [])
                               if isinstance(p, dict))
                size = item.get("outputDimensionality") or self.embedding_dimensions
                vectors.append({"values": embedding_vector(text, size)})
            if match["method"] == "embedContent":
                return self._json(call, 200, {"embedding": vectors[0] if vectors else {"values": []}})
            return self._json(call, 200, {"embeddings": vectors})
        items = embedding_inputs(body) if isinstance(body, dict) else []
        size = body.get("dimensions") if isinstance(body, dict) and body.get("dimensions") else self.embedding_dimensions
        as_base64 = isinstance(body, dict) and body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            values = embedding_vector(item, size)
            encoded: Any = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode() if as_base64 else values
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = self.embedding_tokens if self.embedding_tokens is not None else embedding_tokens_of(items)
        mode = fault.options["mode"] if fault is not None and fault.kind == "bad_usage" else None
        prompt, _ = _counts(mode, tokens, 0)
        answer: dict[str, Any] = {"object": "list", "data": data, "model": (body or {}).get("model")}
        _put(answer, "usage", _usage_obj(mode, {"prompt_tokens": prompt, "total_tokens": prompt}))
        return self._json(call, 200, answer)

    async def _replay(self, request: web.BaseRequest, call: Call, replay: _Replay) -> web.StreamResponse:
        """Writes the replay's bytes exactly, in its pieces."""
        stream = replay.stream if replay.stream is not None else (call.stream and 200 <= replay.status < 300)
        content_type = replay.content_type or ("text/event-stream" if stream else "application/json")
        response = web.StreamResponse(status=replay.status, headers=replay.headers)
        mime, _, params = content_type.partition(";")
        response.content_type = mime.strip()
        charset = next((p.split("=", 1)[1].strip() for p in params.split(";") if p.strip().startswith("charset=")), None)
        if charset:
            response.charset = charset
        if stream:
            response.headers.setdefault("Cache-Control", "no-cache")
        else:
            response.content_length = len(replay.body)
        call.status = replay.status
        call.replayed = True
        try:
            await response.prepare(request)
            for k, piece in enumerate(split_bytes(replay.body, replay.split)):
                if k and replay.delay:
                    await asyncio.sleep(replay.delay)
                await response.write(piece)
            await response.write_eof()
            call.finished = True
        except ConnectionError:
            call.disconnected = True
        return response

    # -- writing answers -----------------------------------------------------------------

    def _json(self, call: Call, status: int, body: Any, headers: dict | None = None) -> web.Response:
        call.status = status
        call.finished = True
        return web.json_response(body, status=status, headers=headers, dumps=_dumps)

    def _text(self, call: Call, status: int, text: str, content_type: str,
              headers: dict | None = None) -> web.Response:
        call.status = status
        call.finished = True
        response = web.Response(status=status, body=text.encode(), headers=headers)
        response.content_type = content_type
        return response

    def _status_fault(self, call: Call, wire: Any, opts: dict) -> web.Response:
        status, body, headers = opts["status"], opts["body"], opts["headers"]
        if body is None:
            body = wire.error(status)
        if isinstance(body, (bytes, str)):
            text = body.decode() if isinstance(body, bytes) else body
            return self._text(call, status, text, opts["content_type"] or "text/plain", headers)
        response = self._json(call, status, body, headers)
        if opts["content_type"]:
            response.content_type = opts["content_type"]
        return response

    async def _hang(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is not None:
            self._hanging.add(transport)
        try:
            await asyncio.Event().wait()
        finally:
            self._hanging.discard(transport)

    def _drop(self, request: web.BaseRequest, call: Call, rst: bool) -> web.Response:
        """Close the connection now; with rst, as a TCP reset. aiohttp then finds it closed."""
        transport = request.transport
        if transport is not None:
            if rst:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
            transport.abort()
        return web.Response(status=500)

    async def _open_stream(self, request: web.BaseRequest, call: Call, content_type: str) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Cache-Control": "no-cache"})
        response.content_type = content_type.split(";")[0]
        if "charset" in content_type:
            response.charset = "utf-8"
        call.status = 200
        await response.prepare(request)
        return response

    async def _stream(self, request: web.BaseRequest, call: Call, wire: Any, reply: _Reply,
                      opts: dict) -> web.StreamResponse:
        kind = call.fault
        content_type = wire.stream_content_type if reply.sse or call.wire != "google" else "application/json"
        response = await self._open_stream(request, call, content_type)
        stop_after = opts.get("after") if kind in ("hang_mid_stream", "cut_mid_stream", "error_in_200") else None
        delay = self.chunk_delay
        sent_content = 0
        try:
            if stop_after != 0:
                for data, is_content in wire.stream(reply):
                    if is_content and delay and sent_content:
                        await asyncio.sleep(delay)
                    await response.write(data)
                    if is_content:
                        sent_content += 1
                        if stop_after is not None and sent_content >= stop_after:
                            break
            if kind == "error_in_200":
                await response.write(wire.stream_error(opts["error"], reply))
            elif kind == "hang_mid_stream":
                await self._hang(request)  # silent until the client goes away, reset() or stop()
            elif kind == "cut_mid_stream":
                self._drop(request, call, rst=opts["rst"])
                return response
            await response.write_eof()
            call.finished = True
        except ConnectionError:
            call.disconnected = True
        return response

    async def _garbage(self, request: web.BaseRequest, call: Call, wire: Any, opts: dict) -> web.StreamResponse:
        events = opts["events"] or ["this is not json", '{"choices": [{"delta": {"content": "half', "{}}}{{"]
        response = await self._open_stream(request, call, "text/event-stream")
        try:
            for event in events:
                await response.write(f"data: {event}\n\n".encode())
            await response.write_eof()
            call.finished = True
        except ConnectionError:
            call.disconnected = True
        return response


def _raise_fd_limit() -> None:
    """Hundreds of concurrent streams need as many sockets on both ends; lift a low soft limit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):
        pass


def free_port() -> int:
    """A port nothing listens on (for "connection refused" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------
# pytest fixtures (import both into a conftest)

_shared: FakeUpstream | None = None
_shared_lock = threading.Lock()


def shared_fake_upstream() -> FakeUpstream:
    """The one fake of this test process, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = FakeUpstream().start()
            atexit.register(_shared.stop)
        return _shared


@pytest.fixture(scope="session")
def fake_upstream_server() -> FakeUpstream:
    """The session's fake, not reset: for session-scoped setup that needs its port."""
    return shared_fake_upstream()


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """The session's fake, reset before and after the test."""
    fake = shared_fake_upstream()
    fake.reset()
    yield fake
    fake.reset()
