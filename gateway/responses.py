"""POST /v1/responses: OpenAI's Responses API, for the openai SDK's `responses.create`, OpenAI's
Agents SDK and the coding tools built on them.

OpenAI's own models get the client's request as written (with only `model` replaced):
`store`, `previous_response_id`, `conversation` and the built-in tools work as OpenAI runs
them, and the client gets OpenAI's answer and typed events as they came. Other models are
reached through chat completions, statelessly: `input` (a string or items: messages, function
calls and their outputs), `instructions`, function tools, `tool_choice`, `text.format`,
`reasoning.effort` and `max_output_tokens` are translated, and the chat completion (or its
chunks) comes back as a Response (or its typed events, `response.completed` carrying usage).
What needs OpenAI's state or its built-in tools (`previous_response_id`, `conversation`, a
web_search tool, a file_id, …) is a 400 naming it for those models.

Everything around the call is the chat path's (gateway/chat.py): auth, IAM rules, modes, the
reservation, the response cache, fallback and the usage log (endpoint "responses").

Shapes follow OpenAI's API reference:
  Create a response     https://platform.openai.com/docs/api-reference/responses/create
  The response object   https://platform.openai.com/docs/api-reference/responses/object
  Streaming events      https://platform.openai.com/docs/api-reference/responses-streaming
"""

import time
from typing import Any

import orjson

from core.ids import random_string
from gateway import chat, routing
from gateway.errors import GatewayError
from gateway.tokens import Usage, clean_count
from gateway.validation import bad_param, check_model
from gateway.wire.base import StreamItem, StreamTranslator, UpstreamCall, UpstreamFormatError
from gateway.wire.parts import as_dict, as_list, load_event

# Request fields that need OpenAI's stored state: a model reached through chat completions
# has none of it.
STATEFUL = ("previous_response_id", "conversation", "prompt")
# Built-in tools OpenAI bills per call on top of tokens: refused until the gateway prices them,
# as chat refuses web_search_options. The others (MCP, computer use, shell, custom) cost tokens.
PER_CALL_TOOLS = ("web_search", "web_search_preview", "web_search_preview_2025_03_11", "file_search", "code_interpreter",
                  "image_generation")
# Fields echoed on a translated Response as the request gave them (or their default).
ECHOED: dict[str, Any] = {"instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
          "temperature": None, "tool_choice": "auto", "tools": [], "top_p": None, "user": None}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(body: Any) -> None:
    """The request's shape, each problem a 400 naming the field (OpenAI's words)."""
    check_model(body, "'gpt-4.1-mini'")
    value = body.get("input")
    if value is not None and not isinstance(value, (str, list)):
        raise bad_param("input", "must be a string or a list of input items")
    for i, item in enumerate(value if isinstance(value, list) else ()):
        if not isinstance(item, dict):
            raise bad_param(f"input[{i}]", "must be an input item (an object)")
    if value is None and not body.get("previous_response_id") and not body.get("conversation") and not body.get("prompt"):
        raise bad_param("input", "is required: a string or a list of input items")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise bad_param("instructions", "must be a string")
    limit = body.get("max_output_tokens")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise bad_param("max_output_tokens", "must be a positive integer")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise bad_param("tools", "must be a list of tools")
    for k, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad_param(f"tools[{k}].type", "every tool needs its type (function, or a built-in tool)")
        if tool["type"] in PER_CALL_TOOLS:
            raise bad_param(f"tools[{k}]", f"the built-in tool {tool['type']} is billed per call at rates this gateway "
                                           "cannot price yet")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise bad_param("stream", "must be true or false")
    if body.get("service_tier") not in (None, "auto", "default"):
        raise bad_param("service_tier", "only 'auto' or 'default' is supported: other tiers are priced differently")
    _check_items(value)


