"""Google AI Studio (Gemini generateContent), spoken for OpenAI Chat Completions clients.

Requests: system messages become `systemInstruction`; the others become user/model
`contents` of parts (https://ai.google.dev/api/caching#Content, #Part), with tool calls as
`functionCall` parts and tool answers as `functionResponse` parts in the user turn right after
the call. Pictures, documents and audio become `inlineData`/`fileData` parts; what cannot be
given to Gemini is refused with a 400 naming it, never dropped. Answers, and each SSE event of
a stream (a whole GenerateContentResponse holding the next parts), come back as OpenAI's
`chat.completion` and `chat.completion.chunk`, one choice per candidate, with Google's own
token counts.

Provider state the client must hand back: a thinking model signs parts of its answer
(`thoughtSignature`, https://ai.google.dev/gemini-api/docs/thought-signatures). The gateway
carries a signature where Google's own OpenAI compatibility layer does
(https://ai.google.dev/gemini-api/docs/openai): `extra_content.google.thought_signature` on the
tool call whose functionCall part carried it, and on the message (or stream delta) for one on
a text part. Sent back in the next request, each goes onto the same part again.
"""

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

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
)

# Candidate.finishReason values that mean the output was withheld by a filter
# (https://ai.google.dev/api/generate-content#FinishReason).
FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
}

# The documented placeholder for function calls Gemini did not sign itself (a conversation
# begun on another model, a hand-written history): Gemini 3 refuses a functionCall step
# without a signature (https://ai.google.dev/gemini-api/docs/thought-signatures, FAQ).
FOREIGN_SIGNATURE = "skip_thought_signature_validator"

# MIME types Gemini reads (https://ai.google.dev/gemini-api/docs/image-understanding,
# /audio, /video-understanding, /document-processing), by file extension: a URL's type is
# guessed from it. A fixed table, not the host's mimetypes database, so that every machine
# sends the same type.
MIME_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "aiff": "audio/aiff",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "mp4": "video/mp4",
    "mpeg": "video/mpeg",
    "mpg": "video/mpg",
    "mov": "video/mov",
    "avi": "video/avi",
    "flv": "video/x-flv",
    "webm": "video/webm",
    "wmv": "video/wmv",
    "3gp": "video/3gpp",
}
# OpenAI's input_audio formats → Gemini's audio MIME types (same documents).
AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mp3", "aiff": "audio/aiff", "aac": "audio/aac", "ogg": "audio/ogg", "flac": "audio/flac"}
# What Gemini 3 takes inside a functionResponse (https://ai.google.dev/gemini-api/docs/function-calling,
# "Multimodal function responses"): pictures and documents, inline only (FunctionResponsePart.fileData
# "is not supported in Gemini API", google-genai types).
FUNCTION_RESPONSE_MIME_TYPES = {"image/png", "image/jpeg", "image/webp", "application/pdf", "text/plain"}
# Files uploaded with Gemini's Files API keep their MIME type: a fileData part naming one needs none.
FILES_API = re.compile(r"^https://generativelanguage\.googleapis\.com/v1(beta)?/files/[^/?#]+$")

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
# reasoning_effort → thinkingBudget for Gemini 2.5 (https://ai.google.dev/gemini-api/docs/thinking:
# 2.5 Pro thinks 128-32768 tokens and cannot stop, 2.5 Flash 0-24576, Flash-Lite 512-24576 or 0),
# the budgets Google's OpenAI layer uses for low, medium and high.
THINKING_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
LEAST_THINKING = 128  # 2.5 Pro's floor; the Flash models go to 0 (no thinking at all)


def finish_reason(raw: Any, saw_tool_call: bool) -> str:
    if raw in FILTERED:
        return "content_filter"
    if raw == "MAX_TOKENS":
        return "length"
    # Gemini ends a function-calling turn with STOP; OpenAI clients look for tool_calls.
    return "tool_calls" if saw_tool_call else "stop"


def bad_request(param: str, message: str) -> GatewayError:
    """The gateway's 400 naming the parameter, as gateway/validation.py words it."""
    return GatewayError(400, f"Invalid '{param}': {message}", "invalid_request_error", param=param)


