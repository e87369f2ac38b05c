"""Anthropic Messages API, spoken for OpenAI Chat Completions clients.

Requests: system and developer messages become the top-level `system`; the others become
user/assistant turns of content blocks, with tool calls as `tool_use` blocks and tool answers
as `tool_result` blocks inside a user turn. A `cache_control` the client put on a part, a
message or a tool goes onto the block it became (Anthropic's prompt caching). Answers and SSE
events come back as OpenAI's `chat.completion` and `chat.completion.chunk`, with Anthropic's
own token counts.
"""

from collections.abc import Callable
from typing import Any, ClassVar

import orjson

from gateway.errors import GatewayError
from gateway.tokens import Usage, clean_count
from gateway.wire.base import StreamItem, StreamTranslator, UpstreamCall, UpstreamFormatError, WireFormat
from gateway.wire.parts import (
    as_dict as _dict,
)
from gateway.wire.parts import (
    as_list as _list,
)
from gateway.wire.parts import (
    is_number as _number,
)
from gateway.wire.parts import (
    load_event,
    parsed_arguments,
    split_data_url,
    stop_sequences,
    text_of,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out
# Prompt caching (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
MAX_CACHE_BREAKPOINTS = 4
# One-hour cache writes cost twice the input price, more than the gateway reserves and bills
# for a cache write (the 5-minute price): refused until the log tells the two apart.
CACHE_TTLS = ("5m",)

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop")


# --- request -------------------------------------------------------------------------------


def image_url_of(part: dict[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return url if isinstance(url, str) else ""


def image_block(url: str) -> dict[str, Any] | None:
    inline = split_data_url(url)
    if inline:
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None  # Anthropic can read neither; better left out than a 400 for the whole request


def bad_request(param: str, message: str) -> GatewayError:
    """The gateway's 400 naming the parameter, as gateway/validation.py words it."""
    return GatewayError(400, f"Invalid '{param}': {message}", "invalid_request_error", param=param)


def cache_control_of(holder: dict[str, Any], param: str) -> dict[str, Any] | None:
    """The cache_control a client put on a part, a message or a tool, as Anthropic takes it
    (only `type` and `ttl`), or None when there is none. Anything else is refused by name:
    sent on, it would fail at Anthropic; dropped, the client would pay for a cache it asked
    for and never got."""
    value = holder.get("cache_control")
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise bad_request(f"{param}.cache_control", 'must be {"type": "ephemeral"}, optionally with a ttl of "5m"')
    ttl = value.get("ttl")
    if ttl is None:
        return {"type": "ephemeral"}
    if ttl not in CACHE_TTLS:
        raise bad_request(f"{param}.cache_control.ttl", 'must be "5m": one-hour cache writes are not priced by this gateway yet')
    return {"type": "ephemeral", "ttl": ttl}


def mark(block: dict[str, Any], cache_control: dict[str, Any] | None, param: str, marks: list[str]) -> None:
    """Puts a breakpoint on a block, noting where it came from (`marks`, to count them). A block
    keeps the first one it gets: a part's own mark stands over its message's."""
    if cache_control and "cache_control" not in block:
        block["cache_control"] = cache_control
        marks.append(f"{param}.cache_control")


def content_blocks(content: Any, param: str, marks: list[str]) -> list[dict[str, Any]]:
    """An OpenAI user/assistant content → Anthropic blocks, each with its part's cache_control.
    Empty texts are dropped: Anthropic rejects empty text blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(_list(content)):
        part = _dict(part)
        cache_control = cache_control_of(part, f"{param}.content[{j}]")
        block = None
        if part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"]:
            block = {"type": "text", "text": part["text"]}
        elif part.get("type") == "image_url":
            block = image_block(image_url_of(part))
        if block:
            mark(block, cache_control, f"{param}.content[{j}]", marks)
            blocks.append(block)
    return blocks


def tool_use_blocks(tool_calls: Any) -> list[dict[str, Any]]:
    blocks = []
    for call in map(_dict, _list(tool_calls)):
        function = _dict(call.get("function"))
        if not call.get("id") or not function.get("name"):
            continue  # Anthropic requires both, and nothing could answer such a call
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": parsed_arguments(function.get("arguments")),
            }
        )
    return blocks


def tool_result_block(message: dict[str, Any], param: str, marks: list[str]) -> dict[str, Any]:
    """A tool answer; its content goes up as one text, so a breakpoint on any of its parts marks
    the whole result."""
    block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    text = text_of(message.get("content"))
    if text:
        block["content"] = text
    for j, part in enumerate(_list(message.get("content"))):
        mark(block, cache_control_of(_dict(part), f"{param}.content[{j}]"), f"{param}.content[{j}]", marks)
    return block


def turn_of(message: dict[str, Any], param: str, marks: list[str]) -> tuple[str, list[dict[str, Any]]] | None:
    """One OpenAI message → (Anthropic role, blocks), or None when it is not a turn. A
    cache_control on the message itself marks the last block it became."""
    role = message.get("role")
    if role == "user":
        turn = "user", content_blocks(message.get("content"), param, marks)
    elif role == "assistant":
        turn = "assistant", content_blocks(message.get("content"), param, marks) + tool_use_blocks(message.get("tool_calls"))
    elif role == "tool":
        turn = "user", [tool_result_block(message, param, marks)]  # Anthropic has no tool role
    else:
        return None
    cache_control = cache_control_of(message, param)
    if turn[1]:
        mark(turn[1][-1], cache_control, param, marks)
    return turn


# A text of the system prompt, with the breakpoint that ends at it and where that came from.
Segment = tuple[str, dict[str, Any] | None, str]


def system_segments(message: dict[str, Any], param: str) -> list[Segment]:
    """A system/developer message's non-empty texts (images have no place in Anthropic's
    system), each with its cache_control; the message's own marks its last text."""
    content = message.get("content")
    if isinstance(content, str):
        segments: list[Segment] = [(content, None, param)] if content else []
    else:
        segments = []
        for j, part in enumerate(_list(content)):
            part = _dict(part)
            cache_control = cache_control_of(part, f"{param}.content[{j}]")
            if part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"]:
                segments.append((part["text"], cache_control, f"{param}.content[{j}]"))
    cache_control = cache_control_of(message, param)
    if segments and cache_control and segments[-1][1] is None:
        segments[-1] = (segments[-1][0], cache_control, param)
    return segments


def system_of(messages: list[list[Segment]], marks: list[str]) -> str | list[dict[str, Any]]:
    """The top-level system: the texts joined as one string (a line break between the parts of
    a message, a blank line between messages), or, when some carry a breakpoint, that same text
    cut into text blocks that each end at one. Claude reads the same prompt either way."""
    blocks: list[dict[str, Any]] = []
    text = ""
    for segments in filter(None, messages):
        for k, (segment, cache_control, param) in enumerate(segments):
            text += ("\n" if k else "\n\n" if text or blocks else "") + segment
            if cache_control:
                block = {"type": "text", "text": text}
                mark(block, cache_control, param, marks)
                blocks.append(block)
                text = ""
    if not blocks:
        return text
    if text:
        blocks.append({"type": "text", "text": text})
    return blocks


def translate_messages(
    messages: Any, system_marks: list[str], marks: list[str]
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages → (system, Anthropic turns), noting the breakpoints placed in each.
    Same-role neighbours are merged, since Anthropic wants turns to alternate (and all results
    of one tool round together)."""
    system: list[list[Segment]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(_list(messages)):
        if not isinstance(message, dict):
            continue
        if message.get("role") in ("system", "developer"):
            system.append(system_segments(message, f"messages[{i}]"))
            continue
        turn = turn_of(message, f"messages[{i}]", marks)
        if not turn or not turn[1]:
            continue
        role, blocks = turn
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system_of(system, system_marks), turns


def translate_tools(tools: Any, marks: list[str]) -> list[dict[str, Any]]:
    translated = []
    for k, tool in enumerate(_list(tools)):
        tool = _dict(tool)
        function = _dict(tool.get("function"))
        if tool.get("type", "function") != "function" or not function.get("name"):
            continue
        item = {"name": function["name"]}
        if function.get("description"):
            item["description"] = function["description"]
        item["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        mark(item, cache_control_of(tool, f"tools[{k}]"), f"tools[{k}]", marks)
        translated.append(item)
    return translated


def check_breakpoints(marks: list[str]) -> None:
    """Anthropic refuses more than MAX_CACHE_BREAKPOINTS; so does the gateway, before anything
    is sent, naming the first one too many (`marks` in Anthropic's order: tools, system,
    messages)."""
    if len(marks) > MAX_CACHE_BREAKPOINTS:
        raise bad_request(
            marks[MAX_CACHE_BREAKPOINTS],
            f"Anthropic takes at most {MAX_CACHE_BREAKPOINTS} cache_control breakpoints in a request; this one has {len(marks)}",
        )


def translate_tool_choice(choice: Any, parallel_tool_calls: Any) -> dict[str, Any] | None:
    named = _dict(choice).get("function")
    translated: dict[str, Any] | None
    if choice == "auto":
        translated = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        translated = {"type": "none"}
    elif isinstance(named, dict) and named.get("name"):
        translated = {"type": "tool", "name": named["name"]}
    else:
        translated = None
    if parallel_tool_calls is False:
        translated = translated or {"type": "auto"}
        if translated["type"] != "none":
            translated["disable_parallel_tool_use"] = True
    return translated


def max_tokens_of(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_MAX_TOKENS


def translate_request(body: dict[str, Any], upstream_model: str, stream: bool) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat completion request. Raises GatewayError
    (400) for a cache_control Anthropic would refuse."""
    tool_marks: list[str] = []
    system_marks: list[str] = []
    message_marks: list[str] = []
    system, turns = translate_messages(body.get("messages"), system_marks, message_marks)
    tools = translate_tools(body.get("tools"), tool_marks)
    check_breakpoints(tool_marks + system_marks + message_marks)
    payload: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens_of(body), "messages": turns}
    if system:
        payload["system"] = system
    if _number(body.get("temperature")):
        payload["temperature"] = min(body["temperature"], 1)  # OpenAI allows up to 2, Anthropic 1
    if _number(body.get("top_p")):
        payload["top_p"] = body["top_p"]
    if stops := stop_sequences(body.get("stop")):
        payload["stop_sequences"] = stops
    if tools:
        payload["tools"] = tools
        # Anthropic refuses a tool_choice without tools, so it only goes up with them.
        if choice := translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")):
            payload["tool_choice"] = choice
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    if stream:
        payload["stream"] = True
    return payload


# --- answers -------------------------------------------------------------------------------


def usage_from(usage: Any) -> Usage:
    """Anthropic counts cached prompt tokens apart from input_tokens; OpenAI's prompt_tokens
    holds them all."""
    usage = _dict(usage)
    written, read = clean_count(usage.get("cache_creation_input_tokens")), clean_count(usage.get("cache_read_input_tokens"))
    return Usage(
        prompt_tokens=clean_count(usage.get("input_tokens")) + written + read,
        completion_tokens=clean_count(usage.get("output_tokens")),  # thinking included, not reported apart
        cached_tokens=read,
        cache_write_tokens=written,
    )


def tool_call_of(block: dict[str, Any]) -> dict[str, Any]:
    arguments = block.get("input") if isinstance(block.get("input"), dict) else {}
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": orjson.dumps(arguments).decode()},
    }


def message_of(content: list[Any]) -> dict[str, Any]:
    blocks = [b for b in content if isinstance(b, dict)]
    texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
    calls = [tool_call_of(b) for b in blocks if b.get("type") == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


class AnthropicStream(StreamTranslator):
    """Anthropic's typed events → OpenAI chunks. Tool calls are numbered in the order their
    blocks start, since OpenAI indexes tool calls, not content blocks."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tool_index: dict[Any, int] = {}  # Anthropic content block index → OpenAI tool call index
        self._usage: dict[str, Any] = {}  # Anthropic's usage fields, as last reported

    def feed(self, event: str, data: str) -> list[StreamItem]:
        payload = load_event(data)
        handler = self.HANDLERS.get(payload.get("type") or event)
        return handler(self, payload) if handler else []  # ping, *_stop, and events yet unknown

    def finish(self) -> list[StreamItem]:
        if not self.include_usage:
            return []
        usage = self.state.usage or Usage()
        return [{**self._envelope(), "choices": [], "usage": usage.as_openai()}]

    def _envelope(self) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        self.state.chunks += 1
        return {**self._envelope(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    def _merge_usage(self, usage: Any) -> None:
        # message_start carries the input counts, message_delta the (cumulative) output ones,
        # and newer API versions repeat cumulative input counts there too: the latest wins.
        self._usage.update({k: v for k, v in _dict(usage).items() if v is not None})
        self.state.usage = usage_from(self._usage)

    def _on_message_start(self, payload: dict[str, Any]) -> list[StreamItem]:
        self._merge_usage(_dict(payload.get("message")).get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, payload: dict[str, Any]) -> list[StreamItem]:
        block = _dict(payload.get("content_block"))
        if block.get("type") == "tool_use":
            index = self._tool_index[payload.get("index")] = len(self._tool_index)
            call = {"index": index, "id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": ""}}
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return [self._chunk({"content": block["text"]})]
        return []  # thinking and server tool blocks stay upstream

    def _on_content_block_delta(self, payload: dict[str, Any]) -> list[StreamItem]:
        delta = _dict(payload.get("delta"))
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        index = self._tool_index.get(payload.get("index"))
        partial = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and index is not None and isinstance(partial, str) and partial:
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": partial}}]})]
        return []

    def _on_message_delta(self, payload: dict[str, Any]) -> list[StreamItem]:
        self._merge_usage(payload.get("usage"))
        stop_reason = _dict(payload.get("delta")).get("stop_reason")
        if not stop_reason:
            return []
        self.state.finish_reason = finish_reason(stop_reason)
        return [self._chunk({}, self.state.finish_reason)]

    def _on_error(self, payload: dict[str, Any]) -> list[StreamItem]:
        self.state.error = FORMAT.error_message(200, payload)
        return []

    HANDLERS: ClassVar[dict[str, Callable[["AnthropicStream", dict[str, Any]], list[StreamItem]]]] = {
        "message_start": _on_message_start,
        "content_block_start": _on_content_block_start,
        "content_block_delta": _on_content_block_delta,
        "message_delta": _on_message_delta,
        "error": _on_error,
    }


class AnthropicFormat(WireFormat):
    name = "anthropic"

    def build_call(self, *, body: dict[str, Any], upstream_model: str, base_url: str, token: str, stream: bool) -> UpstreamCall:
        return UpstreamCall(
            url=f"{base_url}/v1/messages",
            headers={"x-api-key": token, "anthropic-version": API_VERSION, "content-type": "application/json"},
            body=orjson.dumps(translate_request(body, upstream_model, stream)),
        )

    def parse_response(
        self, data: dict[str, Any], *, model: str, completion_id: str, created: int
    ) -> tuple[dict[str, Any], Usage, str | None]:
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise UpstreamFormatError("the provider's answer has no content")
        usage = usage_from(data.get("usage"))
        reason = finish_reason(data.get("stop_reason"))
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message_of(data["content"]), "finish_reason": reason, "logprobs": None}],
            "usage": usage.as_openai(),
        }
        return completion, usage, reason

    def stream_translator(self, *, model: str, completion_id: str, created: int, include_usage: bool) -> StreamTranslator:
        return AnthropicStream(model=model, completion_id=completion_id, created=created, include_usage=include_usage)


FORMAT = AnthropicFormat()
