"""What a request asked and what it got, kept with its usage record for projects that want it
(Project.log_content; the snapshot carries the flag). Nothing here runs for other projects:
the data plane checks `exchange.content is None` and goes on.

The request is kept as the client wrote it, only the parts that say what was asked:
chat completions' `messages` and `tools`, the Messages API's `system`, `messages` and `tools`,
the Responses API's `instructions`, `input` and `tools`, embeddings' `input`. The answer is
kept in one shape whatever the API: `{"role": "assistant", "content": "…", "reasoning": "…",
"toolCalls": [{"id", "name", "arguments"}]}` (`reasoning` and `toolCalls` only when there are
some; `choices` lists every choice when there were several; embeddings keep only how many
vectors of how many dimensions). A stream's answer is assembled at its end from the frames
the client was sent, whatever provider and translation produced them.

Pictures, audio and files never get stored: a base64 data URL, an Anthropic base64 source or
any long base64 text becomes a reference `{"type": "image", "media_type": "image/png",
"bytes": 12345, "sha256": "…"}`. The whole is capped at CAP characters of text: what goes past
it is cut, with a marker saying how much, and `truncated` is set.
"""

import base64
import binascii
import hashlib
import logging
import re
from typing import Any

import orjson

from core.text import storable
from gateway.wire.base import SSEDecoder, UpstreamFormatError
from gateway.wire.parts import as_dict, as_list, split_data_url

log = logging.getLogger(__name__)

CAP = 256 * 1024  # characters of text per request, request and answer together
REQUEST_SHARE = 192 * 1024  # the most the request may take of CAP (the answer gets the rest)
MAX_FRAME_BYTES = 2 * 1024 * 1024  # of a stream's frames kept to assemble its answer
LONG_BASE64 = 200  # base64 text this long is data (a picture, a file, audio), not words
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_NODE = 8  # what a key or a value costs besides its text, roughly (quotes, separators)

REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "chat.completions": ("messages", "tools"),
    "messages": ("system", "messages", "tools"),
    "responses": ("instructions", "input", "tools"),
    "embeddings": ("input",),
}


# --- references instead of data, and the size cap ---------------------------------------------


