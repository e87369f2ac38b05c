"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, for clients of
Anthropic's SDK (Claude Code and every Anthropic-SDK application).

Claude models (every provider whose wire format is Anthropic's) get the client's request as it
was written, with only `model` replaced by the provider's id, and the client gets Anthropic's
answer and SSE events as they came: cache_control, thinking and its signatures, tool_use,
images, documents, metadata and server tools all travel untouched. Other models are reached
through chat completions: the request is translated to one (the inverse of
gateway/wire/anthropic.py), and the answer or its chunks back into Anthropic's message and
events. What has no chat completion counterpart (server tools, documents behind a URL, top_k,
…) can only go to Claude: for another model it is a 400 naming it.

Everything around the call is the chat path's (gateway/chat.py): auth, IAM rules, modes, the
reservation, the response cache, fallback and the usage log (endpoint "messages").

Shapes, by the page of Anthropic's documentation they come from:
  Messages API reference    https://docs.anthropic.com/en/api/messages
  Streaming                 https://docs.anthropic.com/en/docs/build-with-claude/streaming
  Errors                    https://docs.anthropic.com/en/api/errors
  Token counting            https://docs.anthropic.com/en/api/messages-count-tokens
"""

import base64
from typing import Any

import orjson

from core.ids import random_string
from gateway import chat, http, routing
from gateway.errors import GatewayError
from gateway.tokens import Usage, clean_count
from gateway.upstream import UpstreamFailure, open_response, read_json
from gateway.validation import bad_param, check_model
from gateway.wire import for_format
from gateway.wire.anthropic import API_VERSION, FORMAT, REDACTED_THINKING_DETAIL, THINKING_DETAIL, AnthropicStream
from gateway.wire.base import StreamItem, StreamTranslator, UpstreamCall, UpstreamFormatError
from gateway.wire.parts import as_dict, as_list, parsed_arguments

# Anthropic's error types by HTTP status (Errors page); 402 is the gateway's own: spend limits.
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
    529: "overloaded_error",
}
# OpenAI finish reasons → Anthropic stop reasons.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
# Thinking budgets → the reasoning effort a translated model is asked for (the inverse of
# gateway/wire/anthropic.py's THINKING_BUDGETS).
EFFORTS = ((2048, "low"), (16384, "medium"))
# Request fields that mean something only to Claude: refused for a model reached through chat
# completions, where they would be lost.
CLAUDE_ONLY = ("top_k", "container", "mcp_servers", "context_management", "service_tier")
# Headers of the client's passed on to Claude (the API version and beta features it asks for).
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")
# Server tools Anthropic bills per use on top of tokens (web search per search, code execution
# per container hour): refused until the gateway prices them, as chat refuses
# web_search_options. Other server tools (web fetch) and client tools cost tokens only.
PER_USE_TOOLS = ("web_search_", "code_execution_")
CACHE_TTLS = ("5m",)  # one-hour cache writes cost more than the gateway bills a cache write


def error_body(error: GatewayError) -> dict[str, Any]:
    """Anthropic's error shape: {"type": "error", "error": {"type", "message"}}."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(error.status, "api_error"), "message": error.message}}


# --- the request ---------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(body: Any, *, counting: bool = False) -> None:
    """The Messages API's required fields and their types, each problem a 400 naming it
    (`counting`: count_tokens, which takes no max_tokens)."""
    check_model(body, "'claude-sonnet-4-5'")
    if not counting and not (_is_int(body.get("max_tokens")) and body["max_tokens"] > 0):
        raise bad_param("max_tokens", "a positive integer is required: the most tokens the answer may have")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "a non-empty list of {role, content} messages is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_param(f"messages[{i}].role", "must be user or assistant")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise bad_param(f"messages[{i}].content", "must be a string or a list of content blocks")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise bad_param(f"messages[{i}].content[{j}].type", "every content block needs a type")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise bad_param("system", "must be a string or a list of text blocks")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise bad_param("tools", "must be a list of tools")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise bad_param("stream", "must be true or false")
    _check_priced(body)


def _check_priced(body: dict[str, Any]) -> None:
    """What Anthropic bills beyond the prices the gateway reserves and bills, refused by name:
    a server tool billed per use, a one-hour cache write."""
    for k, tool in enumerate(as_list(body.get("tools"))):
        if isinstance(tool, dict) and str(tool.get("type") or "").startswith(PER_USE_TOOLS):
            raise bad_param(f"tools[{k}]", f"the server tool {tool['type']} is billed per use at rates this gateway "
                                           "cannot price yet")
    for param, holder in _cache_holders(body):
        ttl = as_dict(holder.get("cache_control")).get("ttl")
        if ttl is not None and ttl not in CACHE_TTLS:
            raise bad_param(f"{param}.cache_control.ttl", 'must be "5m": one-hour cache writes are not priced by this '
                                                          "gateway yet")


def _cache_holders(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every block that may carry a cache_control, with where it is (tools, system, messages)."""
    holders = [(f"tools[{k}]", t) for k, t in enumerate(as_list(body.get("tools"))) if isinstance(t, dict)]
    holders += [(f"system[{k}]", b) for k, b in enumerate(as_list(body.get("system"))) if isinstance(b, dict)]
    for i, message in enumerate(as_list(body.get("messages"))):
        for j, block in enumerate(as_list(as_dict(message).get("content"))):
            if isinstance(block, dict):
                holders.append((f"messages[{i}].content[{j}]", block))
                holders += [(f"messages[{i}].content[{j}].content[{n}]", inner)
                            for n, inner in enumerate(as_list(block.get("content"))) if isinstance(inner, dict)]
    return holders


class Untranslatable(Exception):
    """A part of the request with no chat completion counterpart: (param, what it is)."""

    def __init__(self, param: str, what: str) -> None:
        super().__init__(what)
        self.param = param


class ChatRequest:
    """A Messages API request as a chat completion request. What cannot be translated is noted
    (the first such part), and stands in the chat request for what it weighs: a document for
    the reservation's bound (gateway/pricing.py)."""

    def __init__(self) -> None:
        self.problem: Untranslatable | None = None

    def note(self, param: str, what: str) -> None:
        self.problem = self.problem or Untranslatable(param, what)

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"model": body["model"], "messages": [*self._system(body.get("system"))]}
        for i, message in enumerate(body["messages"]):
            out["messages"].extend(self._message(message, f"messages[{i}]"))
        if _is_int(body.get("max_tokens")):
            out["max_tokens"] = body["max_tokens"]
        for name in ("temperature", "top_p", "stream"):
            if body.get(name) is not None:
                out[name] = body[name]
        if body.get("stream"):
            out["stream_options"] = {"include_usage": True}  # message_delta carries the counts
        if stops := [s for s in as_list(body.get("stop_sequences")) if isinstance(s, str)]:
            out["stop"] = stops
        if isinstance(user := as_dict(body.get("metadata")).get("user_id"), str) and user:
            out["user"] = user
        if effort := self._effort(body.get("thinking")):
            out["reasoning_effort"] = effort
        if tools := self._tools(body.get("tools")):
            out["tools"] = tools
            self._tool_choice(body.get("tool_choice"), out)
        for name in CLAUDE_ONLY:
            if body.get(name) is not None:
                self.note(name, f"{name} is Anthropic's own")
        return out

    def _system(self, system: Any) -> list[dict[str, Any]]:
        if isinstance(system, str):
            return [{"role": "system", "content": system}] if system else []
        parts = []
        for k, block in enumerate(as_list(system)):
            block = as_dict(block)
            if block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise bad_param(f"system[{k}]", "the system prompt takes text blocks only")
            parts.append(self._cached({"type": "text", "text": block["text"]}, block))
        return [{"role": "system", "content": parts}] if parts else []

    @staticmethod
    def _cached(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
        if "cache_control" in block:
            part["cache_control"] = block["cache_control"]
        return part

    def _message(self, message: dict[str, Any], param: str) -> list[dict[str, Any]]:
        content = message["content"]
        if isinstance(content, str):
            return [{"role": message["role"], "content": content}]
        if message["role"] == "assistant":
            return [self._assistant(content, param)]
        # Tool results first, as tool messages right after the call; the rest as one user turn.
        out = [self._tool_result(block, f"{param}.content[{j}]") for j, block in enumerate(content)
               if block["type"] == "tool_result"]
        parts = [part for j, block in enumerate(content) if block["type"] != "tool_result"
                 if (part := self._user_part(block, f"{param}.content[{j}]"))]
        if parts:
            out.append({"role": "user", "content": parts})
        return out

    def _user_part(self, block: dict[str, Any], param: str) -> dict[str, Any] | None:
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise bad_param(f"{param}.text", "must be a string")
            return self._cached({"type": "text", "text": block["text"]}, block)
        if kind == "image":
            return self._cached(self._image(block, param), block)
        if kind == "document":
            return self._cached(self._document(block, param), block)
        if kind in ("tool_use", "thinking", "redacted_thinking"):
            raise bad_param(f"{param}.type", f"a {kind} block belongs in an assistant message")
        self.note(param, f"a {kind} block")
        return None

    def _image(self, block: dict[str, Any], param: str) -> dict[str, Any]:
        source = as_dict(block.get("source"))
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return {"type": "image_url", "image_url": {"url": f"data:{source.get('media_type')};base64,{source['data']}"}}
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return {"type": "image_url", "image_url": {"url": source["url"]}}
        if not isinstance(source.get("type"), str):
            raise bad_param(f"{param}.source", 'an image needs its source: {"type": "base64", "media_type", "data"} or '
                                               '{"type": "url", "url"}')
        self.note(f"{param}.source", f"an image source of type {source.get('type')}")
        return {"type": "file", "file": {}}  # weighs as a document in the bound

    def _document(self, block: dict[str, Any], param: str) -> dict[str, Any]:
        source = as_dict(block.get("source"))
        data, media_type = source.get("data"), source.get("media_type")
        file: dict[str, Any] = {}
        if source.get("type") == "base64" and isinstance(data, str):
            file["file_data"] = f"data:{media_type};base64,{data}"
        elif source.get("type") == "text" and isinstance(data, str):
            file["file_data"] = "data:text/plain;base64," + base64.b64encode(data.encode()).decode()
        else:
            self.note(f"{param}.source", f"a document source of type {source.get('type')}")
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}

    def _tool_result(self, block: dict[str, Any], param: str) -> dict[str, Any]:
        content = block.get("content")
        message: dict[str, Any] = {"role": "tool", "tool_call_id": block.get("tool_use_id")}
        if isinstance(content, list):
            parts = [p for j, inner in enumerate(content) if (p := self._user_part(as_dict(inner), f"{param}.content[{j}]"))]
            message["content"] = parts or ""
        else:
            message["content"] = content if isinstance(content, str) else ""
        if block.get("is_error") and isinstance(message["content"], str):
            message["content"] = "Error: " + message["content"]  # chat completions has no is_error
        return self._cached(message, block)

    def _assistant(self, content: list[dict[str, Any]], param: str) -> dict[str, Any]:
        texts, calls, details = [], [], []
        for j, block in enumerate(content):
            kind = block["type"]
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": orjson.dumps(as_dict(block.get("input"))).decode()}})
            elif kind == "thinking":
                details.append({"type": THINKING_DETAIL, "thinking": block.get("thinking"), "signature": block.get("signature")})
            elif kind == "redacted_thinking":
                details.append({"type": REDACTED_THINKING_DETAIL, "data": block.get("data")})
            else:
                self.note(f"{param}.content[{j}]", f"a {kind} block")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        if details:
            message["reasoning_details"] = details
        if message["content"] is None and not calls:
            message["content"] = ""
        return message

    def _tools(self, tools: Any) -> list[dict[str, Any]]:
        out = []
        for k, tool in enumerate(as_list(tools)):
            tool = as_dict(tool)
            if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
                raise bad_param(f"tools[{k}].input_schema", "a tool needs its input_schema (a JSON schema object)")
            if tool.get("type") not in (None, "custom"):
                self.note(f"tools[{k}]", f"the server tool {tool.get('type')}")
                continue
            function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            out.append(self._cached({"type": "function", "function": function}, tool))
        return out

    @staticmethod
    def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
        choice = as_dict(choice)
        kind = choice.get("type")
        if kind == "any":
            out["tool_choice"] = "required"
        elif kind == "tool" and isinstance(choice.get("name"), str):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif kind in ("auto", "none"):
            out["tool_choice"] = kind
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False

    @staticmethod
    def _effort(thinking: Any) -> str | None:
        thinking = as_dict(thinking)
        if thinking.get("type") == "adaptive":
            return "medium"
        if thinking.get("type") != "enabled":
            return None
        budget = clean_count(thinking.get("budget_tokens"))
        return next((effort for most, effort in EFFORTS if budget <= most), "high")


# --- answers -------------------------------------------------------------------------------------


def anthropic_usage(usage: Usage) -> dict[str, int]:
    """Anthropic's usage: input_tokens leaves out the prompt cache's reads and writes."""
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def message_of(completion: dict[str, Any], usage: Usage, model: str) -> dict[str, Any]:
    """A chat completion → Anthropic's message: thinking, then text, then tool_use blocks."""
    choice = as_dict(as_list(completion.get("choices"))[0] if completion.get("choices") else {})
    message = as_dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    if isinstance(message.get("reasoning"), str) and message["reasoning"]:
        content.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in as_list(message.get("tool_calls")):
        function = as_dict(as_dict(call).get("function"))
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": parsed_arguments(function.get("arguments"))})
    return {
        "id": "msg_" + random_string(24), "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"), "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


def event(name: str, data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: `event: <type>` and its JSON."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


class MessagesWriter(chat.StreamWriter):
    """OpenAI chunks → Anthropic's events, in their order (Streaming guide): message_start, then
    per content block content_block_start, its deltas and content_block_stop, then
    message_delta (stop reason and usage) and message_stop."""

    def __init__(self, exchange: chat.Exchange) -> None:
        super().__init__(exchange)
        self.started = False
        self.block: tuple[str, int] | None = None  # (kind, OpenAI tool call index or -1) of the open block
        self.index = -1
        self.stop_reason = "end_turn"

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {"id": "msg_" + random_string(24), "type": "message", "role": "assistant",
                   "model": self.exchange.requested_model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [event("message_start", {"message": message})]

    def _open(self, kind: str, key: int, block: dict[str, Any]) -> list[bytes]:
        if self.block == (kind, key):
            return []
        frames = self._close()
        self.index += 1
        self.block = (kind, key)
        return [*frames, event("content_block_start", {"index": self.index, "content_block": block})]

    def _close(self) -> list[bytes]:
        if self.block is None:
            return []
        self.block = None
        return [event("content_block_stop", {"index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self.index, "delta": delta})

    def frames(self, item: StreamItem) -> list[bytes]:
        chunk = orjson.loads(item) if isinstance(item, bytes) else item
        frames = self._start()
        for choice in as_list(as_dict(chunk).get("choices"))[:1]:
            delta = as_dict(as_dict(choice).get("delta"))
            if isinstance(delta.get("reasoning"), str) and delta["reasoning"]:
                frames += self._open("thinking", -1, {"type": "thinking", "thinking": "", "signature": ""})
                frames.append(self._delta({"type": "thinking_delta", "thinking": delta["reasoning"]}))
            if isinstance(delta.get("content"), str) and delta["content"]:
                frames += self._open("text", -1, {"type": "text", "text": ""})
                frames.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for call in as_list(delta.get("tool_calls")):
                frames += self._tool_call(as_dict(call))
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return frames

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        function = as_dict(call.get("function"))
        key = call["index"] if _is_int(call.get("index")) else 0
        frames = []
        if call.get("id") or self.block != ("tool_use", key):
            frames += self._open("tool_use", key, {"type": "tool_use", "id": call.get("id") or f"toolu_{random_string(24)}",
                                                   "name": function.get("name") or "", "input": {}})
        if isinstance(function.get("arguments"), str) and function["arguments"]:
            frames.append(self._delta({"type": "input_json_delta", "partial_json": function["arguments"]}))
        return frames

    def end(self) -> list[bytes]:
        delta = {"delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                 "usage": anthropic_usage(self.exchange.usage)}
        return [*self._start(), *self._close(), event("message_delta", delta), event("message_stop", {})]

    def error(self, error: GatewayError) -> bytes:
        return event("error", {"error": error_body(error)["error"]})


class MessagesApi(chat.ChatApi):
    """The Messages API over the chat machinery: native to Anthropic's wire format."""

    endpoint = "messages"
    native_format = "anthropic"

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.headers = headers or {}

    def parse(self, raw: bytes) -> chat.Parsed:
        body = chat.load_json(raw)
        validate(body)
        request = ChatRequest()
        translated = request.translate(body)
        problem = request.problem
        refusal = None if problem is None else bad_param(
            problem.param, f"{problem} reaches only Claude models; the model this request went to answers through "
                           "chat completions, which has no counterpart for it")
        return chat.translation(translated, body, refusal)

    def native_call(self, parsed: chat.Parsed, candidate: routing.Candidate, max_tokens: int | None,
                    stream: bool) -> UpstreamCall:
        assert parsed.native is not None  # parse sets it
        return UpstreamCall(url=f"{candidate.base_url}/v1/messages", headers=self._upstream_headers(candidate.token),
                            body=orjson.dumps({**parsed.native, "model": candidate.offer.upstream_model}))

    def _upstream_headers(self, token: str) -> dict[str, str]:
        return {"anthropic-version": API_VERSION, **self.headers, "x-api-key": token, "content-type": "application/json"}

    def native_answer(self, data: Any, exchange: chat.Exchange) -> tuple[dict[str, Any], Usage | None, str]:
        _, usage, reason = FORMAT.parse_response(data, model="", completion_id="", created=0)
        return data, usage, reason or ""

    def native_stream(self, model: str, writer: chat.StreamWriter) -> StreamTranslator:
        return AnthropicStream(model=model, completion_id="", created=0, include_usage=False)

    def answer(self, completion: dict[str, Any], exchange: chat.Exchange) -> dict[str, Any]:
        return message_of(completion, exchange.usage, exchange.requested_model)

    def writer(self, exchange: chat.Exchange) -> chat.StreamWriter:
        return MessagesWriter(exchange)

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return error_body(error)

    def cache_variant(self) -> str:
        """The Anthropic version and beta features asked for change what Claude answers."""
        return "".join(f"\n{name}: {value}" for name, value in sorted(self.headers.items()))


def client_headers(scope: http.Scope) -> dict[str, str]:
    """The client's Anthropic headers (API version, beta features) to pass on to Claude."""
    return {name: value for name in PASSED_HEADERS if (value := http.header(scope, name.encode()))}


# --- count_tokens --------------------------------------------------------------------------------


async def count_tokens(snapshot: Any, raw: bytes, headers: dict[str, str]) -> dict[str, int]:
    """POST /v1/messages/count_tokens: {"input_tokens": N}. For a Claude model, Anthropic's own
    count (free at Anthropic; the first provider that answers); for others, and when no Claude
    provider answers, the gateway's estimate: 4 bytes of the translated request a token. Nothing
    is billed or logged. Raises GatewayError as routing and the request's checks do."""
    body = chat.load_json(raw)
    validate(body, counting=True)
    translated = ChatRequest().translate(body)
    api = MessagesApi(headers)
    for candidate in routing.candidates(snapshot, body["model"]):
        if candidate.wire_format != "anthropic":
            continue
        native = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
        call = UpstreamCall(url=f"{candidate.base_url}/v1/messages/count_tokens", headers=api._upstream_headers(candidate.token),
                            body=orjson.dumps({**native, "model": candidate.offer.upstream_model}))
        try:
            response = await open_response(call, for_format("anthropic"), candidate.token, public_only=candidate.org_url)
        except UpstreamFailure as failure:
            if not failure.retryable:
                raise failure.error from None  # Anthropic refused the request itself
            continue
        try:
            data = await read_json(response, candidate.token)
        except (GatewayError, UpstreamFormatError):
            continue
        finally:
            response.close()
        if _is_int(as_dict(data).get("input_tokens")):
            return {"input_tokens": data["input_tokens"]}
    estimate = len(orjson.dumps({k: translated.get(k) for k in ("messages", "tools")})) // 4
    return {"input_tokens": max(estimate, 1)}
