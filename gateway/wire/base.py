"""What every wire format provides, in OpenAI terms on the gateway's side.

The gateway speaks OpenAI Chat Completions to its clients. A wire format turns the client's
request into the provider's, and the provider's answer (whole, or as SSE events) back into
OpenAI's shapes, with the provider's real token counts.
"""

from dataclasses import dataclass, field
from typing import Any

from gateway.tokens import Usage


class UpstreamFormatError(Exception):
    """The provider answered something this format cannot read (bad JSON, a bad event)."""


@dataclass
class UpstreamCall:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamState:
    """What a stream translator learned so far."""

    usage: Usage | None = None
    finish_reason: str | None = None
    error: str | None = None  # the provider reported an error inside the stream
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# What a stream translator hands back for the client: an OpenAI chunk to JSON-encode, or an
# already encoded `data:` payload to pass through.
StreamItem = dict[str, Any] | bytes


class StreamTranslator:
    """Feed it the provider's SSE events in order; it returns OpenAI chunk payloads.

    `feed(event, data)` gets the SSE event name (or "") and the raw `data:` text, and returns
    a list of items to send to the client: each is either a dict (an OpenAI
    `chat.completion.chunk`, to be JSON-encoded) or bytes (an already encoded `data:` payload,
    passed through untouched). `state` holds usage and finish reason as they become known.
    """

    def __init__(self, *, model: str, completion_id: str, created: int, include_usage: bool):
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.state = StreamState()

    def feed(self, event: str, data: str) -> list[StreamItem]:
        raise NotImplementedError

    def finish(self) -> list[StreamItem]:
        """Called once the upstream stream ended cleanly; the last items to send."""
        return []


class WireFormat:
    name = ""

    def build_call(self, *, body: dict[str, Any], upstream_model: str, base_url: str, token: str, stream: bool) -> UpstreamCall:
        """The provider's request for an OpenAI chat completion request `body`."""
        raise NotImplementedError

    def parse_response(
        self, data: dict[str, Any], *, model: str, completion_id: str, created: int
    ) -> tuple[dict[str, Any], Usage, str | None]:
        """The provider's JSON answer → (OpenAI chat.completion dict, usage, finish reason).
        Raises UpstreamFormatError when the answer is not what the format promises."""
        raise NotImplementedError

    def stream_translator(self, *, model: str, completion_id: str, created: int, include_usage: bool) -> StreamTranslator:
        raise NotImplementedError

    def error_message(self, status: int, data: Any) -> str:
        """A short human reason from the provider's error answer (parsed JSON or None)."""
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and isinstance(message := error.get("message"), str):
                return message[:500]
            if isinstance(error, str):
                return error[:500]
            if isinstance(message := data.get("message"), str):
                return message[:500]
        return f"the provider answered HTTP {status}"


class SSEDecoder:
    """Bytes from an SSE stream → (event, data) pairs, across arbitrary chunk boundaries.

    Caps a single event's size so a provider cannot make us buffer without end."""

    MAX_EVENT_BYTES = 4 * 1024 * 1024

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buffer += chunk
        if len(self._buffer) > self.MAX_EVENT_BYTES:
            raise UpstreamFormatError("an upstream event exceeded the size limit")
        events = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            line = self._buffer[:newline].rstrip(b"\r").decode("utf-8", "replace")
            self._buffer = self._buffer[newline + 1 :]
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data, self._size = "", [], 0
            elif line.startswith(":"):
                continue  # a comment (keep-alive)
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    self._size += len(value)
                    if self._size > self.MAX_EVENT_BYTES:
                        raise UpstreamFormatError("an upstream event exceeded the size limit")
                    self._data.append(value)
                elif name == "event":
                    self._event = value
        return events

    def close(self) -> list[tuple[str, str]]:
        """The last event when the stream ended without a blank line."""
        tail = self.feed(b"\n\n") if (self._buffer or self._data) else []
        return tail