def reference(media_type: str, data: str) -> dict[str, Any]:
    """What is kept of base64 data: its kind, media type, size in bytes and SHA-256."""
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_" if "-" in data or "_" in data else None)
    except (binascii.Error, ValueError):
        raw = data.encode()
    major = media_type.split("/", 1)[0]
    kind = "image" if major == "image" else "audio" if major == "audio" else "file"
    return {"type": kind, "media_type": media_type, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


class Budget:
    """Characters left to keep; what does not fit is cut with a marker."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.truncated = False

    def text(self, value: str) -> str:
        self.left -= _NODE
        if len(value) <= self.left:
            self.left -= len(value)
            return storable(value)
        kept = max(self.left, 0)
        self.left, self.truncated = 0, True
        return storable(value[:kept]) + f"… [{len(value) - kept} more characters not kept]"


def scrub(value: Any, budget: Budget) -> Any:
    """`value` (parsed JSON) with base64 data replaced by references, within `budget`."""
    if isinstance(value, str):
        if value.startswith("data:") and (parts := split_data_url(value)) is not None:
            budget.left -= _NODE * 4
            return reference(*parts)
        if len(value) >= LONG_BASE64 and _BASE64.fullmatch(value):
            budget.left -= _NODE * 4
            return reference("application/octet-stream", value)
        return budget.text(value)
    if isinstance(value, dict):
        if value.get("type") == "base64" and isinstance(value.get("data"), str):  # an Anthropic source
            budget.left -= _NODE * 4
            return reference(str(value.get("media_type") or "application/octet-stream"), value["data"])
        out: dict[str, Any] = {}
        for key, item in value.items():
            if budget.left <= 0:
                out["…"] = f"{len(value) - len(out)} more fields not kept"
                budget.truncated = True
                break
            budget.left -= len(key) + _NODE
            out[key] = scrub(item, budget)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for item in value:
            if budget.left <= 0:
                items.append({"type": "truncated", "omitted": len(value) - len(items)})
                budget.truncated = True
                break
            items.append(scrub(item, budget))
        return items
    budget.left -= _NODE
    return value


# --- answers, in one shape ------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [as_dict(p).get("text") for p in as_list(content)]
    return "".join(t for t in texts if isinstance(t, str))


def _answer(content: str, reasoning: str = "", calls: list[dict[str, Any]] | None = None,
            other: list[Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        answer["reasoning"] = reasoning
    if calls:
        answer["toolCalls"] = calls
    if other:
        answer["other"] = other
    return answer


def _chat_message(message: dict[str, Any]) -> dict[str, Any]:
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    calls = [{"id": call.get("id"), "name": as_dict(call.get("function")).get("name"),
              "arguments": as_dict(call.get("function")).get("arguments")}
             for call in map(as_dict, as_list(message.get("tool_calls")))]
    other = [{"refusal": message["refusal"]}] if isinstance(message.get("refusal"), str) and message["refusal"] else []
    other += [{"images": message["images"]}] if message.get("images") else []
    return _answer(_text_of(message.get("content")), reasoning if isinstance(reasoning, str) else "", calls, other)


def _choices(messages: list[dict[str, Any]]) -> dict[str, Any]:
    if not messages:
        return _answer("")
    return {**messages[0], "choices": messages} if len(messages) > 1 else messages[0]


def _anthropic_blocks(blocks: list[Any]) -> dict[str, Any]:
    texts, thinking, calls, other = [], [], [], []
    for block in map(as_dict, blocks):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            arguments = block.get("input")
            calls.append({"id": block.get("id"), "name": block.get("name"),
                          "arguments": arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()})
        else:
            other.append(block)
    return _answer("".join(texts), "".join(thinking), calls, other)


def _responses_output(output: list[Any]) -> dict[str, Any]:
    texts, reasoning, calls, other = [], [], [], []
    for item in map(as_dict, output):
        kind = item.get("type")
        if kind == "message":
            texts.append(_text_of(item.get("content")))
        elif kind == "reasoning":
            reasoning.append(_text_of(item.get("content")) or _text_of(item.get("summary")))
        elif kind == "function_call":
            calls.append({"id": item.get("call_id"), "name": item.get("name"), "arguments": item.get("arguments")})
        else:
            other.append(item)
    return _answer("".join(texts), "".join(reasoning), calls, other)


def answer_of(endpoint: str, data: Any) -> dict[str, Any] | None:
    """A whole answer, as the client got it from `endpoint`, in the kept shape."""
    data = as_dict(data)
    if endpoint == "embeddings":
        vectors = as_list(data.get("data"))
        first = as_dict(vectors[0]).get("embedding") if vectors else None
        dimensions = len(first) if isinstance(first, list) else None
        if isinstance(first, str):  # encoding_format base64: little-endian float32s
            dimensions = (len(first) * 3 // 4 - first.count("=")) // 4
        return {"embeddings": len(vectors), "dimensions": dimensions}
    if endpoint == "messages":
        return _anthropic_blocks(as_list(data.get("content")))
    if endpoint == "responses":
        return _responses_output(as_list(data.get("output")))
    return _choices([_chat_message(as_dict(as_dict(c).get("message"))) for c in as_list(data.get("choices"))])


def _index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _events(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    decoder, events = SSEDecoder(), []
    try:
        for frame in frames:
            for event, data in decoder.feed(frame):
                if data.strip() == "[DONE]":
                    continue
                try:
                    payload = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(payload, dict):
                    events.append((event or str(payload.get("type") or ""), payload))
    except UpstreamFormatError:
        pass  # an event past the decoder's size limit: keep what came before
    return events


def _chat_stream(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    choices: dict[int, dict[str, Any]] = {}
    for _, chunk in events:
        for choice in map(as_dict, as_list(chunk.get("choices"))):
            index = _index(choice.get("index"))
            message = choices.setdefault(index, {"content": "", "reasoning": "", "tool_calls": {}})
            delta = as_dict(choice.get("delta"))
            if isinstance(delta.get("content"), str):
                message["content"] += delta["content"]
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if isinstance(reasoning, str):
                message["reasoning"] += reasoning
            for call in map(as_dict, as_list(delta.get("tool_calls"))):
                key = _index(call.get("index"))
                kept = message["tool_calls"].setdefault(key, {"id": None, "name": None, "arguments": ""})
                function = as_dict(call.get("function"))
                kept["id"] = kept["id"] or call.get("id")
                kept["name"] = kept["name"] or function.get("name")
                if isinstance(function.get("arguments"), str):
                    kept["arguments"] += function["arguments"]
    return _choices([_answer(m["content"], m["reasoning"], list(m["tool_calls"].values()))
                     for _, m in sorted(choices.items())])


def _anthropic_stream(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    blocks: dict[int, dict[str, Any]] = {}
    for kind, payload in events:
        index = _index(payload.get("index"))
        if kind == "content_block_start":
            blocks[index] = dict(as_dict(payload.get("content_block")))
            if blocks[index].get("type") == "tool_use":
                blocks[index]["input"] = ""
        elif kind == "content_block_delta" and index in blocks:
            block, delta = blocks[index], as_dict(payload.get("delta"))
            for field, name in (("text", "text"), ("thinking", "thinking"), ("partial_json", "input")):
                if isinstance(delta.get(field), str):
                    block[name] = str(block.get(name) or "") + delta[field]
    return _anthropic_blocks([block for _, block in sorted(blocks.items())])


def _responses_stream(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    items: dict[int, dict[str, Any]] = {}
    texts: dict[int, str] = {}
    for kind, payload in events:
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            output = as_dict(payload.get("response")).get("output")
            if isinstance(output, list) and output:
                return _responses_output(output)
        index = _index(payload.get("output_index"))
        if kind in ("response.output_item.added", "response.output_item.done"):
            items[index] = dict(as_dict(payload.get("item")))
            if kind.endswith(".done"):
                texts.pop(index, None)
        elif kind in ("response.output_text.delta", "response.reasoning_text.delta",
                      "response.reasoning_summary_text.delta", "response.function_call_arguments.delta"):
            texts[index] = texts.get(index, "") + str(payload.get("delta") or "")
    output = []
    for index, item in sorted(items.items()):
        text = texts.get(index)
        if text is not None:
            if item.get("type") == "function_call":
                item["arguments"] = text
            else:
                item["content"] = [{"type": "output_text", "text": text}]
        output.append(item)
    return _responses_output(output)


def answer_of_frames(endpoint: str, frames: list[bytes]) -> dict[str, Any]:
    """A stream's answer, assembled from the SSE frames the client was sent by `endpoint`."""
    events = _events(frames)
    if endpoint == "messages":
        return _anthropic_stream(events)
    if endpoint == "responses":
        return _responses_stream(events)
    return _chat_stream(events)


# --- one request's content ------------------------------------------------------------------------


class Capture:
    """One request's content, while it is served: the request (scrubbed at once: what is
    kept never changes as the request goes on), then its whole answer or its stream's frames."""

    def __init__(self, endpoint: str, request: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.budget = Budget(REQUEST_SHARE)
        asked = {name: request[name] for name in REQUEST_FIELDS.get(endpoint, ("messages",)) if request.get(name) is not None}
        try:
            self.request: Any = scrub(asked, self.budget)
        except Exception:  # never let the content cost the request
            log.warning("could not read a request for its kept content", exc_info=True)
            self.request = None
        self.answer: dict[str, Any] | None = None
        self.frames: list[bytes] = []
        self.frame_bytes = 0
        self.frames_cut = False

    def answered(self, data: Any) -> None:
        """The whole answer the client got (parsed, or its JSON text)."""
        try:
            if isinstance(data, (bytes, str)):
                data = orjson.loads(data)
            self.answer = answer_of(self.endpoint, data)
        except Exception:  # never let the content cost the request
            log.warning("could not read an answer for its kept content", exc_info=True)

    def sent(self, frames: list[bytes]) -> None:
        """Stream frames as they went to the client (kept up to MAX_FRAME_BYTES)."""
        if self.frames_cut:
            return
        size = sum(map(len, frames))
        if self.frame_bytes + size > MAX_FRAME_BYTES:
            self.frames_cut = True
            return
        self.frames.extend(frames)
        self.frame_bytes += size

    def replayed(self, frames: list[str]) -> None:
        """A cached stream's frames, as they are sent again."""
        self.sent([frame.encode() for frame in frames])

    def content(self) -> dict[str, Any] | None:
        """{"request", "response", "truncated"} for the usage record; None if it cannot be made."""
        try:
            answer = self.answer
            if answer is None and self.frames:
                answer = answer_of_frames(self.endpoint, self.frames)
            budget = Budget(CAP - (REQUEST_SHARE - max(self.budget.left, 0)))
            response = None if answer is None else scrub(answer, budget)
            return {"request": self.request, "response": response,
                    "truncated": self.budget.truncated or budget.truncated or self.frames_cut}
        except Exception:
            log.warning("could not assemble a request's kept content", exc_info=True)
            return None
