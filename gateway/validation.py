"""The OpenAI chat completion request, checked before anything is spent on it: each
problem is a 400 naming the parameter, as OpenAI names it."""

from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayError

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
PART_TYPES = {"text", "image_url", "input_audio", "file"}


def bad_param(param: str, message: str) -> GatewayError:
    """OpenAI's 400 naming the parameter at fault: "Invalid '<param>': <message>"."""
    return GatewayError(400, f"Invalid '{param}': {message}", "invalid_request_error", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_part(param: str, part: Any) -> None:
    if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
        raise bad_param(f"{param}.type", f"must be one of {', '.join(sorted(PART_TYPES))}")
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        raise bad_param(f"{param}.text", "must be a string")
    if part["type"] == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise bad_param(f"{param}.image_url.url", "must be a URL or a data: URL")


def _check_message(index: int, message: Any) -> None:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise bad_param(param, "must be an object with a role and content")
    role = message.get("role")
    if role not in ROLES:
        raise bad_param(f"{param}.role", f"must be one of {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise bad_param(f"{param}.content", "is required")
    if isinstance(content, list):
        if not content:
            raise bad_param(f"{param}.content", "must not be an empty list")
        for j, part in enumerate(content):
            _check_part(f"{param}.content[{j}]", part)
    elif not isinstance(content, str):
        raise bad_param(f"{param}.content", "must be a string or a list of content parts")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise bad_param(f"{param}.tool_call_id", "is required for tool messages")


# Optional parameters: (name, check, what the check wants). Built once, not per request.
_OPTIONAL: list[tuple[str, Callable[[Any], bool], str]] = [
    ("stream", lambda v: isinstance(v, bool), "must be a boolean"),
    ("stream_options", lambda v: isinstance(v, dict), "must be an object"),
    ("max_tokens", lambda v: _is_int(v) and v >= 1, "must be a positive integer"),
    ("max_completion_tokens", lambda v: _is_int(v) and v >= 1, "must be a positive integer"),
    ("temperature", lambda v: _is_number(v) and 0 <= v <= 2, "must be a number from 0 to 2"),
    ("top_p", lambda v: _is_number(v) and 0 <= v <= 1, "must be a number from 0 to 1"),
    ("n", lambda v: _is_int(v) and 1 <= v <= 128, "must be an integer from 1 to 128"),
    ("seed", _is_int, "must be an integer"),
    ("user", lambda v: isinstance(v, str), "must be a string"),
    ("reasoning_effort", lambda v: v in ("none", "minimal", "low", "medium", "high"),
     "must be one of none, minimal, low, medium, high"),
    ("stop", lambda v: isinstance(v, str) or (isinstance(v, list) and len(v) <= 4 and all(isinstance(s, str) for s in v)),
     "must be a string or a list of up to 4 strings"),
    ("tools", lambda v: isinstance(v, list) and all(
        isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str) for t in v
    ), "must be a list of function tools, each with function.name"),
    ("tool_choice", lambda v: v in ("none", "auto", "required") or isinstance(v, dict),
     "must be none, auto, required or a named function"),
    ("response_format", lambda v: isinstance(v, dict) and isinstance(v.get("type"), str), "must be an object with a type"),
]


# Parameters the provider bills beyond text tokens (OpenAI's service tiers, web search, audio
# output, predicted outputs), which the gateway cannot price yet: refused with a 400 naming
# them, rather than forwarded and billed at text rates, which a spend limit would not hold.
_UNPRICED = ("web_search_options", "audio", "prediction")
_PRICED_TIERS = {"auto", "default"}


def _check_priced(body: dict[str, Any]) -> None:
    for name in _UNPRICED:
        if body.get(name) is not None:
            raise bad_param(name, "is billed by the provider at rates this gateway cannot price yet; leave it out")
    tier = body.get("service_tier")
    if tier is not None and tier not in _PRICED_TIERS:
        raise bad_param("service_tier", "only 'auto' or 'default' is supported: other tiers are priced differently")
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or set(modalities) - {"text"}):
        raise bad_param("modalities", "only ['text'] is supported: audio output is priced differently")


def _check_optional(body: dict[str, Any]) -> None:
    for name, ok, message in _OPTIONAL:
        value = body.get(name)
        if value is not None and not ok(value):
            raise bad_param(name, message)
    _check_priced(body)


def check_model(body: Any, example: str) -> None:
    """A JSON object with a `model` id (any endpoint's first check); `example` shows one."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise bad_param("model", f"a model id is required, e.g. {example}")


def validate_chat(body: Any) -> None:
    check_model(body, "'gpt-4o-mini' or 'openai/gpt-4o-mini'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "must be a non-empty list of messages")
    for i, message in enumerate(messages):
        _check_message(i, message)
    _check_optional(body)
