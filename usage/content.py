"""A log's kept content (usage.LogContent, made by gateway/content.py) in one shape for the
log detail page, whatever API the request came through: messages with a role and parts.

A part is one of
  {"kind": "text", "text"}            {"kind": "reasoning", "text"}
  {"kind": "image" | "audio" | "file", "label", "url"?}   (a reference: never the data)
  {"kind": "tool_call", "id", "name", "arguments"}        {"kind": "tool_result", "id", "text"}
  {"kind": "other", "json"}           {"kind": "truncated", "text"}
Every value is the tenant's own text: the template escapes it.
"""

from typing import Any

import orjson


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return str(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _size(count: Any) -> str:
    if not isinstance(count, int):
        return "? bytes"
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _attachment(kind: str, value: Any, name: Any = None) -> dict[str, Any]:
    """A picture, sound or file: a kept reference, a URL, or an id of the provider's."""
    ref = _dict(value)
    if "sha256" in ref:
        label = f"{ref.get('media_type', '')} · {_size(ref.get('bytes'))} · sha256 {str(ref['sha256'])[:16]}…"
        return {"kind": ref.get("type") if ref.get("type") in ("image", "audio", "file") else kind,
                "label": (f"{name} · " if isinstance(name, str) and name else "") + label}
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return {"kind": kind, "label": value, "url": value}
    return {"kind": kind, "label": (f"{name} · " if isinstance(name, str) and name else "") + _text(value)}


def _truncated(block: dict[str, Any]) -> dict[str, Any] | None:
    if block.get("type") == "truncated":
        return {"kind": "truncated", "text": f"{block.get('omitted')} more items not kept (size cap)"}
    return None


# --- requests ------------------------------------------------------------------------------------


def _chat_part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"kind": "text", "text": part}
    part = _dict(part)
    kind = part.get("type")
    if kind == "text":
        return {"kind": "text", "text": _text(part.get("text"))}
    if kind == "image_url":
        image = part.get("image_url")
        return _attachment("image", _dict(image).get("url") if isinstance(image, dict) else image)
    if kind == "input_audio":
        return _attachment("audio", _dict(part.get("input_audio")).get("data"))
    if kind == "file":
        file = _dict(part.get("file"))
        return _attachment("file", file.get("file_data") or file.get("file_id"), file.get("filename"))
    return _truncated(part) or {"kind": "other", "json": _json(part)}


def _chat_messages(messages: list[Any]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        message = _dict(message)
        if (cut := _truncated(message)) is not None:
            out.append({"role": "…", "parts": [cut]})
            continue
        role = str(message.get("role") or "?")
        content = message.get("content")
        parts: list[dict[str, Any]] = [_chat_part(p) for p in _list(content)] if isinstance(content, list) else (
            [{"kind": "text", "text": content}] if isinstance(content, str) and content else [])
        if role == "tool":
            parts = [{"kind": "tool_result", "id": message.get("tool_call_id"),
                      "text": "\n".join(p.get("text") or p.get("label") or p.get("json") or "" for p in parts)}]
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.insert(0, {"kind": "reasoning", "text": reasoning})
        for call in map(_dict, _list(message.get("tool_calls"))):
            function = _dict(call.get("function"))
            parts.append({"kind": "tool_call", "id": call.get("id"), "name": function.get("name"),
                          "arguments": _text(function.get("arguments"))})
        out.append({"role": role, "parts": parts})
    return out


def _anthropic_part(block: Any) -> dict[str, Any]:
    if isinstance(block, str):
        return {"kind": "text", "text": block}
    block = _dict(block)
    kind = block.get("type")
    if kind == "text":
        return {"kind": "text", "text": _text(block.get("text"))}
    if kind in ("image", "document"):
        source = _dict(block.get("source"))  # the gateway put a reference in place of base64 data
        if "sha256" in source:
            return _attachment("image" if kind == "image" else "file", source, block.get("title"))
        value = source.get("url") or source.get("file_id") or source.get("data") or source
        return _attachment("image" if kind == "image" else "file", value, block.get("title"))
    if kind == "tool_use":
        return {"kind": "tool_call", "id": block.get("id"), "name": block.get("name"), "arguments": _json(block.get("input"))}
    if kind == "tool_result":
        content = block.get("content")
        text = content if isinstance(content, str) else "\n".join(
            p.get("text") or p.get("label") or p.get("json") or "" for p in map(_anthropic_part, _list(content)))
        return {"kind": "tool_result", "id": block.get("tool_use_id"), "text": ("Error: " if block.get("is_error") else "") + text}
    if kind == "thinking":
        return {"kind": "reasoning", "text": _text(block.get("thinking"))}
    return _truncated(block) or {"kind": "other", "json": _json(block)}


def _anthropic(request: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    system = request.get("system")
    if system:
        parts = [{"kind": "text", "text": system}] if isinstance(system, str) else [_anthropic_part(b) for b in _list(system)]
        out.append({"role": "system", "parts": parts})
    for message in map(_dict, _list(request.get("messages"))):
        if (cut := _truncated(message)) is not None:
            out.append({"role": "…", "parts": [cut]})
            continue
        content = message.get("content")
        parts = [_anthropic_part(b) for b in _list(content)] if isinstance(content, list) else [
            {"kind": "text", "text": _text(content)}]
        out.append({"role": str(message.get("role") or "?"), "parts": parts})
    return out


def _responses_part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"kind": "text", "text": part}
    part = _dict(part)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"kind": "text", "text": _text(part.get("text"))}
    if kind == "input_image":
        return _attachment("image", part.get("image_url") or part.get("file_id"))
    if kind == "input_file":
        return _attachment("file", part.get("file_data") or part.get("file_url") or part.get("file_id"), part.get("filename"))
    if kind == "input_audio":
        return _attachment("audio", _dict(part.get("input_audio")).get("data"))
    if kind == "refusal":
        return {"kind": "text", "text": _text(part.get("refusal"))}
    return _truncated(part) or {"kind": "other", "json": _json(part)}


