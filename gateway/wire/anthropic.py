"""Anthropic Messages API, spoken for OpenAI Chat Completions clients.

Requests: system and developer messages become the top-level `system`; the others become
user/assistant turns of content blocks, with tool calls as `tool_use` blocks and tool answers
as `tool_result` blocks at the head of the user turn right after their call. Pictures become
`image` blocks and PDF files `document` blocks, in user messages and inside tool results;
what Claude cannot take (audio, a file known only by its OpenAI file_id) is refused by name
with a 400, never left out. A `cache_control` the client put on a part, a message or a tool
goes onto the block it became (Anthropic's prompt caching). `reasoning_effort` turns on
extended thinking, and the signed thinking blocks of an answer travel to the client as
`reasoning_details` and back into the next request. Answers and SSE events come back as
OpenAI's `chat.completion` and `chat.completion.chunk`, with Anthropic's own token counts.

The rules followed, by the page of Anthropic's documentation they come from:
  Messages API reference      https://docs.anthropic.com/en/api/messages
  Streaming                   https://docs.anthropic.com/en/docs/build-with-claude/streaming
  Vision                      https://docs.anthropic.com/en/docs/build-with-claude/vision
  PDF support                 https://docs.anthropic.com/en/docs/build-with-claude/pdf-support
  Tool use                    https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
  Extended thinking           https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
  Prompt caching              https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
"""

import base64
import binascii
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
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out
# Prompt caching (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
MAX_CACHE_BREAKPOINTS = 4
# One-hour cache writes cost twice the input price, more than the gateway reserves and bills
# for a cache write (the 5-minute price): refused until the log tells the two apart.
CACHE_TTLS = ("5m",)
# Vision: "Claude supports JPEG, PNG, GIF and WebP" (the base64 source's media_type enum).
IMAGE_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
IMAGE_ALIASES = {"image/jpg": "image/jpeg"}
# Extended thinking: budget_tokens is at least 1,024 and below max_tokens. The budget each
# OpenAI reasoning_effort asks for ("none" leaves thinking off).
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
# "When thinking is enabled, you can set top_p to values between 1 and 0.95."
MIN_THINKING_TOP_P = 0.95
# Provider state the client hands back: `reasoning_details` items of these types.
THINKING_DETAIL = "anthropic.thinking"
REDACTED_THINKING_DETAIL = "anthropic.redacted_thinking"

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


def bad_request(param: str, message: str) -> GatewayError:
    """The gateway's 400 naming the parameter, as gateway/validation.py words it."""
    return GatewayError(400, f"Invalid '{param}': {message}", "invalid_request_error", param=param)


def is_blank(text: Any) -> bool:
    """Anthropic refuses text blocks that are empty or only whitespace ("text content blocks
    must contain non-whitespace text"): such texts are left out, as they say nothing."""
    return not isinstance(text, str) or not text.strip()


