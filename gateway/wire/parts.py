"""Pieces of OpenAI requests and provider answers that the translating formats (Anthropic,
Google) read the same way."""

from typing import Any

import orjson

from gateway.wire.base import UpstreamFormatError


def as_dict(value: Any) -> dict[str, Any]:
    """The value when it is a JSON object, else an empty one: providers' odd shapes must not crash us."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def text_of(content: Any) -> str:
    """The text of an OpenAI message content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    texts = [p.get("text") for p in as_list(content) if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(t for t in texts if isinstance(t, str) and t)


def split_data_url(url: str) -> tuple[str, str] | None:
    """`data:image/png;base64,AAAA` → ("image/png", "AAAA"); None for anything else."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    params = header.split(";")
    if not comma or "base64" not in params[1:]:
        return None
    return params[0] or "application/octet-stream", data


def stop_sequences(stop: Any) -> list[str]:
    values = [stop] if isinstance(stop, str) else as_list(stop)
    return [s for s in values if isinstance(s, str) and s]


def load_event(data: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamFormatError("the provider sent an event that is not JSON") from None
    if not isinstance(payload, dict):
        raise UpstreamFormatError("the provider sent an event that is not a JSON object")
    return payload


def parsed_arguments(arguments: Any) -> dict[str, Any]:
    """OpenAI sends tool arguments as a JSON string; Anthropic and Gemini want the object."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments) if isinstance(arguments, (str, bytes)) else None
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {}
