"""OpenAI Chat Completions, and every OpenAI-compatible host: a passthrough.

The request goes up as the client sent it (with the provider's model id, and usage asked
for when streaming); chunks come back byte for byte, read only for usage and finish reason.
"""

from typing import Any

import orjson

from gateway.tokens import Usage, clean_count
from gateway.wire.base import StreamItem, StreamTranslator, UpstreamCall, UpstreamFormatError, WireFormat


def _details(data: dict[str, Any], name: str) -> dict[str, Any]:
    details = data.get(name)
    return details if isinstance(details, dict) else {}


def usage_from(data: Any) -> Usage | None:
    """OpenAI's usage object (cached and reasoning tokens in its details; DeepSeek's own
    `prompt_cache_hit_tokens` where a host reports cache reads that way)."""
    if not isinstance(data, dict):
        return None
    cached = clean_count(_details(data, "prompt_tokens_details").get("cached_tokens")) or clean_count(
        data.get("prompt_cache_hit_tokens"))
    prompt, completion = clean_count(data.get("prompt_tokens")), clean_count(data.get("completion_tokens"))
    reasoning = clean_count(_details(data, "completion_tokens_details").get("reasoning_tokens"))
    audio = clean_count(_details(data, "prompt_tokens_details").get("audio_tokens"))
    if reasoning and clean_count(data.get("total_tokens")) == prompt + completion + reasoning:
        completion += reasoning  # xAI counts reasoning apart from completion_tokens, and bills it as output
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached, reasoning_tokens=reasoning,
                 audio_tokens=audio)


class OpenAIStream(StreamTranslator):
    """Passes an OpenAI-compatible host's chunks through, normalised to the shape the openai
    SDK expects (OpenAI's chat streaming reference): the first chunk's delta carries the
    role, usage comes in its own final chunk with `choices: []` (some hosts put it on the
    finish chunk instead), and the gateway sends `[DONE]` last. Chunks that need no change
    go through as the host's bytes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._started = False
        self._usage_sent = False
        self._late_usage: dict[str, Any] | None = None  # a usage chunk to send at the end

    def feed(self, event: str, data: str) -> list[StreamItem]:
        if data.strip() == "[DONE]":
            return []  # the gateway ends the stream itself, after the usage chunk
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamFormatError("the provider sent an event that is not JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamFormatError("the provider sent an event that is not a JSON object")
        if chunk.get("error"):
            self.state.error = FORMAT.error_message(200, chunk)
            return []
        usage = usage_from(chunk.get("usage"))
        if usage is not None:
            self.state.usage = usage
        choices = chunk.get("choices")
        if not (isinstance(choices, list) and choices):
            if usage is None:
                return []  # neither content nor usage: nothing for the client
            self._usage_sent = True
            if not self.include_usage:
                return []  # the usage-only chunk we asked for, which this client did not
            self.state.chunks += 1
            return [chunk]  # parsed: the gateway adds the cost to it
        self.state.chunks += 1
        reason = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
        if reason:
            self.state.finish_reason = reason
        changed = self._with_role(choices)
        if usage is not None:  # usage on a content chunk: it goes out in its own chunk at the end
            self._late_usage = {**chunk, "choices": [], "usage": chunk["usage"]}
            chunk["usage"] = None
            changed = True
        return [chunk] if changed else [data.encode()]

    def _with_role(self, choices: list[Any]) -> bool:
        """Puts the assistant role on the first chunk's delta when the host left it out."""
        if self._started:
            return False
        self._started = True
        delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
        if isinstance(delta, dict) and "role" not in delta:
            delta["role"] = "assistant"
            return True
        return False

    def finish(self) -> list[StreamItem]:
        if self._late_usage is None or self._usage_sent or not self.include_usage:
            return []
        self._usage_sent = True
        return [self._late_usage]


class OpenAIFormat(WireFormat):
    name = "openai"

    def build_call(self, *, body: dict[str, Any], upstream_model: str, base_url: str, token: str, stream: bool) -> UpstreamCall:
        payload = dict(body, model=upstream_model)
        if stream:
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return UpstreamCall(
            url=f"{base_url}/chat/completions",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            body=orjson.dumps(payload),
        )

    def parse_response(
        self, data: dict[str, Any], *, model: str, completion_id: str, created: int
    ) -> tuple[dict[str, Any], Usage, str | None]:
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamFormatError("the provider's answer has no choices")
        usage = usage_from(data.get("usage"))
        if usage is None:
            usage = Usage()
        given: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        ours = usage.as_openai()
        for details in ("prompt_tokens_details", "completion_tokens_details"):  # keep what else the provider said
            if isinstance(given.get(details), dict):
                ours[details] = {**given[details], **ours[details]}
        data["usage"] = {**given, **ours}
        choice = data["choices"][0] if data["choices"] else {}
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        return data, usage, reason

    def stream_translator(self, *, model: str, completion_id: str, created: int, include_usage: bool) -> StreamTranslator:
        return OpenAIStream(model=model, completion_id=completion_id, created=created, include_usage=include_usage)


FORMAT = OpenAIFormat()
