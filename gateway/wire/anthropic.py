"""Anthropic Messages API, spoken for OpenAI Chat Completions clients.

Requests: system and developer messages become the top-level `system`; the others become
user/assistant turns of content blocks, with tool calls as `tool_use` blocks and tool answers
as `tool_result` blocks inside a user turn. Answers and SSE events come back as OpenAI's
`chat.completion` and `chat.completion.chunk`, with Anthropic's own token counts.
"""

from collections.abc import Callable
from typing import Any, ClassVar

import orjson

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


def content_blocks(content: Any) -> list[dict[str, Any]]:
    """An OpenAI user/assistant content → Anthropic blocks. Empty texts are dropped:
    Anthropic rejects empty text blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in _list(content):
        kind = _dict(part).get("type")
        if kind == "text" and isinstance(part.get("text"), str) and part["text"]:
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            block = image_block(image_url_of(part))
            if block:
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


def tool_result_block(message: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    text = text_of(message.get("content"))
    if text:
        block["content"] = text
    return block


def turn_of(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """One OpenAI message → (Anthropic role, blocks), or None when it is not a turn."""
    role = message.get("role")
    if role == "user":
        return "user", content_blocks(message.get("content"))
    if role == "assistant":
        return "assistant", content_blocks(message.get("content")) + tool_use_blocks(message.get("tool_calls"))
    if role == "tool":
        return "user", [tool_result_block(message)]  # Anthropic has no tool role
    return None


def translate_messages(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI messages → (system text, Anthropic turns). Same-role neighbours are merged,
    since Anthropic wants turns to alternate (and all results of one tool round together)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in filter(lambda m: isinstance(m, dict), _list(messages)):
        if message.get("role") in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        turn = turn_of(message)
        if not turn or not turn[1]:
            continue
        role, blocks = turn
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(t for t in system if t), turns


def translate_tools(tools: Any) -> list[dict[str, Any]]:
    translated = []
    for tool in map(_dict, _list(tools)):
        function = _dict(tool.get("function"))
        if tool.get("type", "function") != "function" or not function.get("name"):
            continue
        item = {"name": function["name"]}
        if function.get("description"):
            item["description"] = function["description"]
        item["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        translated.append(item)
    return translated


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
    system, turns = translate_messages(body.get("messages"))
    payload: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens_of(body), "messages": turns}
    if system:
        payload["system"] = system
    if _number(body.get("temperature")):
        payload["temperature"] = min(body["temperature"], 1)  # OpenAI allows up to 2, Anthropic 1
    if _number(body.get("top_p")):
        payload["top_p"] = body["top_p"]
    if stops := stop_sequences(body.get("stop")):
        payload["stop_sequences"] = stops
    if tools := translate_tools(body.get("tools")):
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