def _check_items(value: Any) -> None:
    """Each input item's content: a string or a list of typed parts; an output a string or parts."""
    for i, item in enumerate(value if isinstance(value, list) else ()):
        content = item.get("content", "") if item.get("type", "message") == "message" else item.get("output", "")
        name = "content" if item.get("type", "message") == "message" else "output"
        if item.get("type", "message") not in ("message", "function_call_output"):
            continue
        if not isinstance(content, (str, list)) or (isinstance(content, list) and not all(
                isinstance(p, dict) and isinstance(p.get("type"), str) for p in content)):
            raise bad_param(f"input[{i}].{name}", "must be a string or a list of typed parts")


class ChatRequest:
    """A Responses request as a chat completion request; the first part without a chat
    completion counterpart is noted (`problem`: param, what) and weighs in the chat request as
    a document would, for the reservation's bound (gateway/pricing.py)."""

    UNSEEN = {"role": "user", "content": [{"type": "file", "file": {}}]}  # input only OpenAI holds

    def __init__(self) -> None:
        self.problem: tuple[str, str] | None = None

    def note(self, param: str, what: str) -> None:
        self.problem = self.problem or (param, what)

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if isinstance(body.get("instructions"), str) and body["instructions"]:
            messages.append({"role": "system", "content": body["instructions"]})
        for name in STATEFUL:
            if body.get(name):
                self.note(name, f"{name} (the state OpenAI keeps)")
                messages.append(self.UNSEEN)
        value = body.get("input")
        if isinstance(value, str):
            messages.append({"role": "user", "content": value})
        for i, item in enumerate(as_list(value)):
            self._item(item, f"input[{i}]", messages)
        out: dict[str, Any] = {"model": body["model"], "messages": messages}
        if _is_int(body.get("max_output_tokens")):
            out["max_tokens"] = body["max_output_tokens"]
        for name in ("temperature", "top_p", "parallel_tool_calls", "stream"):
            if body.get(name) is not None:
                out[name] = body[name]
        if body.get("stream"):
            out["stream_options"] = {"include_usage": True}  # response.completed carries the counts
        user = body.get("user") or body.get("safety_identifier")
        if isinstance(user, str) and user:
            out["user"] = user
        if effort := as_dict(body.get("reasoning")).get("effort"):
            out["reasoning_effort"] = effort
        self._format(as_dict(body.get("text")).get("format"), out)
        if tools := self._tools(body.get("tools")):
            out["tools"] = tools
            self._tool_choice(body.get("tool_choice"), out)
        return out

    def _item(self, item: dict[str, Any], param: str, messages: list[dict[str, Any]]) -> None:
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ("user", "system", "developer", "assistant"):
            messages.append({"role": item["role"], "content": self._content(item.get("content"), param, item["role"])})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}}
            last = messages[-1] if messages else {}
            if last.get("role") == "assistant":
                last.setdefault("tool_calls", []).append(call)  # one assistant turn, however many calls
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else self._content(output, f"{param}.output", "user")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
        elif kind == "reasoning":
            pass  # OpenAI's own reasoning state: nothing another model can read
        else:
            self.note(f"{param}.type", f"an input item of type {kind}")

    def _content(self, content: Any, param: str, role: str) -> str | list[dict[str, Any]]:
        if isinstance(content, str):
            return content
        if role == "assistant":  # chat completions' assistant turns hold text only
            return "".join(str(as_dict(p).get("text") or as_dict(p).get("refusal") or "") for p in as_list(content))
        return [part for j, p in enumerate(as_list(content)) if (part := self._part(as_dict(p), f"{param}.content[{j}]"))]

    def _part(self, part: dict[str, Any], param: str) -> dict[str, Any] | None:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            return {"type": "text", "text": str(part.get("text") or "")}
        if kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"], **({"detail": part["detail"]} if part.get("detail") else {})}
            return {"type": "image_url", "image_url": image}
        if kind == "input_file" and isinstance(part.get("file_data"), str):
            file = {"file_data": part["file_data"], **({"filename": part["filename"]} if part.get("filename") else {})}
            return {"type": "file", "file": file}
        self.note(param, f"a {kind} part{' known by its file_id' if part.get('file_id') else ''}")
        return {"type": "file", "file": {}}  # weighs as a document in the bound

    def _tools(self, tools: Any) -> list[dict[str, Any]]:
        out = []
        for k, tool in enumerate(as_list(tools)):
            tool = as_dict(tool)
            if tool.get("type") != "function":
                self.note(f"tools[{k}]", f"the built-in tool {tool.get('type')}")
                continue
            function = {"name": tool.get("name"), "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
            for name in ("description", "strict"):
                if tool.get(name) is not None:
                    function[name] = tool[name]
            out.append({"type": "function", "function": function})
        return out

    def _tool_choice(self, choice: Any, out: dict[str, Any]) -> None:
        if choice in ("auto", "none", "required"):
            out["tool_choice"] = choice
        elif as_dict(choice).get("type") == "function" and isinstance(choice.get("name"), str):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif choice is not None:
            self.note("tool_choice", "a tool_choice naming a built-in tool")

    @staticmethod
    def _format(fmt: Any, out: dict[str, Any]) -> None:
        fmt = as_dict(fmt)
        if fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif fmt.get("type") == "json_schema":
            schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}


