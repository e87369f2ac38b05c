"""POST /v1/embeddings: OpenAI's embeddings request and answer
(https://platform.openai.com/docs/api-reference/embeddings), for OpenAI, Mistral, Together and
custom providers (the same wire, passed through) and Google AI Studio (translated to
batchEmbedContents: https://ai.google.dev/api/embeddings#method:-models.batchembedcontents).

Everything around the call is the chat path's: auth, IAM rules, modes, the spend
reservation (an embedding has no output: its worst case is its input, one token per byte),
the response cache and the usage log (endpoint "embeddings").
"""

import base64
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson

from gateway import chat, http, routing
from gateway.content import Capture
from gateway.errors import GatewayError
from gateway.snapshot import KeySnapshot
from gateway.tokens import Usage, clean_count
from gateway.upstream import read_json
from gateway.validation import bad_param, check_model
from gateway.wire.base import UpstreamCall, WireFormat

MAX_INPUTS = 2048  # OpenAI's limit of inputs per request


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def validate(body: Any) -> None:
    """OpenAI's embeddings parameters, each problem a 400 naming it."""
    check_model(body, "'text-embedding-3-small'")
    value = body.get("input")
    texts = [value] if isinstance(value, str) or (_is_tokens(value) and value) else value
    if not isinstance(texts, list) or not texts or len(texts) > MAX_INPUTS:
        raise bad_param("input", f"must be a string, a list of 1 to {MAX_INPUTS} strings, or token arrays")
    for i, item in enumerate(texts):
        if not (isinstance(item, str) and item) and not (_is_tokens(item) and item):
            raise bad_param(f"input[{i}]", "must be a non-empty string or array of token ids")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise bad_param("encoding_format", "must be float or base64")
    dimensions = body.get("dimensions")
    if dimensions is not None and not (isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0):
        raise bad_param("dimensions", "must be a positive integer")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise bad_param("user", "must be a string")


def _inputs(body: dict[str, Any]) -> list[Any]:
    value = body["input"]
    return [value] if isinstance(value, str) or (_is_tokens(value) and value) else value


# --- Google AI Studio ---------------------------------------------------------------------------


def _google_call(body: dict[str, Any], model: str, base_url: str, token: str) -> UpstreamCall:
    name = "models/" + model.removeprefix("models/")
    requests = []
    for i, item in enumerate(_inputs(body)):
        if not isinstance(item, str):
            raise bad_param(f"input[{i}]", "Google AI Studio embeds text only, not token arrays")
        request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": item}]}}
        if body.get("dimensions"):
            request["outputDimensionality"] = body["dimensions"]
        requests.append(request)
    return UpstreamCall(
        url=f"{base_url}/v1beta/{quote(name, safe='/')}:batchEmbedContents",
        headers={"x-goog-api-key": token, "content-type": "application/json"},
        body=orjson.dumps({"requests": requests}),
    )


def _as_base64(values: list[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def _from_google(data: Any, body: dict[str, Any], model: str, estimate: int) -> tuple[dict[str, Any], Usage]:
    """batchEmbedContents' {"embeddings": [{"values": [...]}]} → OpenAI's list. Google reports
    no token count for embeddings: the usage is the gateway's estimate (4 bytes a token)."""
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list):
        raise GatewayError(502, "The provider's answer has no embeddings.", "upstream_error")
    as_base64 = body.get("encoding_format") == "base64"
    out = []
    for i, item in enumerate(embeddings):
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise GatewayError(502, "The provider's answer has an embedding without values.", "upstream_error")
        out.append({"object": "embedding", "index": i, "embedding": _as_base64(values) if as_base64 else values})
    usage = Usage(estimate, 0)
    return {"object": "list", "data": out, "model": model, "usage": {"prompt_tokens": estimate, "total_tokens": estimate}}, usage


def _from_openai(data: Any) -> tuple[dict[str, Any], Usage]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise GatewayError(502, "The provider's answer has no embeddings.", "upstream_error")
    usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
    return data, Usage(clean_count(usage.get("prompt_tokens")), 0)


def _estimate(body: dict[str, Any]) -> int:
    return sum(max(1, len(i.encode()) // 4) if isinstance(i, str) else len(i) for i in _inputs(body))


# --- the handler ---------------------------------------------------------------------------------


async def handle(exchange: chat.Exchange, raw: bytes, send: http.Send, on_stream: Callable[[], None] | None = None,
                 reload: chat.Reload | None = None) -> None:
    """Answers one embeddings request (the caller concludes the exchange, as for chat)."""
    exchange.endpoint = "embeddings"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise GatewayError(400, f"The request body is not valid JSON: {e}", "invalid_request_error") from None
    validate(body)
    fallbacks = chat.fallback_models(body.pop("models", None))  # the gateway's own field: never sent on
    if exchange.snapshot.log_content:
        exchange.content = Capture("embeddings", body)
    exchange.requested_model = body["model"]
    exchange.user = body.get("user") or ""
    exchange.prompt_estimate = _estimate(body)
    def route(snapshot: KeySnapshot, model: str) -> list[routing.Candidate]:
        return chat.with_fallbacks(snapshot, model, fallbacks, routing.embedding_candidates)

    candidates = await chat.admit(exchange, raw, body, send, reload, route)
    if candidates is None:
        return  # answered from the cache
    data, usage = await _call(exchange, candidates, body)
    exchange.usage = usage if usage.prompt_tokens else Usage(exchange.prompt_estimate, 0)
    exchange.first_byte_at = time.monotonic()
    chat.price(exchange)
    # The usage billed: the provider's count, or the estimate when it sent none it could read.
    billed = exchange.usage.prompt_tokens
    data["usage"] = {"prompt_tokens": billed, "total_tokens": billed, "cost": float(exchange.cost.total)}
    payload = orjson.dumps(data)
    if exchange.content is not None:
        exchange.content.answered(data)
    await chat.conclude(exchange)  # recorded before the answer goes out
    exchange.response_started = exchange.finished = True
    await http.send_json(send, 200, payload, chat.response_headers(exchange))
    await chat.keep(exchange, {"body": payload.decode()})


async def _call(exchange: chat.Exchange, candidates: list[routing.Candidate], body: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    """The first provider's embeddings (chat.first_answer: the next is tried on a retryable
    failure), in OpenAI's shape, with the usage it reports."""
    def call_for(candidate: routing.Candidate, wire: WireFormat) -> UpstreamCall:
        model = candidate.offer.upstream_model
        if wire.name == "google":
            return _google_call(body, model, candidate.base_url, candidate.token)
        return UpstreamCall(url=f"{candidate.base_url.rstrip('/')}/embeddings",
                            headers={"Authorization": f"Bearer {candidate.token}", "Content-Type": "application/json"},
                            body=orjson.dumps({**body, "model": model}))

    wire, response = await chat.first_answer(exchange, candidates, call_for)
    assert exchange.candidate is not None  # set by first_answer
    try:
        data = await read_json(response, exchange.candidate.token)
    finally:
        response.close()
    if wire.name == "google":
        return _from_google(data, body, body["model"], exchange.prompt_estimate)
    return _from_openai(data)
