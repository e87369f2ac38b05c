"""Google AI Studio (Gemini generateContent), spoken for OpenAI Chat Completions clients.

Requests: system messages become `systemInstruction`; the others become user/model
`contents` of parts, with tool calls as `functionCall` parts and tool answers as
`functionResponse` parts in a user turn. Answers, and each SSE event of a stream (a whole
GenerateContentResponse holding the next parts), come back as OpenAI's `chat.completion` and
`chat.completion.chunk`, with Google's own token counts.
"""

import mimetypes
import secrets
from typing import Any
from urllib.parse import quote

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

FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}


def finish_reason(raw: Any, saw_tool_call: bool) -> str:
    if raw in FILTERED:
        return "content_filter"
    if raw == "MAX_TOKENS":
        return "length"
    # Gemini ends a function-calling turn with STOP; OpenAI clients look for tool_calls.
    return "tool_calls" if saw_tool_call else "stop"


# --- request -------------------------------------------------------------------------------


def image_part(part: dict[str, Any]) -> dict[str, Any] | None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        return None
    inline = split_data_url(url)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    file_data = {"fileUri": url}
    mime_type, _ = mimetypes.guess_type(url.split("?")[0])
    if mime_type:
        file_data["mimeType"] = mime_type  # Gemini reads a file better knowing its type
    return {"fileData": file_data}


