"""Just enough ASGI for /v1: read a capped body, answer JSON, stream SSE.

/v1 bypasses Django's request machinery on purpose: it is on the path of every customer
call, and needs none of sessions, CSRF, templates or middleware.
"""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from gateway.errors import GatewayError

# ASGI, as far as /v1 needs it: servers hand over plain dicts.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
]


def header(scope: Scope, name: bytes) -> str | None:
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it is known to exceed `limit`."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body exceeds the limit of {limit} bytes.", "request_too_large")


def encode_headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs from a dict (names lowercased)."""
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in extra.items()]



async def send_json(send: Send, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    await send({"type": "http.response.start", "status": status, "headers": [JSON, *encode_headers(headers or {})]})
    await send({"type": "http.response.body", "body": payload})


async def send_error(send: Send, error: GatewayError, headers: dict[str, str] | None = None,
                     shape: Callable[[GatewayError], dict[str, Any]] = GatewayError.body) -> None:
    """The error as an HTTP answer, in the endpoint's error shape (OpenAI's unless told)."""
    await send_json(send, error.status, shape(error), {**(headers or {}), **error.headers})


async def start_sse(send: Send, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *encode_headers(headers)]})


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def sse_frame(event: str, data: str) -> bytes:
    """An SSE event as the provider sent it: its name (if any) and its data, line by line."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (f"event: {event}\n{lines}\n" if event else f"{lines}\n").encode()


async def end_sse(send: Send, last: bytes = b"") -> None:
    await send({"type": "http.response.body", "body": last, "more_body": False})