def image_url_of(part: dict[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return url if isinstance(url, str) else ""


def image_block(url: str, param: str) -> dict[str, Any]:
    """An image_url part → an image block: a base64 source for a data: URL, a url source for
    a web address (Vision guide). Anything Claude cannot read is a 400 naming the part."""
    inline = split_data_url(url)
    if inline:
        media_type, data = inline
        media_type = IMAGE_ALIASES.get(media_type, media_type)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise bad_request(param, f"Claude reads JPEG, PNG, GIF and WebP pictures, not {media_type}")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request(param, "Claude reads pictures from an https:// URL or a base64 data: URL (data:image/png;base64,...)")


def document_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    """A file part → a document block (PDF support guide): a PDF as a base64 source, a plain
    text file as a text source. A file_id names a file uploaded to OpenAI, which the gateway
    cannot fetch: refused, as is any other kind of file."""
    file = _dict(part.get("file"))
    file_data = file.get("file_data")
    if not isinstance(file_data, str) or not file_data:
        if file.get("file_id"):
            raise bad_request(param, "a file_id names a file stored at OpenAI, which Claude cannot read; "
                                     "send the file itself as file_data (a base64 data: URL)")
        raise bad_request(param, "a file part needs its file_data (a base64 data: URL)")
    inline = split_data_url(file_data)
    if not inline:
        raise bad_request(param, "file_data must be a base64 data: URL, e.g. data:application/pdf;base64,...")
    media_type, data = inline
    if media_type == "application/pdf":
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif media_type == "text/plain":
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise bad_request(param, "file_data of a text/plain file must be UTF-8 text in base64") from None
        source = {"type": "text", "media_type": media_type, "data": text}
    else:
        raise bad_request(param, f"Claude reads PDF (application/pdf) and plain-text documents, not {media_type}")
    block: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def part_block(part: dict[str, Any], param: str, role: str) -> dict[str, Any] | None:
    """One content part → its Anthropic block, or None for a text with nothing to say. A user
    or tool message takes texts, pictures and documents (tool_result content holds text, image
    and document blocks); an assistant message only texts."""
    kind = part.get("type")
    if kind == "text":
        return None if is_blank(part.get("text")) else {"type": "text", "text": part["text"]}
    if kind == "input_audio":
        raise bad_request(param, "Claude takes no audio input; leave the input_audio part out or choose a model that hears")
    if role == "assistant":
        raise bad_request(param, f"an assistant message carries only text parts for Claude, not {kind}")
    if kind == "image_url":
        return image_block(image_url_of(part), param)
    if kind == "file":
        return document_block(part, param)
    raise bad_request(f"{param}.type", f"{kind} parts have no Anthropic counterpart")


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


def content_blocks(content: Any, param: str, marks: list[str], role: str) -> list[dict[str, Any]]:
    """An OpenAI user/assistant content → Anthropic blocks, each with its part's cache_control.
    Blank texts are left out: Anthropic rejects empty and whitespace-only text blocks."""
    if isinstance(content, str):
        return [] if is_blank(content) else [{"type": "text", "text": content}]
    blocks = []
    for j, part in enumerate(_list(content)):
        part = _dict(part)
        cache_control = cache_control_of(part, f"{param}.content[{j}]")
        block = part_block(part, f"{param}.content[{j}]", role)
        if block:
            mark(block, cache_control, f"{param}.content[{j}]", marks)
            blocks.append(block)
    return blocks


def sendable(call: Any) -> bool:
    """Whether a tool call has the id and name a tool_use block requires: without them nothing
    could answer it, and it is left out."""
    call = _dict(call)
    name = _dict(call.get("function")).get("name")
    return isinstance(call.get("id"), str) and bool(call["id"]) and isinstance(name, str) and bool(name)


def tool_use_blocks(tool_calls: Any) -> list[dict[str, Any]]:
    return [
        {
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": parsed_arguments(call["function"].get("arguments")),
        }
        for call in _list(tool_calls)
        if sendable(call)
    ]


def thinking_blocks(details: Any, param: str) -> list[dict[str, Any]]:
    """The thinking blocks an answer carried, from the `reasoning_details` the client hands
    back with it, unchanged (Extended thinking: "pass thinking blocks back to the API" with
    their signature). Details of other providers mean nothing to Claude and stay out."""
    if details is None:
        return []
    if not isinstance(details, list):
        raise bad_request(f"{param}.reasoning_details", "must be the list of reasoning_details the gateway answered with")
    blocks = []
    for k, detail in enumerate(details):
        detail = _dict(detail)
        kind = detail.get("type")
        if kind == THINKING_DETAIL:
            if not isinstance(detail.get("thinking"), str) or is_blank(detail.get("signature")):
                raise bad_request(f"{param}.reasoning_details[{k}]", f"a {THINKING_DETAIL} detail carries the thinking and its signature, as answered")
            blocks.append({"type": "thinking", "thinking": detail["thinking"], "signature": detail["signature"]})
        elif kind == REDACTED_THINKING_DETAIL:
            if is_blank(detail.get("data")):
                raise bad_request(f"{param}.reasoning_details[{k}]", f"a {REDACTED_THINKING_DETAIL} detail carries its data, as answered")
            blocks.append({"type": "redacted_thinking", "data": detail["data"]})
    return blocks


def tool_result_block(message: dict[str, Any], param: str, marks: list[str]) -> dict[str, Any]:
    """A tool answer. Its texts go up as one string; with pictures or documents in it, as the
    list of their blocks (tool_result content takes text, image and document blocks). A
    breakpoint on any of its parts, or on the message, marks the whole result."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts = [] if is_blank(content) else [{"type": "text", "text": content}]
    for j, part in enumerate(_list(content)):
        part = _dict(part)
        cache_control = cache_control_of(part, f"{param}.content[{j}]")
        if inner := part_block(part, f"{param}.content[{j}]", "tool"):
            parts.append(inner)
        mark(block, cache_control, f"{param}.content[{j}]", marks)
    if parts and all(p["type"] == "text" for p in parts):
        block["content"] = "\n".join(p["text"] for p in parts)
    elif parts:
        block["content"] = parts
    mark(block, cache_control_of(message, param), param, marks)
    return block


def turn_of(message: dict[str, Any], param: str, marks: list[str]) -> list[dict[str, Any]]:
    """A user or assistant message → its Anthropic blocks. A cache_control on the message
    itself marks the last block it became. An assistant's thinking goes first: Anthropic wants
    it before the text and tool_use blocks it led to."""
    if message.get("role") == "user":
        blocks = content_blocks(message.get("content"), param, marks, "user")
    else:
        if message.get("function_call") is not None:
            raise bad_request(f"{param}.function_call", "the legacy function_call is not translated for Claude; send tool_calls")
        blocks = thinking_blocks(message.get("reasoning_details"), param)
        blocks += content_blocks(message.get("content"), param, marks, "assistant") + tool_use_blocks(message.get("tool_calls"))
    if blocks:
        mark(blocks[-1], cache_control_of(message, param), param, marks)
    return blocks


# A text of the system prompt, with the breakpoint that ends at it and where that came from.
Segment = tuple[str, dict[str, Any] | None, str]


def system_segments(message: dict[str, Any], param: str) -> list[Segment]:
    """A system/developer message's texts, each with its cache_control; the message's own
    marks its last text. Blank texts are left out; anything but text is refused, since
    Anthropic's system prompt holds only text."""
    content = message.get("content")
    if isinstance(content, str):
        segments: list[Segment] = [] if is_blank(content) else [(content, None, param)]
    else:
        segments = []
        for j, part in enumerate(_list(content)):
            part = _dict(part)
            cache_control = cache_control_of(part, f"{param}.content[{j}]")
            if part.get("type") != "text":
                raise bad_request(f"{param}.content[{j}]", f"Claude's system prompt takes only text, not {part.get('type')}: "
                                                           "put it in a user message")
            if not is_blank(part.get("text")):
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


class Conversation:
    """The turns of a conversation as Anthropic wants them (Messages API reference and Tool
    use guide): user and assistant alternating, same-role neighbours merged, and each tool
    result at the head of the user turn right after the assistant turn that called it."""

    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []
        self.calls: dict[Any, tuple[int, str]] = {}  # tool call id → (its turn, where the call was)
        self.answered: set[Any] = set()
        self.last: tuple[str, str] | None = None  # (role, param) of the last message kept

    def add(self, message: dict[str, Any], blocks: list[dict[str, Any]], param: str) -> None:
        role = str(message.get("role"))
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["content"].extend(blocks)
        else:
            self.turns.append({"role": role, "content": blocks})
        for k, call in enumerate(_list(message.get("tool_calls")) if role == "assistant" else []):
            if not sendable(call):
                continue
            if call["id"] in self.calls:
                raise bad_request(f"{param}.tool_calls[{k}].id", f"repeats the id of an earlier tool call ({call['id']!r}): "
                                                                 "Claude needs every tool_use id to be unique")
            self.calls[call["id"]] = (len(self.turns) - 1, f"{param}.tool_calls[{k}]")
        self.last = (role, param)

    def answer(self, block: dict[str, Any], param: str) -> None:
        """Puts a tool result right after its call: after the results already there, before
        any text of that user turn ("tool_result blocks must come FIRST in the content")."""
        call_id = block["tool_use_id"]
        if not isinstance(call_id, str) or call_id not in self.calls:
            raise bad_request(f"{param}.tool_call_id", f"answers no tool call of an earlier assistant message ({call_id!r})")
        if call_id in self.answered:
            raise bad_request(f"{param}.tool_call_id", f"answers tool call {call_id!r} a second time")
        self.answered.add(call_id)
        after = self.calls[call_id][0] + 1
        if after == len(self.turns):
            self.turns.append({"role": "user", "content": [block]})
        else:
            content = self.turns[after]["content"]
            head = next((k for k, b in enumerate(content) if b["type"] != "tool_result"), len(content))
            content.insert(head, block)
        self.last = ("tool", param)

    def check(self) -> None:
        unanswered = [where for call_id, (_, where) in self.calls.items() if call_id not in self.answered]
        if unanswered:
            raise bad_request(unanswered[0], "has no tool message answering it: Claude needs the result of every tool "
                                             "call in the turn right after it")
        if self.last and self.last[0] == "tool" and self.turns[-1]["role"] == "assistant":
            # The last message answered a call made before the assistant's last message:
            # moved next to its call, it would leave Claude continuing the assistant's turn.
            raise bad_request(self.last[1], "answers a tool call made before the assistant's last message; send tool "
                                            "messages right after the assistant message that called the tools")


def translate_messages(
    messages: Any, system_marks: list[str], marks: list[str]
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """OpenAI messages → (system, Anthropic turns, the param of the message a final assistant
    turn ends with, if it does), noting the breakpoints placed in each."""
    system: list[list[Segment]] = []
    conversation = Conversation()
    for i, message in enumerate(_list(messages)):
        if not isinstance(message, dict):
            continue
        param = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(system_segments(message, param))
        elif role == "tool":
            conversation.answer(tool_result_block(message, param, marks), param)
        elif role in ("user", "assistant"):
            if blocks := turn_of(message, param, marks):
                conversation.add(message, blocks, param)
        elif role == "function":
            raise bad_request(f"{param}.role", "the legacy function role is not translated for Claude; send tool messages")
    if not conversation.turns:
        raise bad_request("messages", "has nothing for Claude to answer: no user or assistant message with content besides "
                                      "the system prompt (Anthropic takes no empty conversation)")
    conversation.check()
    turns = conversation.turns
    prefill = None
    if turns[-1]["role"] == "assistant":
        # A final assistant turn is a prefill Claude continues; Anthropic refuses it ending in
        # whitespace ("final assistant content cannot end with trailing whitespace").
        prefill = conversation.last[1] if conversation.last else None
        last = turns[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
    return system_of(system, system_marks), turns, prefill


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


def requested_max_tokens(body: dict[str, Any]) -> tuple[str, int] | None:
    """The client's output cap and the name it came under."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None


def stop_sequences_of(stop: Any) -> list[str]:
    """OpenAI's `stop` as Anthropic's stop_sequences. An empty string can never stop anything
    and is left out. Anthropic refuses a whitespace-only sequence ("each stop sequence must
    contain non-whitespace"), and without it the answer would run past where the client asked
    it to stop: refused by name rather than dropped."""
    values = [stop] if isinstance(stop, str) else _list(stop)
    stops = [s for s in values if isinstance(s, str) and s]
    if any(not s.strip() for s in stops):
        raise bad_request("stop", "Claude does not accept whitespace-only stop sequences (such as a line break); "
                                  "leave them out or stop on visible text")
    return stops


def thinking_of(body: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """(Anthropic's `thinking`, or None, and the max_tokens to send). `reasoning_effort` asks
    for extended thinking with a budget of THINKING_BUDGETS tokens, which Anthropic wants at
    least 1,024 and below max_tokens: inside the client's own cap (a cap of 1,024 or less
    leaves no room: a 400), else on top of the usual default."""
    effort = body.get("reasoning_effort")
    asked = requested_max_tokens(body)
    if effort is None or effort == "none":
        return None, asked[1] if asked else DEFAULT_MAX_TOKENS
    if effort not in THINKING_BUDGETS:
        raise bad_request("reasoning_effort", f"must be one of none, {', '.join(THINKING_BUDGETS)}")
    budget = THINKING_BUDGETS[effort]
    if asked is None:
        return {"type": "enabled", "budget_tokens": budget}, budget + DEFAULT_MAX_TOKENS
    name, max_tokens = asked
    if max_tokens <= MIN_THINKING_BUDGET:
        raise bad_request(name, f"with reasoning_effort, Claude needs more than {MIN_THINKING_BUDGET} tokens: its thinking "
                                f"budget is at least {MIN_THINKING_BUDGET} and counts within {name}")
    return {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}, max_tokens


def check_thinking(payload: dict[str, Any], prefill: str | None) -> None:
    """What extended thinking cannot go with ("Feature compatibility"): temperature or top_k
    modifications, top_p below 0.95, forced tool use, a prefilled answer. Refused by name."""
    if "temperature" in payload and payload["temperature"] != 1:
        raise bad_request("temperature", "Claude thinks only at temperature 1: leave temperature out with reasoning_effort")
    if "top_k" in payload:
        raise bad_request("top_k", "Claude does not take top_k with reasoning_effort")
    if "top_p" in payload and payload["top_p"] < MIN_THINKING_TOP_P:
        raise bad_request("top_p", f"with reasoning_effort, Claude takes a top_p from {MIN_THINKING_TOP_P} to 1")
    if _dict(payload.get("tool_choice")).get("type") in ("any", "tool"):
        raise bad_request("tool_choice", "Claude cannot be forced to call a tool with reasoning_effort: use auto or none")
    if prefill:
        raise bad_request(prefill, "Claude cannot continue a partial assistant answer with reasoning_effort: end the "
                                   "conversation on a user or tool message")


def translate_request(body: dict[str, Any], upstream_model: str, stream: bool) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat completion request. Raises GatewayError
    (400, naming the parameter) for what Claude would refuse or could not honour."""
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise bad_request("n", "Claude answers one choice per request; send n=1 (or one request per choice)")
    if _dict(body.get("response_format")).get("type") in ("json_object", "json_schema"):
        # Left out, the answer would be free text where the client asked for JSON.
        raise bad_request("response_format", "Claude has no JSON output mode through this gateway: describe the format "
                                             "in the prompt, or choose a model that has one (OpenAI, Gemini)")
    tool_marks: list[str] = []
    system_marks: list[str] = []
    message_marks: list[str] = []
    system, turns, prefill = translate_messages(body.get("messages"), system_marks, message_marks)
    tools = translate_tools(body.get("tools"), tool_marks)
    check_breakpoints(tool_marks + system_marks + message_marks)
    thinking, max_tokens = thinking_of(body)
    payload: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": turns}
    if system:
        payload["system"] = system
    if thinking:
        payload["thinking"] = thinking
    if _number(body.get("temperature")):
        payload["temperature"] = min(body["temperature"], 1)  # OpenAI allows up to 2, Anthropic 1
    if _number(body.get("top_p")):
        payload["top_p"] = body["top_p"]
    top_k = body.get("top_k")  # not OpenAI's, but sent by clients that know Claude takes it
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        payload["top_k"] = top_k
    if stops := stop_sequences_of(body.get("stop")):
        payload["stop_sequences"] = stops
    if tools:
        payload["tools"] = tools
        # Anthropic refuses a tool_choice without tools, so it only goes up with them.
        if choice := translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")):
            payload["tool_choice"] = choice
    if thinking:
        check_thinking(payload, prefill)
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    if stream:
        payload["stream"] = True
    return payload


# --- answers -------------------------------------------------------------------------------


def usage_from(usage: Any) -> Usage:
    """Anthropic counts cached prompt tokens apart from input_tokens; OpenAI's prompt_tokens
    holds them all. Thinking is billed inside output_tokens with no figure of its own, so
    reasoning_tokens stays 0."""
    usage = _dict(usage)
    written, read = clean_count(usage.get("cache_creation_input_tokens")), clean_count(usage.get("cache_read_input_tokens"))
    return Usage(
        prompt_tokens=clean_count(usage.get("input_tokens")) + written + read,
        completion_tokens=clean_count(usage.get("output_tokens")),  # thinking included, not reported apart
        cached_tokens=read,
        cache_write_tokens=written,
    )


def arguments_of(tool_input: Any) -> str:
    """A tool_use block's `input` as OpenAI's JSON `arguments` ("{}" when it has none)."""
    return orjson.dumps(tool_input if isinstance(tool_input, dict) else {}).decode()


def tool_call_of(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments_of(block.get("input"))},
    }


def thinking_detail(block: dict[str, Any]) -> dict[str, Any] | None:
    """A thinking or redacted_thinking block as the reasoning_details item the client keeps
    and sends back (see thinking_blocks), or None for one without its signature or data."""
    if block.get("type") == "thinking" and isinstance(block.get("thinking"), str) and not is_blank(block.get("signature")):
        return {"type": THINKING_DETAIL, "thinking": block["thinking"], "signature": block["signature"]}
    if block.get("type") == "redacted_thinking" and not is_blank(block.get("data")):
        return {"type": REDACTED_THINKING_DETAIL, "data": block["data"]}
    return None


def message_of(content: list[Any]) -> dict[str, Any]:
    blocks = [b for b in content if isinstance(b, dict)]
    texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
    calls = [tool_call_of(b) for b in blocks if b.get("type") == "tool_use"]
    thoughts = [b["thinking"] for b in blocks if b.get("type") == "thinking" and isinstance(b.get("thinking"), str)]
    details = [d for d in map(thinking_detail, blocks) if d]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        message["reasoning"] = "".join(thoughts)
    if details:
        message["reasoning_details"] = details
    if calls:
        message["tool_calls"] = calls
    return message


class AnthropicStream(StreamTranslator):
    """Anthropic's typed events (Streaming guide) → OpenAI chunks. Tool calls are numbered in
    the order their blocks start, since OpenAI indexes tool calls, not content blocks. A tool
    call whose arguments never came as input_json_delta (a tool without parameters, or the
    whole input given in content_block_start) gets them when its block stops, as the JSON of
    that input ("{}" for none): the same arguments a whole answer would carry. Thinking goes
    out as `reasoning` deltas, and each block, once signed, as a `reasoning_details` item."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tool_index: dict[Any, int] = {}  # Anthropic content block index → OpenAI tool call index
        self._unsent_arguments: dict[Any, str] = {}  # block index → the arguments its start gave, until deltas come
        self._thinking: dict[Any, list[str]] = {}  # block index → [thinking so far, its signature]
        self._usage: dict[str, Any] = {}  # Anthropic's usage fields, as last reported

    def feed(self, event: str, data: str) -> list[StreamItem]:
        payload = load_event(data)
        handler = self.HANDLERS.get(payload.get("type") or event)
        return handler(self, payload) if handler else []  # ping, message_stop, and events yet unknown

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

    def _arguments(self, block_index: Any) -> list[StreamItem]:
        """The arguments a tool call got from its start alone, once: no deltas came for it."""
        if block_index not in self._unsent_arguments:
            return []
        arguments = self._unsent_arguments.pop(block_index)
        return [self._chunk({"tool_calls": [{"index": self._tool_index[block_index], "function": {"arguments": arguments}}]})]

    def _signed(self, block_index: Any) -> list[StreamItem]:
        thinking, signature = self._thinking.pop(block_index)
        detail = {"type": THINKING_DETAIL, "thinking": thinking, "signature": signature}
        return [self._chunk({"reasoning_details": [detail]})]

    def _on_message_start(self, payload: dict[str, Any]) -> list[StreamItem]:
        self._merge_usage(_dict(payload.get("message")).get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, payload: dict[str, Any]) -> list[StreamItem]:
        block, index = _dict(payload.get("content_block")), payload.get("index")
        kind = block.get("type")
        if kind == "tool_use":
            call_index = self._tool_index[index] = len(self._tool_index)
            self._unsent_arguments[index] = arguments_of(block.get("input"))
            call = {"index": call_index, "id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": ""}}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking":
            thinking = block["thinking"] if isinstance(block.get("thinking"), str) else ""
            signature = block["signature"] if isinstance(block.get("signature"), str) else ""
            self._thinking[index] = [thinking, signature]
            return [self._chunk({"reasoning": thinking})] if thinking else []
        if kind == "redacted_thinking" and (detail := thinking_detail(block)):
            return [self._chunk({"reasoning_details": [detail]})]  # whole in its start: no deltas follow
        return []  # server tool blocks stay upstream

    def _on_content_block_delta(self, payload: dict[str, Any]) -> list[StreamItem]:
        delta, index = _dict(payload.get("delta")), payload.get("index")
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and index in self._thinking and isinstance(delta.get("thinking"), str) and delta["thinking"]:
            self._thinking[index][0] += delta["thinking"]
            return [self._chunk({"reasoning": delta["thinking"]})]
        if kind == "signature_delta" and index in self._thinking and not is_blank(delta.get("signature")):
            # "sent just before the content_block_stop event": the block is whole now.
            self._thinking[index][1] = delta["signature"]
            return self._signed(index)
        partial = delta.get("partial_json")
        if kind == "input_json_delta" and index in self._tool_index and isinstance(partial, str) and partial:
            self._unsent_arguments.pop(index, None)  # the deltas carry the arguments
            return [self._chunk({"tool_calls": [{"index": self._tool_index[index], "function": {"arguments": partial}}]})]
        return []

    def _on_content_block_stop(self, payload: dict[str, Any]) -> list[StreamItem]:
        index = payload.get("index")
        if index in self._thinking and self._thinking[index][1]:
            return self._signed(index)  # signed in its start, with no signature_delta
        return self._arguments(index)

    def _on_message_delta(self, payload: dict[str, Any]) -> list[StreamItem]:
        self._merge_usage(payload.get("usage"))
        stop_reason = _dict(payload.get("delta")).get("stop_reason")
        if not stop_reason:
            return []
        # A tool call whose block never stopped still gets its arguments before the end.
        chunks = [chunk for index in list(self._unsent_arguments) for chunk in self._arguments(index)]
        self.state.finish_reason = finish_reason(stop_reason)
        return [*chunks, self._chunk({}, self.state.finish_reason)]

    def _on_error(self, payload: dict[str, Any]) -> list[StreamItem]:
        self.state.error = FORMAT.error_message(200, payload)
        return []

    HANDLERS: ClassVar[dict[str, Callable[["AnthropicStream", dict[str, Any]], list[StreamItem]]]] = {
        "message_start": _on_message_start,
        "content_block_start": _on_content_block_start,
        "content_block_delta": _on_content_block_delta,
        "content_block_stop": _on_content_block_stop,
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