def _responses(request: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if isinstance(request.get("instructions"), str) and request["instructions"]:
        out.append({"role": "system", "parts": [{"kind": "text", "text": request["instructions"]}]})
    value = request.get("input")
    if isinstance(value, str):
        return [*out, {"role": "user", "parts": [{"kind": "text", "text": value}]}]
    for item in map(_dict, _list(value)):
        kind = item.get("type")
        if (cut := _truncated(item)) is not None:
            out.append({"role": "…", "parts": [cut]})
        elif kind in (None, "message"):
            content = item.get("content")
            parts = [_responses_part(p) for p in _list(content)] if isinstance(content, list) else [
                {"kind": "text", "text": _text(content)}]
            out.append({"role": str(item.get("role") or "user"), "parts": parts})
        elif kind == "function_call":
            out.append({"role": "assistant", "parts": [{"kind": "tool_call", "id": item.get("call_id"), "name": item.get("name"),
                                                        "arguments": _text(item.get("arguments"))}]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "parts": [{"kind": "tool_result", "id": item.get("call_id"),
                                                   "text": _text(item.get("output"))}]})
        elif kind == "reasoning":
            text = "".join(p.get("text", "") for p in map(_responses_part, _list(item.get("content")) or _list(item.get("summary"))))
            out.append({"role": "assistant", "parts": [{"kind": "reasoning", "text": text}]})
        else:
            out.append({"role": str(item.get("role") or "item"), "parts": [{"kind": "other", "json": _json(item)}]})
    return out


def _embeddings(request: dict[str, Any]) -> list[dict[str, Any]]:
    value = request.get("input")
    items = [value] if isinstance(value, str) else _list(value)
    if items and all(isinstance(i, int) for i in items):
        items = [items]  # one array of token ids
    parts = [{"kind": "text", "text": i} if isinstance(i, str) else (_truncated(_dict(i)) or {"kind": "other", "json": _json(i)})
             for i in items]
    return [{"role": "input", "parts": parts}]


def _tool_names(tools: Any) -> list[str]:
    names = []
    for tool in map(_dict, _list(tools)):
        name = tool.get("name") or _dict(tool.get("function")).get("name") or tool.get("type")
        if isinstance(name, str):
            names.append(name)
    return names


def request_messages(endpoint: str, request: Any) -> dict[str, Any]:
    """{"messages": [{"role", "parts"}], "tools": [names]} of a kept request."""
    request = _dict(request)
    if endpoint == "messages":
        messages = _anthropic(request)
    elif endpoint == "responses":
        messages = _responses(request)
    elif endpoint == "embeddings":
        messages = _embeddings(request)
    else:
        messages = _chat_messages(_list(request.get("messages")))
    return {"messages": messages, "tools": _tool_names(request.get("tools"))}


# --- answers -------------------------------------------------------------------------------------


def _answer_parts(answer: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if isinstance(answer.get("reasoning"), str) and answer["reasoning"]:
        parts.append({"kind": "reasoning", "text": answer["reasoning"]})
    if isinstance(answer.get("content"), str) and answer["content"]:
        parts.append({"kind": "text", "text": answer["content"]})
    for call in map(_dict, _list(answer.get("toolCalls"))):
        parts.append({"kind": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": _text(call.get("arguments"))})
    for other in _list(answer.get("other")):
        parts.append({"kind": "other", "json": _json(other)})
    return parts


def answer_messages(answer: Any) -> list[dict[str, Any]]:
    """The kept answer as messages (one per choice)."""
    answer = _dict(answer)
    if "embeddings" in answer:
        dimensions = answer.get("dimensions")
        text = f"{answer['embeddings']} embedding{'s' if answer['embeddings'] != 1 else ''}" + (
            f" of {dimensions} dimensions" if dimensions else "")
        return [{"role": "embeddings", "parts": [{"kind": "text", "text": text}]}]
    choices = _list(answer.get("choices")) or [answer]
    return [{"role": "assistant" + (f" (choice {i + 1})" if len(choices) > 1 else ""), "parts": _answer_parts(_dict(c))}
            for i, c in enumerate(choices)]