# --- answers -------------------------------------------------------------------------------------


def usage_from(usage: Any) -> Usage:
    """The Responses API's usage (input_tokens with its cache reads and writes, output_tokens
    with its reasoning ones) in the gateway's terms."""
    usage = as_dict(usage)
    details = as_dict(usage.get("input_tokens_details"))
    return Usage(
        prompt_tokens=clean_count(usage.get("input_tokens")),
        completion_tokens=clean_count(usage.get("output_tokens")),
        cached_tokens=clean_count(details.get("cached_tokens")),
        cache_write_tokens=clean_count(details.get("cache_write_tokens")),
        reasoning_tokens=clean_count(as_dict(usage.get("output_tokens_details")).get("reasoning_tokens")),
    )


def responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _finish_of(data: dict[str, Any]) -> str:
    """A Response's status as a chat finish reason."""
    if data.get("status") == "incomplete":
        return "length" if as_dict(data.get("incomplete_details")).get("reason") == "max_output_tokens" else "content_filter"
    calls = any(as_dict(item).get("type") == "function_call" for item in as_list(data.get("output")))
    return "tool_calls" if calls else "stop"


def message_item(text: str, item_id: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part] if text or status == "completed" else []}


def reasoning_item(text: str, item_id: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def call_item(call_id: str, name: str, arguments: str, item_id: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}


def response_of(request: dict[str, Any], output: list[dict[str, Any]], usage: Usage | None, finish: str | None,
                response_id: str, created_at: int) -> dict[str, Any]:
    """The Response object of a translated answer (`usage`/`finish` None: still in progress)."""
    status = "in_progress" if finish is None else "incomplete" if finish == "length" else "completed"
    reasoning = as_dict(request.get("reasoning"))
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": request.get("model"), "output": output, "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}, "store": False,
        "text": {"format": as_dict(request.get("text")).get("format") or {"type": "text"}}, "truncation": "disabled",
        **{name: request.get(name, default) for name, default in ECHOED.items()},
        "usage": None if usage is None else responses_usage(usage),
    }


def output_of(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat completion's message as Response output items: reasoning, message, function calls."""
    choice = as_dict(as_list(completion.get("choices"))[0] if completion.get("choices") else {})
    message = as_dict(choice.get("message"))
    output = []
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(reasoning, "rs_" + random_string(24)))
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(message_item(message["content"], "msg_" + random_string(24)))
    for call in as_list(message.get("tool_calls")):
        function = as_dict(as_dict(call).get("function"))
        output.append(call_item(str(call.get("id")), str(function.get("name")), str(function.get("arguments") or "{}"),
                                "fc_" + random_string(24)))
    return output