# --- the model asked for ------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """What a Gemini model takes, as far as its id tells ("gemini-2.5-flash",
    "models/gemini-3-pro-preview"); an alias ("gemini-flash-latest") or another family (Gemma)
    has no version."""

    name: str
    version: tuple[int, int] | None

    @classmethod
    def of(cls, model: str) -> "Family":
        name = model.removeprefix("models/").lower()
        found = re.match(r"gemini-(\d+)(?:\.(\d+))?(?=-|$)", name)
        return cls(name, (int(found[1]), int(found[2] or 0)) if found else None)

    @property
    def gemini3(self) -> bool:
        """Gemini 3 and later: thinking levels, strict thought signatures, multimodal function
        responses, one candidate."""
        return self.version is not None and self.version >= (3, 0)

    @property
    def thinks(self) -> bool:
        """Takes a thinkingConfig: Gemini 2.5 and later, and Gemini aliases (which point at them)."""
        return self.version >= (2, 5) if self.version else self.name.startswith("gemini")

    @property
    def pro(self) -> bool:
        return "-pro" in self.name


# --- request: content parts -------------------------------------------------------------------


def text_part(text: Any) -> dict[str, Any] | None:
    """A text part, or None for an empty or blank one: Gemini refuses empty text parts, and
    whitespace alone says nothing."""
    return {"text": text} if isinstance(text, str) and text.strip() else None


def url_part(url: Any, param: str) -> dict[str, Any]:
    """An image_url's URL: a base64 data: URL goes inline, an http(s) URL as fileData with a
    MIME type (https://ai.google.dev/api/caching#FileData)."""
    if not isinstance(url, str) or not url:
        raise bad_request(param, "the image_url part has no url")
    if url.startswith("data:"):
        inline = split_data_url(url)
        if not inline:
            raise bad_request(param, "a data: URL must be base64-encoded (data:<type>;base64,...) for Gemini")
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if not url.startswith(("https://", "http://")):
        raise bad_request(param, "Gemini reads an image_url given as an https URL or a base64 data: URL")
    if FILES_API.match(url):
        return {"fileData": {"fileUri": url}}  # a Files API upload knows its own type
    extension = urlsplit(url).path.rpartition("/")[2].rpartition(".")[2].lower()
    mime_type = MIME_TYPES.get(extension)
    if not mime_type:
        raise bad_request(param, "Gemini needs the MIME type of a file it fetches, and this URL's extension names none it reads "
                                 "(such as .png, .jpg, .webp, .heic, .pdf); send it as a base64 data: URL instead")
    return {"fileData": {"fileUri": url, "mimeType": mime_type}}


def file_part(file: dict[str, Any], param: str) -> dict[str, Any]:
    """A `file` part (OpenAI's document input): its file_data, a base64 data: URL or bare
    base64, goes inline; a file_id names a file uploaded to OpenAI, which Gemini cannot read."""
    if file.get("file_id") is not None and not file.get("file_data"):
        raise bad_request(param, "a file_id names a file uploaded to OpenAI, which Gemini cannot read; send the file as file_data")
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise bad_request(param, "the file part has no file_data")
    if data.startswith("data:"):
        inline = split_data_url(data)
        if not inline:
            raise bad_request(param, "file_data must be base64-encoded (data:<type>;base64,...)")
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    filename = file.get("filename")
    extension = filename.rpartition(".")[2].lower() if isinstance(filename, str) and "." in filename else ""
    # Bare base64 is a PDF unless the filename says otherwise: OpenAI's file inputs are PDFs.
    mime_type = MIME_TYPES.get(extension) if extension else "application/pdf"
    if not mime_type:
        raise bad_request(param, f"the filename's extension gives no MIME type Gemini reads ({', '.join(sorted(MIME_TYPES))})")
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def audio_part(audio: dict[str, Any], param: str) -> dict[str, Any]:
    data, audio_format = audio.get("data"), audio.get("format")
    if not isinstance(data, str) or not data:
        raise bad_request(param, "the input_audio part has no base64 data")
    if audio_format not in AUDIO_FORMATS:
        raise bad_request(param, f"input_audio.format must be one of {', '.join(AUDIO_FORMATS)} for Gemini")
    return {"inlineData": {"mimeType": AUDIO_FORMATS[audio_format], "data": data}}


def media_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    """A non-text content part → Gemini's part, or the 400 naming it."""
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        return url_part(image.get("url") if isinstance(image, dict) else image, param)
    if kind == "file":
        return file_part(_dict(part.get("file")), param)
    if kind == "input_audio":
        return audio_part(_dict(part.get("input_audio")), param)
    raise bad_request(param, f"a part of type {kind!r} cannot be given to Gemini")


def content_parts(content: Any, param: str) -> list[dict[str, Any]]:
    """An OpenAI message content → Gemini parts, `param` naming the message. Blank texts are
    left out (Gemini refuses empty text parts); anything else becomes a part or a 400."""
    if isinstance(content, str):
        return [part] if (part := text_part(content)) else []
    parts = []
    for j, part in enumerate(_list(content)):
        part = _dict(part)
        if part.get("type") == "text":
            if translated := text_part(part.get("text")):
                parts.append(translated)
        else:
            parts.append(media_part(part, f"{param}.content[{j}]"))
    return parts


def system_texts(message: dict[str, Any], param: str) -> list[str]:
    """A system/developer message's non-blank texts. Gemini's systemInstruction holds text; a
    picture there would be lost, so it is refused (OpenAI takes only text there too)."""
    content = message.get("content")
    if isinstance(content, str):
        return [content] if content.strip() else []
    texts = []
    for j, part in enumerate(_list(content)):
        part = _dict(part)
        if part.get("type") != "text":
            raise bad_request(f"{param}.content[{j}]", "a system message takes only text parts")
        if text_part(part.get("text")):
            texts.append(part["text"])
    return texts


def google_signature(holder: Any) -> str | None:
    """The thought signature in a tool call's or a message's `extra_content.google`."""
    signature = _dict(_dict(_dict(holder).get("extra_content")).get("google")).get("thought_signature")
    return signature if isinstance(signature, str) and signature else None


# --- request: the conversation ------------------------------------------------------------------


@dataclass
class Turn:
    """A Gemini Content being built: a user turn keeps the function responses it carries (and
    the media of those answers) apart, to put them first, in the order of their calls: Gemini
    pairs responses with calls by name and place, and one function may be called twice."""

    role: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (the call's number, part)
    attached: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def content(self) -> dict[str, Any]:
        answers = [part for _, part in sorted(self.answers, key=lambda a: a[0])]
        attached = [part for _, part in sorted(self.attached, key=lambda a: a[0])]
        return {"role": self.role, "parts": [*answers, *attached, *self.parts]}


@dataclass
class Call:
    """A function call of the conversation, waiting for its answer."""

    number: int  # its place among the conversation's calls
    id: Any
    name: str
    turn: Turn  # the model turn holding it
    param: str  # where the client wrote it: messages[i].tool_calls[k]
    answered: bool = False


class Conversation:
    """OpenAI messages → (system text, Gemini contents), following Gemini's rules: user and
    model turns, neighbours of one role merged; each function call answered, by name, in the
    user turn right after the model turn that made it
    (https://ai.google.dev/gemini-api/docs/function-calling)."""

    def __init__(self, family: Family):
        self.family = family
        self.system: list[str] = []
        self.turns: list[Turn] = []
        self.calls: list[Call] = []

    def read(self, messages: Any) -> tuple[str, list[dict[str, Any]]]:
        for i, message in enumerate(_list(messages)):
            if isinstance(message, dict):
                self.message(message, f"messages[{i}]")
        for call in self.calls:
            if not call.answered:
                raise bad_request(call.param, "this tool call has no tool message answering it; Gemini needs an answer to every function call")
        contents = [turn.content() for turn in self.turns if turn.answers or turn.attached or turn.parts]
        if not contents:
            raise bad_request("messages", "there is nothing to send Gemini: the messages hold no content besides the system prompt")
        if self.family.gemini3:
            sign_foreign_calls(contents)
        return "\n\n".join(self.system), contents

    def message(self, message: dict[str, Any], param: str) -> None:
        role = message.get("role")
        if role in ("system", "developer"):
            if texts := system_texts(message, param):
                self.system.append("\n".join(texts))  # a line break between parts, a blank line between messages
        elif role == "user":
            self.add("user", content_parts(message.get("content"), param))
        elif role == "assistant":
            self.assistant(message, param)
        elif role in ("tool", "function"):
            self.answer(message, param)

    def add(self, role: str, parts: list[dict[str, Any]]) -> Turn | None:
        if not parts:
            return None  # an empty message is no turn
        if self.turns and self.turns[-1].role == role:
            self.turns[-1].parts.extend(parts)
        else:
            self.turns.append(Turn(role, parts))
        return self.turns[-1]

    def assistant(self, message: dict[str, Any], param: str) -> None:
        texts = content_parts(message.get("content"), param)
        calls: list[tuple[Any, str, str, dict[str, Any]]] = []  # (id, name, param, part)
        for k, call in enumerate(_list(message.get("tool_calls"))):
            call = _dict(call)
            function = _dict(call.get("function"))
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise bad_request(f"{param}.tool_calls[{k}].function.name", "is required")
            part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": parsed_arguments(function.get("arguments"))}}
            if signature := google_signature(call):
                part["thoughtSignature"] = signature
            calls.append((call.get("id"), function["name"], f"{param}.tool_calls[{k}]", part))
        legacy = _dict(message.get("function_call"))  # OpenAI's deprecated single function call
        if isinstance(legacy.get("name"), str) and legacy["name"]:
            part = {"functionCall": {"name": legacy["name"], "args": parsed_arguments(legacy.get("arguments"))}}
            calls.append((None, legacy["name"], f"{param}.function_call", part))
        if signature := google_signature(message):
            # A signature Gemini put on a text part goes back on the text; failing one, on the
            # first function call not signed already.
            target = next((p for p in texts if "text" in p), None) or next((c[3] for c in calls if "thoughtSignature" not in c[3]), None)
            if target is not None:
                target["thoughtSignature"] = signature
        turn = self.add("model", texts + [c[3] for c in calls])
        for call_id, name, call_param, _ in calls:
            assert turn is not None  # a call is a part
            self.calls.append(Call(len(self.calls), call_id, name, turn, call_param))

    def answer(self, message: dict[str, Any], param: str) -> None:
        """A tool (or legacy function) message → a functionResponse, named after its call, in
        the user turn that follows the call's model turn."""
        if message.get("role") == "tool":
            call = next((c for c in self.calls if not c.answered and c.id == message.get("tool_call_id")), None)
            if call is None:
                raise bad_request(f"{param}.tool_call_id", "no earlier assistant tool call with this id is waiting for an answer")
        else:
            call = next((c for c in self.calls if not c.answered and c.id is None and c.name == message.get("name")), None)
            if call is None:
                raise bad_request(f"{param}.name", "no earlier assistant function_call with this name is waiting for an answer")
        call.answered = True
        response, attached = function_response(message, call.name, param, self.family)
        at = next(k for k, turn in enumerate(self.turns) if turn is call.turn) + 1
        if at == len(self.turns) or self.turns[at].role != "user":
            self.turns.insert(at, Turn("user"))
        self.turns[at].answers.append((call.number, response))
        self.turns[at].attached.extend((call.number, part) for part in attached)


def function_response(message: dict[str, Any], name: str, param: str, family: Family) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool answer → (its functionResponse part, the media parts to send beside it). Its text
    is the response (parsed when it is JSON). Its pictures and documents go inside the
    functionResponse on Gemini 3 ("Multimodal function responses",
    https://ai.google.dev/gemini-api/docs/function-calling); earlier models refuse that shape,
    so there they follow the function responses as parts of the same user turn."""
    content = message.get("content")
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    for j, part in enumerate(_list(content)):
        part = _dict(part)
        if part.get("type") == "text":
            if isinstance(part.get("text"), str) and part["text"]:
                texts.append(part["text"])
        else:
            media.append(media_part(part, f"{param}.content[{j}]"))
    text = "\n".join(texts)
    try:
        result = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = text  # a plain-text tool answer
    response: dict[str, Any] = {"functionResponse": {"name": name, "response": {"content": result}}}
    if not family.gemini3:
        return response, media
    nested = [m for m in media if _dict(m.get("inlineData")).get("mimeType") in FUNCTION_RESPONSE_MIME_TYPES]
    if nested:
        response["functionResponse"]["parts"] = nested
    return response, [m for m in media if m not in nested]


def sign_foreign_calls(contents: list[dict[str, Any]]) -> None:
    """Gemini 3 refuses a model turn whose first functionCall carries no thought signature;
    calls it did not make (another model's, a hand-written history) get the documented
    placeholder. Calls it made carry theirs, which the client handed back."""
    for content in contents:
        if content["role"] != "model":
            continue
        first = next((p for p in content["parts"] if "functionCall" in p), None)
        if first is not None and "thoughtSignature" not in first:
            first["thoughtSignature"] = FOREIGN_SIGNATURE


# --- request: settings --------------------------------------------------------------------------


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


def candidate_count(n: Any, family: Family) -> int | None:
    """`n` → GenerationConfig.candidateCount (https://ai.google.dev/api/generate-content#GenerationConfig:
    "doesn't work for previous generation models (Gemini 1.0 family)"). Gemini 3 answers
    "Multiple candidates is not enabled for this model" (HTTP 400): refused here, by name."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 1:
        return None
    if family.gemini3 or (family.version is not None and family.version < (1, 5)):
        raise bad_request("n", f"{family.name} returns one candidate only; leave n out or at 1")
    return n


def thinking_config(effort: Any, family: Family) -> dict[str, Any] | None:
    """reasoning_effort → GenerationConfig.thinkingConfig (https://ai.google.dev/gemini-api/docs/thinking):
    a thinkingLevel on Gemini 3 (Pro has no "minimal"), a thinkingBudget on Gemini 2.5 and on
    aliases (Gemini 3 still takes a budget, 2.5 no level). includeThoughts asks for the thought
    summaries, which come back as the answer's `reasoning`."""
    if effort is None:
        return None
    if effort not in REASONING_EFFORTS:
        raise bad_request("reasoning_effort", f"must be one of {', '.join(REASONING_EFFORTS)}")
    if not family.thinks:
        raise bad_request("reasoning_effort", f"{family.name} is not a thinking model")
    if family.gemini3:
        level = "LOW" if effort in ("none", "minimal") and family.pro else {"none": "MINIMAL"}.get(effort, effort.upper())
        config: dict[str, Any] = {"thinkingLevel": level}
    elif effort in ("none", "minimal"):
        # Gemini 2.x Flash models can stop thinking; the others think at least 128 tokens.
        can_stop = family.version is not None and "flash" in family.name
        config = {"thinkingBudget": 0 if can_stop else LEAST_THINKING}
    else:
        config = {"thinkingBudget": THINKING_BUDGETS[effort]}
    if effort != "none" and config.get("thinkingBudget") != 0:
        config["includeThoughts"] = True
    return config


def generation_config(body: dict[str, Any], family: Family) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for openai_name, google_name in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        if _number(body.get(openai_name)):
            config[google_name] = body[openai_name]
    if max_tokens := max_tokens_of(body):
        config["maxOutputTokens"] = max_tokens
    if stops := stop_sequences(body.get("stop")):
        config["stopSequences"] = stops
    if count := candidate_count(body.get("n"), family):
        config["candidateCount"] = count
    config.update(response_format_config(body.get("response_format")))
    if thinking := thinking_config(body.get("reasoning_effort"), family):
        config["thinkingConfig"] = thinking
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


def translate_request(body: dict[str, Any], model: str = "") -> dict[str, Any]:
    """The generateContent body for an OpenAI chat completion request to `model` (the
    upstream id, which decides what Gemini takes: see Family). Raises the gateway's 400 for
    what Gemini cannot be given."""
    family = Family.of(model)
    system, contents = Conversation(family).read(body.get("messages"))
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    if config := generation_config(body, family):
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


def call_id(completion_id: str, choice: int, k: int) -> str:
    """An id for the k-th call of a choice. Gemini's calls mostly carry none; OpenAI clients
    match tool answers by id across the whole conversation, so each must be unique, not just
    numbered within one answer: drawn from the completion's own random id, it is, and the same
    whether the answer was streamed or not."""
    return "call_" + hashlib.sha256(f"{completion_id}/{choice}/{k}".encode()).hexdigest()[:24]


def google_extra(signature: str) -> dict[str, Any]:
    """Where Google's OpenAI compatibility layer puts a thought signature."""
    return {"google": {"thought_signature": signature}}


def tool_call_of(part: dict[str, Any], default_id: str) -> dict[str, Any]:
    call = part["functionCall"]
    args = call.get("args") if isinstance(call.get("args"), dict) else {}
    tool_call = {"id": call["id"] if isinstance(call.get("id"), str) and call["id"] else default_id, "type": "function", "function": {"name": call.get("name"), "arguments": orjson.dumps(args).decode()}}
    if isinstance(part.get("thoughtSignature"), str) and part["thoughtSignature"]:
        tool_call["extra_content"] = google_extra(part["thoughtSignature"])
    return tool_call


@dataclass
class Parts:
    """What a candidate's parts say, in OpenAI's terms."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)  # thought summaries (`thought: true`)
    calls: list[dict[str, Any]] = field(default_factory=list)  # tool calls, without index
    signature: str | None = None  # the last signature on a part other than a function call

    @classmethod
    def of(cls, candidate: dict[str, Any], completion_id: str, choice: int, calls_before: int = 0) -> "Parts":
        read = cls()
        for part in map(_dict, _list(_dict(candidate.get("content")).get("parts"))):
            if isinstance(part.get("functionCall"), dict):
                read.calls.append(tool_call_of(part, call_id(completion_id, choice, calls_before + len(read.calls))))
                continue
            if isinstance(part.get("text"), str):
                (read.reasoning if part.get("thought") else read.content).append(part["text"])
            if isinstance(part.get("thoughtSignature"), str) and part["thoughtSignature"]:
                read.signature = part["thoughtSignature"]
        return read


def candidates_of(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(choice index, candidate) pairs: Candidate.index, else the place in the list (the
    index of a lone candidate is often left out)."""
    pairs = []
    for place, candidate in enumerate(_list(data.get("candidates"))):
        candidate = _dict(candidate)
        index = candidate.get("index")
        pairs.append((index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else place, candidate))
    return pairs


def readable(data: Any) -> bool:
    """Whether a whole answer is a GenerateContentResponse: candidates, or feedback on a
    prompt that got none."""
    return isinstance(data, dict) and (isinstance(data.get("candidates"), list) or isinstance(data.get("promptFeedback"), dict))


@dataclass
class ChoiceState:
    started: bool = False  # its role was sent
    tool_calls: int = 0  # OpenAI numbers a choice's tool calls across the whole stream
    finish_reason: str | None = None


class GoogleStream(StreamTranslator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._choices: dict[int, ChoiceState] = {}

    def feed(self, event: str, data: str) -> list[StreamItem]:
        payload = load_event(data)
        if payload.get("error"):
            self.state.error = FORMAT.error_message(200, payload)
            return []
        if isinstance(payload.get("usageMetadata"), dict):
            self.state.usage = usage_from(payload["usageMetadata"])  # each event repeats the running totals
        candidates = candidates_of(payload)
        chunks: list[StreamItem] = []
        if not candidates:
            # No candidate at all: a blocked prompt ends the stream, anything else is a no-op.
            if _dict(payload.get("promptFeedback")).get("blockReason"):
                chunks = self._opened(0, [self._finish(0, "content_filter")])
        for index, candidate in candidates:
            chunks.extend(self._opened(index, self._chunks_of(index, candidate)))
        self._conclude()
        return chunks

    def finish(self) -> list[StreamItem]:
        if not self.include_usage:
            return []
        usage = self.state.usage or Usage()
        return [{**self._envelope(), "choices": [], "usage": usage.as_openai()}]

    def _chunks_of(self, index: int, candidate: dict[str, Any]) -> list[StreamItem]:
        choice = self._choices.setdefault(index, ChoiceState())
        read = Parts.of(candidate, self.completion_id, index, choice.tool_calls)
        chunks: list[StreamItem] = []
        if reasoning := "".join(read.reasoning):
            chunks.append(self._chunk(index, {"reasoning": reasoning}))
        delta: dict[str, Any] = {}
        if content := "".join(read.content):
            delta["content"] = content
        if read.signature:
            delta["extra_content"] = google_extra(read.signature)
        if delta:
            chunks.append(self._chunk(index, delta))
        if read.calls:
            first, choice.tool_calls = choice.tool_calls, choice.tool_calls + len(read.calls)
            chunks.append(self._chunk(index, {"tool_calls": [{"index": first + n, **call} for n, call in enumerate(read.calls)]}))
        if candidate.get("finishReason") and choice.finish_reason is None:
            chunks.append(self._finish(index, finish_reason(candidate["finishReason"], choice.tool_calls > 0)))
        return chunks

    def _opened(self, index: int, chunks: list[StreamItem]) -> list[StreamItem]:
        """Each choice opens with the assistant's role, before any content (as OpenAI streams)."""
        choice = self._choices.setdefault(index, ChoiceState())
        if chunks and not choice.started:
            choice.started = True
            chunks.insert(0, self._chunk(index, {"role": "assistant", "content": ""}))
        return chunks

    def _finish(self, index: int, reason: str) -> dict[str, Any]:
        self._choices.setdefault(index, ChoiceState()).finish_reason = reason
        return self._chunk(index, {}, reason)

    def _conclude(self) -> None:
        """The stream's finish reason (the first choice's) once every choice has one: a stream
        cut before that is incomplete."""
        if self._choices and all(c.finish_reason for c in self._choices.values()):
            self.state.finish_reason = self._choices[min(self._choices)].finish_reason

    def _envelope(self) -> dict[str, Any]:
        return {"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        self.state.chunks += 1
        return {**self._envelope(), "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}]}


def message_of(candidate: dict[str, Any], completion_id: str, choice: int) -> tuple[dict[str, Any], str]:
    """A candidate → (OpenAI assistant message, finish reason)."""
    read = Parts.of(candidate, completion_id, choice)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(read.content) or None}
    if read.reasoning:
        message["reasoning"] = "".join(read.reasoning)
    if read.calls:
        message["tool_calls"] = read.calls
    if read.signature:
        message["extra_content"] = google_extra(read.signature)
    return message, finish_reason(candidate.get("finishReason"), bool(read.calls))


class GoogleFormat(WireFormat):
    name = "google"

    def build_call(self, *, body: dict[str, Any], upstream_model: str, base_url: str, token: str, stream: bool) -> UpstreamCall:
        model = quote(upstream_model.removeprefix("models/"), safe="")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamCall(
            url=f"{base_url}/v1beta/models/{model}:{method}",
            headers={"x-goog-api-key": token, "content-type": "application/json"},
            body=orjson.dumps(translate_request(body, upstream_model)),
        )

    def parse_response(
        self, data: dict[str, Any], *, model: str, completion_id: str, created: int
    ) -> tuple[dict[str, Any], Usage, str | None]:
        if not readable(data):
            raise UpstreamFormatError("the provider's answer has no candidates")
        usage = usage_from(data.get("usageMetadata"))
        choices: list[dict[str, Any]] = []
        for index, candidate in sorted(candidates_of(data), key=lambda pair: pair[0]):
            message, reason = message_of(candidate, completion_id, index)
            choices.append({"index": index, "message": message, "finish_reason": reason, "logprobs": None})
        if not choices:  # the prompt itself was blocked
            choices = [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter", "logprobs": None}]
        completion: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage.as_openai(),
        }
        return completion, usage, choices[0]["finish_reason"]

    def stream_translator(self, *, model: str, completion_id: str, created: int, include_usage: bool) -> StreamTranslator:
        return GoogleStream(model=model, completion_id=completion_id, created=created, include_usage=include_usage)

    def error_message(self, status: int, data: Any) -> str:
        if isinstance(data, list) and data:
            data = data[0]  # streamGenerateContent without alt=sse answers errors in an array
        return super().error_message(status, data)


FORMAT = GoogleFormat()