def content_parts(content: Any) -> list[dict[str, Any]]:
    """An OpenAI user/assistant content → Gemini parts. Empty texts are dropped: Gemini
    rejects empty text parts."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in map(_dict, _list(content)):
        if part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"]:
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url" and (image := image_part(part)):
            parts.append(image)
    return parts


def function_call_parts(tool_calls: Any, names: dict[Any, str]) -> list[dict[str, Any]]:
    """Assistant tool calls → functionCall parts; remembers each call's name by id, since
    Gemini answers a call by function name where OpenAI answers it by call id."""
    parts = []
    for call in map(_dict, _list(tool_calls)):
        function = _dict(call.get("function"))
        if not function.get("name"):
            continue
        names[call.get("id")] = function["name"]
        parts.append({"functionCall": {"name": function["name"], "args": parsed_arguments(function.get("arguments"))}})
    return parts


def function_response_part(message: dict[str, Any], names: dict[Any, str]) -> dict[str, Any]:
    text = text_of(message.get("content"))
    try:
        result = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = text  # a plain-text tool answer
    name = names.get(message.get("tool_call_id")) or message.get("name") or message.get("tool_call_id") or "tool"
    return {"functionResponse": {"name": name, "response": {"content": result}}}


def turn_of(message: dict[str, Any], names: dict[Any, str]) -> tuple[str, list[dict[str, Any]]] | None:
    """One OpenAI message → (Gemini role, parts), or None when it is not a turn."""
    role = message.get("role")
    if role == "user":
        return "user", content_parts(message.get("content"))
    if role == "assistant":
        return "model", content_parts(message.get("content")) + function_call_parts(message.get("tool_calls"), names)
    if role == "tool":
        return "user", [function_response_part(message, names)]  # Gemini has no tool role
    return None


def translate_messages(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI messages → (system text, Gemini contents). Same-role neighbours are merged, so
    all answers of one round of function calls travel together, as Gemini wants."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[Any, str] = {}  # tool call id → function name
    for message in filter(lambda m: isinstance(m, dict), _list(messages)):
        if message.get("role") in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        turn = turn_of(message, names)
        if not turn or not turn[1]:
            continue
        role, parts = turn
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(t for t in system if t), contents


def response_format_config(response_format: Any) -> dict[str, Any]:
    kind = _dict(response_format).get("type")
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = _dict(response_format.get("json_schema")).get("schema")
        config: dict[str, Any] = {"responseMimeType": "application/json"}
        if isinstance(schema, dict):
            # responseJsonSchema takes JSON Schema as OpenAI clients write it; the older
            # responseSchema (an OpenAPI subset) rejects additionalProperties, which every
            # strict OpenAI schema carries.
            config["responseJsonSchema"] = schema
        return config
    return {}


def max_tokens_of(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for openai_name, google_name in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        if _number(body.get(openai_name)):
            config[google_name] = body[openai_name]
    if max_tokens := max_tokens_of(body):
        config["maxOutputTokens"] = max_tokens
    if stops := stop_sequences(body.get("stop")):
        config["stopSequences"] = stops
    config.update(response_format_config(body.get("response_format")))
    return config


def translate_tools(tools: Any) -> list[dict[str, Any]]:
    declarations = []
    for tool in map(_dict, _list(tools)):
        function = _dict(tool.get("function"))
        if tool.get("type", "function") != "function" or not function.get("name"):
            continue
        declaration = {"name": function["name"], "description": function.get("description") or ""}
        if function.get("parameters"):
            # JSON Schema as the client wrote it (see response_format_config for why not
            # the OpenAPI-subset `parameters`).
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return declarations


def function_calling_config(choice: Any) -> dict[str, Any] | None:
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if isinstance(choice, str):
        return {"mode": modes[choice]} if choice in modes else None
    name = _dict(_dict(choice).get("function")).get("name")
    return {"mode": "ANY", "allowedFunctionNames": [name]} if name else None


def translate_request(body: dict[str, Any]) -> dict[str, Any]:
    system, contents = translate_messages(body.get("messages"))
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    if config := generation_config(body):
        payload["generationConfig"] = config
    if declarations := translate_tools(body.get("tools")):
        payload["tools"] = [{"functionDeclarations": declarations}]
        if calling := function_calling_config(body.get("tool_choice")):
            payload["toolConfig"] = {"functionCallingConfig": calling}
    return payload


# --- answers -------------------------------------------------------------------------------


def usage_from(metadata: Any) -> Usage:
    """Thinking models bill their thoughts as output, apart from candidatesTokenCount;
    promptTokenCount includes the cachedContentTokenCount read from a context cache."""
    metadata = _dict(metadata)
    thoughts = clean_count(metadata.get("thoughtsTokenCount"))
    return Usage(
        prompt_tokens=clean_count(metadata.get("promptTokenCount")),
        completion_tokens=clean_count(metadata.get("candidatesTokenCount")) + thoughts,
        cached_tokens=clean_count(metadata.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
        audio_tokens=_modality_count(metadata.get("promptTokensDetails"), "AUDIO")
        - _modality_count(metadata.get("cacheTokensDetails"), "AUDIO"),
    )


def _modality_count(details: Any, modality: str) -> int:
    """Tokens of one modality in a ModalityTokenCount list (Gemini's usageMetadata)."""
    return sum(clean_count(d.get("tokenCount")) for d in _list(details) if isinstance(d, dict) and d.get("modality") == modality)


def new_call_id() -> str:
    # Gemini's calls carry no id; OpenAI clients match tool answers by id across the whole
    # conversation, so each must be unique, not just numbered within one answer.
    return f"call_{secrets.token_hex(12)}"


def tool_call_of(call: dict[str, Any]) -> dict[str, Any]:
    args = call.get("args") if isinstance(call.get("args"), dict) else {}
    call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else new_call_id()
    return {"id": call_id, "type": "function", "function": {"name": call.get("name"), "arguments": orjson.dumps(args).decode()}}


def read_parts(candidate: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """A candidate's visible texts and its tool calls (OpenAI shape, without index).
    Thought summaries (`thought: true`) are the model's reasoning, not its answer."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in map(_dict, _list(_dict(candidate.get("content")).get("parts"))):
        if part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            calls.append(tool_call_of(part["functionCall"]))
    return texts, calls


def first_candidate(data: dict[str, Any]) -> dict[str, Any] | None:
    candidates = _list(data.get("candidates"))
    return _dict(candidates[0]) if candidates else None


def readable(data: Any) -> bool:
    """Whether a whole answer is a GenerateContentResponse: candidates, or feedback on a
    prompt that got none."""
    return isinstance(data, dict) and (isinstance(data.get("candidates"), list) or isinstance(data.get("promptFeedback"), dict))


class GoogleStream(StreamTranslator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._started = False
        self._tool_calls = 0  # OpenAI numbers tool calls across the whole stream

    def feed(self, event: str, data: str) -> list[StreamItem]:
        payload = load_event(data)
        if payload.get("error"):
            self.state.error = FORMAT.error_message(200, payload)
            return []
        if isinstance(payload.get("usageMetadata"), dict):
            self.state.usage = usage_from(payload["usageMetadata"])  # each event repeats the running totals
        candidate = first_candidate(payload)
        if candidate is None:
            # No candidate at all: a blocked prompt ends the stream, anything else is a no-op.
            blocked = _dict(payload.get("promptFeedback")).get("blockReason")
            return self._started_with([self._finish("content_filter")]) if blocked else []
        return self._started_with(self._chunks_of(candidate))

    def finish(self) -> list[StreamItem]:
        if not self.include_usage:
            return []
        usage = self.state.usage or Usage()
        return [{**self._envelope(), "choices": [], "usage": usage.as_openai()}]

    def _chunks_of(self, candidate: dict[str, Any]) -> list[StreamItem]:
        texts, calls = read_parts(candidate)
        chunks: list[StreamItem] = []
        if "".join(texts):
            chunks.append(self._chunk({"content": "".join(texts)}))
        if calls:
            first, self._tool_calls = self._tool_calls, self._tool_calls + len(calls)
            chunks.append(self._chunk({"tool_calls": [{"index": first + n, **call} for n, call in enumerate(calls)]}))
        if candidate.get("finishReason"):
            chunks.append(self._finish(finish_reason(candidate["finishReason"], self._tool_calls > 0)))
        return chunks

    def _started_with(self, chunks: list[StreamItem]) -> list[StreamItem]:
        """OpenAI streams open with the assistant's role, before any content."""
        if chunks and not self._started:
            self._started = True
            chunks.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return chunks

    def _finish(self, reason: str) -> dict[str, Any]:
        self.state.finish_reason = reason
        return self._chunk({}, reason)

    def _envelope(self) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        self.state.chunks += 1
        return {**self._envelope(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


class GoogleFormat(WireFormat):
    name = "google"

    def build_call(self, *, body: dict[str, Any], upstream_model: str, base_url: str, token: str, stream: bool) -> UpstreamCall:
        model = quote(upstream_model.removeprefix("models/"), safe="")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamCall(
            url=f"{base_url}/v1beta/models/{model}:{method}",
            headers={"x-goog-api-key": token, "content-type": "application/json"},
            body=orjson.dumps(translate_request(body)),
        )

    def parse_response(
        self, data: dict[str, Any], *, model: str, completion_id: str, created: int
    ) -> tuple[dict[str, Any], Usage, str | None]:
        if not readable(data):
            raise UpstreamFormatError("the provider's answer has no candidates")
        candidate = first_candidate(data)
        usage = usage_from(data.get("usageMetadata"))
        if candidate is None:  # the prompt itself was blocked
            message, reason = {"role": "assistant", "content": None}, "content_filter"
        else:
            message, reason = self._message(candidate)
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
            "usage": usage.as_openai(),
        }
        return completion, usage, reason

    @staticmethod
    def _message(candidate: dict[str, Any]) -> tuple[dict[str, Any], str]:
        texts, calls = read_parts(candidate)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        return message, finish_reason(candidate.get("finishReason"), bool(calls))

    def stream_translator(self, *, model: str, completion_id: str, created: int, include_usage: bool) -> StreamTranslator:
        return GoogleStream(model=model, completion_id=completion_id, created=created, include_usage=include_usage)

    def error_message(self, status: int, data: Any) -> str:
        if isinstance(data, list) and data:
            data = data[0]  # streamGenerateContent without alt=sse answers errors in an array
        return super().error_message(status, data)


FORMAT = GoogleFormat()