class ResponsesWriter(chat.StreamWriter):
    """OpenAI chunks → the Responses API's typed events (Streaming events reference):
    response.created and response.in_progress, then per output item output_item.added, its
    deltas and their .done events and output_item.done, and response.completed (or
    response.incomplete) with the whole response and its usage. Every event has its
    sequence_number."""

    def __init__(self, exchange: chat.Exchange, request: dict[str, Any]) -> None:
        super().__init__(exchange)
        self.request = request
        self.sequence = 0
        self.response_id = "resp_" + random_string(24)
        self.created_at = int(time.time())
        self.started = False
        self.output: list[dict[str, Any]] = []
        self.open: tuple[str, int] | None = None  # (kind, tool call index or -1) of the item being written
        self.finish: str | None = None

    def _event(self, kind: str, **data: Any) -> bytes:
        payload = orjson.dumps({"type": kind, **data, "sequence_number": self.sequence})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"

    def _response(self, usage: Usage | None = None, finish: str | None = None) -> dict[str, Any]:
        return response_of(self.request, self.output, usage, finish, self.response_id, self.created_at)

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        snapshot = self._response()
        return [self._event("response.created", response=snapshot), self._event("response.in_progress", response=snapshot)]

    def _begin(self, kind: str, key: int, item: dict[str, Any]) -> list[bytes]:
        frames = self._close()
        self.open = (kind, key)
        self.output.append(item)
        index = len(self.output) - 1
        frames.append(self._event("response.output_item.added", output_index=index, item={**item}))
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            frames.append(self._event("response.content_part.added", item_id=item["id"], output_index=index,
                                      content_index=0, part=part))
        return frames

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        kind, _ = self.open
        self.open = None
        index, item = len(self.output) - 1, self.output[-1]
        where = {"item_id": item["id"], "output_index": index}
        frames = []
        if kind == "message":
            item.update(message_item(item["_text"], item["id"]))
            part = item["content"][0]
            frames += [self._event("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]),
                       self._event("response.content_part.done", **where, content_index=0, part=part)]
        elif kind == "reasoning":
            item.update(reasoning_item(item["_text"], item["id"]))
            frames.append(self._event("response.reasoning_text.done", **where, content_index=0, text=item["_text"]))
        else:
            item["status"] = "completed"
            frames.append(self._event("response.function_call_arguments.done", **where, name=item["name"],
                                      arguments=item["arguments"]))
        item.pop("_text", None)
        frames.append(self._event("response.output_item.done", output_index=index, item=item))
        return frames

    def _text(self, kind: str, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if self.open != (kind, -1):
            item_id = ("msg_" if kind == "message" else "rs_") + random_string(24)
            item = message_item("", item_id, "in_progress") if kind == "message" else {"type": "reasoning", "id": item_id, "summary": []}
            frames += self._begin(kind, -1, item)
        item = self.output[-1]
        item["_text"] = str(item.get("_text", "")) + text
        where = {"item_id": item["id"], "output_index": len(self.output) - 1, "content_index": 0}
        if kind == "message":
            return [*frames, self._event("response.output_text.delta", **where, delta=text, logprobs=[])]
        return [*frames, self._event("response.reasoning_text.delta", **where, delta=text)]

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        function = as_dict(call.get("function"))
        key = call["index"] if _is_int(call.get("index")) else 0
        frames: list[bytes] = []
        if self.open != ("function_call", key):
            item = call_item(str(call.get("id") or "call_" + random_string(24)), str(function.get("name") or ""), "",
                             "fc_" + random_string(24), "in_progress")
            frames += self._begin("function_call", key, item)
        item = self.output[-1]
        if isinstance(function.get("arguments"), str) and function["arguments"]:
            item["arguments"] += function["arguments"]
            frames.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=len(self.output) - 1, delta=function["arguments"]))
        return frames

    def frames(self, item: StreamItem) -> list[bytes]:
        chunk = orjson.loads(item) if isinstance(item, bytes) else item
        frames = self._start()
        for choice in as_list(as_dict(chunk).get("choices"))[:1]:
            delta = as_dict(as_dict(choice).get("delta"))
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                frames += self._text("reasoning", reasoning)
            if isinstance(delta.get("content"), str) and delta["content"]:
                frames += self._text("message", delta["content"])
            for call in as_list(delta.get("tool_calls")):
                frames += self._tool_call(as_dict(call))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return frames

    def end(self) -> list[bytes]:
        frames = [*self._start(), *self._close()]
        final = self._response(self.exchange.usage, self.finish or "stop")
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*frames, self._event(kind, response=final)]

    def error(self, error: GatewayError) -> bytes:
        return self._event("error", code=error.code, message=error.message, param=error.param)


class ResponsesStream(StreamTranslator):
    """Reads OpenAI's own Responses events for the usage and the outcome; the events themselves
    go to the client as they came. The writer of what the gateway adds after them (an error
    event) numbers on from the last sequence_number that went out."""

    def __init__(self, writer: "ResponsesWriter", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writer = writer

    def feed(self, event: str, data: str) -> list[StreamItem]:
        payload = load_event(data)
        kind = payload.get("type") or event
        if _is_int(payload.get("sequence_number")):
            self.writer.sequence = payload["sequence_number"] + 1
        if kind.endswith(".delta"):
            self.state.chunks += 1
        elif kind in ("response.completed", "response.incomplete"):
            response = as_dict(payload.get("response"))
            self.state.usage = usage_from(response.get("usage"))
            self.state.finish_reason = _finish_of(response)
        elif kind == "response.failed":
            response = as_dict(payload.get("response"))
            self.state.usage = usage_from(response.get("usage"))
            self.state.error = str(as_dict(response.get("error")).get("message") or "the response failed")
        elif kind == "error":
            self.state.error = str(payload.get("message") or "the provider reported an error")
        return []


class ResponsesApi(chat.ChatApi):
    """The Responses API over the chat machinery: native to OpenAI itself (other hosts that
    speak chat completions do not all serve /responses)."""

    endpoint = "responses"
    native_format = "openai"

    def is_native(self, candidate: routing.Candidate, parsed: chat.Parsed) -> bool:
        return candidate.offer.provider == "openai"

    def parse(self, raw: bytes) -> chat.Parsed:
        body = chat.load_json(raw)
        validate(body)
        request = ChatRequest()
        translated = request.translate(body)
        refusal = None
        if request.problem is not None:
            param, what = request.problem
            refusal = bad_param(param, f"{what} reaches only OpenAI's own models; the model this request went to "
                                       "answers through chat completions, which has no counterpart for it")
        return chat.translation(translated, body, refusal)

    def native_call(self, parsed: chat.Parsed, candidate: routing.Candidate, max_tokens: int | None,
                    stream: bool) -> UpstreamCall:
        assert parsed.native is not None  # parse sets it
        body = {**parsed.native, "model": candidate.offer.upstream_model}
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
        return UpstreamCall(url=f"{candidate.base_url.rstrip('/')}/responses",
                            headers={"Authorization": f"Bearer {candidate.token}", "Content-Type": "application/json"},
                            body=orjson.dumps(body))

    def native_answer(self, data: Any, exchange: chat.Exchange) -> tuple[dict[str, Any], Usage | None, str]:
        if not isinstance(data, dict) or not isinstance(data.get("output"), list):
            raise UpstreamFormatError("the provider's answer has no output")
        return data, usage_from(data.get("usage")), _finish_of(data)

    def native_stream(self, model: str, writer: chat.StreamWriter) -> StreamTranslator:
        assert isinstance(writer, ResponsesWriter)  # self.writer made it
        return ResponsesStream(writer, model=model, completion_id="", created=0, include_usage=False)

    def answer(self, completion: dict[str, Any], exchange: chat.Exchange) -> dict[str, Any]:
        choice = as_dict(as_list(completion.get("choices"))[0] if completion.get("choices") else {})
        request = self._request(exchange)
        return response_of(request, output_of(completion), exchange.usage, choice.get("finish_reason") or "stop",
                           "resp_" + random_string(24), int(time.time()))

    def writer(self, exchange: chat.Exchange) -> chat.StreamWriter:
        return ResponsesWriter(exchange, self._request(exchange))

    def _request(self, exchange: chat.Exchange) -> dict[str, Any]:
        return exchange.client_request or {"model": exchange.requested_model}


RESPONSES = ResponsesApi()
