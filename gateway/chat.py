"""POST /v1/chat/completions: route, reserve, call upstream (with fallback), answer or
stream, settle, and leave exactly one usage record behind.

The record is settled with the reservation in one step (`conclude`), before the answer's
last bytes go out: a request the client got a complete answer to is recorded, whatever
happens to this process next.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import aiohttp
import orjson
from django.conf import settings

from core import periods
from core.ids import random_string
from core.text import storable
from gateway import health, http, metrics, ratelimit, routing, usagelog
from gateway.allow import key_refusal
from gateway.cache import MAX_ENTRY_BYTES, cache_key, response_cache
from gateway.content import Capture
from gateway.errors import GatewayError
from gateway.pricing import (
    MIN_OUTPUT,
    ZERO_COST,
    Bound,
    Cost,
    choices,
    cost_of,
    fitting_output,
    from_nanos,
    media_of,
    prompt_cache_savings,
    requested_output,
    to_nanos,
    worst_case,
)
from gateway.providers import PROVIDERS
from gateway.record import UsageRecord
from gateway.snapshot import KeySnapshot
from gateway.store import INSUFFICIENT_CREDITS, OK, PERIOD_LIMIT, Account, MemoryStore, RedisStore, get_store
from gateway.tokens import Usage
from gateway.upstream import UpstreamFailure, open_response, read_chunk, read_json
from gateway.validation import validate_chat
from gateway.wire import for_format
from gateway.wire.base import SSEDecoder, StreamItem, StreamTranslator, UpstreamCall, UpstreamFormatError, WireFormat
from gateway.wire.openai import usage_from as openai_usage_from

DONE = b"data: [DONE]\n\n"
PERIOD_NAMES = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
# Holds of this process's requests in flight: renewed in the store until settled.
ACTIVE_HOLDS: set[str] = set()
log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)  # compared by identity: it is kept in a set while in flight
class Exchange:
    """One request's story, from arrival to its usage record."""

    snapshot: KeySnapshot
    request_id: str
    log_id: str = field(default_factory=lambda: "log_" + random_string(20))
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    requested_model: str = ""
    stream: bool = False
    candidate: routing.Candidate | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Cost = ZERO_COST
    first_byte_at: float | None = None
    finish_reason: str = ""
    status: int = 200
    error: str = ""
    canceled: bool = False
    cancel_reason: str | None = None  # "client" | "project_deleted", set by whoever cancels
    response_started: bool = False
    prompt_estimate: int = 0  # tokens, for billing a stream cut before the provider counted
    no_cache: bool = False  # the client sent x-no-cache: true
    cache_status: str = ""  # "hit" | "miss" | "skip" when the project caches
    cache_key: str = ""
    cached_entry: dict[str, Any] | None = None  # the stored answer a hit replayed
    stream_events: list[bytes] | None = None  # the SSE frames a cacheable stream sent, to store at its end
    stream_bytes: int = 0
    max_tokens_sent: int | None = None  # the output cap the gateway lowered the request to
    saved: Decimal = Decimal(0)  # USD the provider's prompt cache saved (cached reads below the input price)
    user: str = ""  # the request's `user`
    endpoint: str = "chat.completions"  # the API the client called (the usage log's `endpoint`)
    api: "ChatApi | None" = None  # the API the client speaks, once known (None: chat completions)
    client_request: dict[str, Any] | None = None  # the request as the client wrote it, when not a chat completion
    writer: "StreamWriter | None" = None  # what writes the stream's frames, once it streams
    finished: bool = False  # the whole answer went out: the client leaving now cancels nothing
    hold: str = field(default_factory=lambda: random_string(16))  # names its reservation in the store
    reservation: "Reservation | None" = None
    concluded: bool = False  # settled and recorded
    rate: ratelimit.Admitted | None = None  # what the key's rate limits counted, and their headers
    content: Capture | None = None  # what was asked and answered, when the project keeps it (gateway/content.py)

    def fail(self, error: GatewayError) -> None:
        self.status, self.error = error.status, error.message

    def served_by(self) -> tuple[str, str, str]:
        """(provider, model, mode) of the answer, fresh or from the cache."""
        if self.cached_entry is not None:
            e = self.cached_entry
            return e["provider"], e["model"], e["mode"]
        c = self.candidate
        return (c.provider, c.offer.model, c.mode) if c else ("", "", "")

    def record(self) -> UsageRecord:
        now = time.monotonic()
        c = self.candidate
        paid_with_credits = bool(c and c.paid_with_credits) and self.cached_entry is None
        provider, model, mode = self.served_by()
        return UsageRecord(
            id=self.log_id,
            request_id=self.request_id,
            project_id=self.snapshot.project_id,
            organization_id=self.snapshot.org_id,
            api_key_id=self.snapshot.key_id,
            created_at=self.created_at.isoformat(),
            requested_model=storable(self.requested_model, 200),
            used_model=model,
            used_provider=provider,
            used_mode=mode,
            paid_with_credits=paid_with_credits,
            streamed=self.stream,
            cached=self.cached_entry is not None,
            cache_status=self.cache_status,
            saved_cost=self.cached_entry["cost"] if self.cached_entry else str(self.saved),
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            total_tokens=self.usage.total_tokens,
            cost=str(self.cost.total),
            input_cost=str(self.cost.input),
            output_cost=str(self.cost.output),
            fee=str(self.cost.fee),
            duration=int((now - self.started) * 1000),
            time_to_first_token=int((self.first_byte_at - self.started) * 1000) if self.first_byte_at else None,
            finish_reason=storable(self.finish_reason or "", 32),
            status_code=self.status,
            has_error=self.status >= 400,
            error_message=storable(self.error, 2000),
            canceled=self.canceled,
            cached_tokens=self.usage.cached_tokens,
            cache_write_tokens=self.usage.cache_write_tokens,
            reasoning_tokens=self.usage.reasoning_tokens,
            priced=c is None or self.cached_entry is not None or c.offer.priced,
            user=storable(self.user, 256),
            endpoint=self.endpoint,
            content=self.content.content() if self.content is not None else None,
        )


def load_json(raw: bytes) -> Any:
    """The request body parsed, or a 400 saying why it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise GatewayError(400, f"The request body is not valid JSON: {e}", "invalid_request_error") from None


# --- the APIs clients speak ------------------------------------------------------------------------


@dataclass(slots=True)
class Parsed:
    """A request in the terms the machinery works in. `body` is it as a chat completion request
    (routing, the reservation's bound, and the call to a provider it is translated for);
    `native` is the client's own request, for providers that speak the client's API;
    `untranslatable` says why `body` cannot stand for it (then only native providers may serve)."""

    body: dict[str, Any]
    native: dict[str, Any] | None = None
    untranslatable: GatewayError | None = None
    fallbacks: tuple[str, ...] = ()  # models to try, in order, when `body["model"]` cannot answer


def translation(body: dict[str, Any], native: dict[str, Any], untranslatable: GatewayError | None) -> Parsed:
    """A client's request and its chat completion translation, which must pass chat's own checks
    to be sent as one (when it does not, only providers of the client's API may serve it). The
    client's fallback `models` are taken out of its request: no provider is sent them."""
    fallbacks = fallback_models(native.pop("models", None))
    if untranslatable is None:
        try:
            validate_chat(body)
        except GatewayError as e:
            untranslatable = e
    return Parsed(body, native, untranslatable, fallbacks)


class StreamWriter:
    """OpenAI chat.completion.chunk items → the SSE frames (bytes, each ending in a blank line)
    the client's API streams. Chat completions: each chunk as a `data:` event (a usage chunk
    with its cost), then `data: [DONE]`."""

    def __init__(self, exchange: "Exchange") -> None:
        self.exchange = exchange

    def frames(self, item: StreamItem) -> list[bytes]:
        if isinstance(item, dict) and not item.get("choices") and isinstance(item.get("usage"), dict):
            _cost_into(self.exchange, item["usage"])
        return [http.sse_event(item if isinstance(item, bytes) else orjson.dumps(item))]

    def end(self) -> list[bytes]:
        """The frames that close a complete stream (the exchange is concluded: usage known)."""
        return [DONE]

    def error(self, error: GatewayError) -> bytes:
        """The frame of an error that cut the stream."""
        return http.sse_event(orjson.dumps(error.body()))


class ChatApi:
    """An API the gateway serves over the chat completion machinery (routing, reservation,
    cache, fallback, usage record). This one is chat completions itself: every provider is
    reached through its wire format (gateway/wire) and answers are OpenAI's as they come.
    Others (gateway/messages.py, gateway/responses.py) translate to and from it, and send a
    request as it is to the providers whose wire format speaks their API (`native_format`)."""

    endpoint = "chat.completions"
    native_format: str | None = None

    def parse(self, raw: bytes) -> Parsed:
        """The request, checked; GatewayError 400 naming what is wrong. Its `models` (fallback
        models, the gateway's own field) is taken out: no provider is sent it."""
        body = load_json(raw)
        validate_chat(body)  # refuses anything but an object
        fallbacks = fallback_models(body.pop("models", None))
        return Parsed(body, fallbacks=fallbacks)

    def is_native(self, candidate: routing.Candidate, parsed: Parsed) -> bool:
        return candidate.wire_format == self.native_format

    def native_call(self, parsed: Parsed, candidate: routing.Candidate, max_tokens: int | None, stream: bool) -> UpstreamCall:
        """The provider's request: the client's own, to the model it routed to."""
        raise NotImplementedError

    def native_answer(self, data: Any, exchange: "Exchange") -> tuple[dict[str, Any], Usage | None, str]:
        """The provider's answer as the client gets it, with its usage and finish reason (in
        OpenAI's terms). Raises UpstreamFormatError when it cannot be read."""
        raise NotImplementedError

    def native_stream(self, model: str, writer: StreamWriter) -> StreamTranslator:
        """Reads the provider's events for their usage and finish reason (its output is unused:
        the events go to the client as they came); `writer` writes what the gateway adds after
        them (an error), so it may need to know where they left off."""
        raise NotImplementedError

    def answer(self, completion: dict[str, Any], exchange: "Exchange") -> dict[str, Any]:
        """A chat completion (of a translated provider) as the client's API answers it."""
        if isinstance(completion.get("usage"), dict):  # what this request was billed, USD
            completion["usage"]["cost"] = float(exchange.cost.total)
        return completion

    def writer(self, exchange: "Exchange") -> StreamWriter:
        return StreamWriter(exchange)

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return error.body()

    def cache_variant(self) -> str:
        """What besides the body changes the answer (part of the response cache's key)."""
        return ""


CHAT = ChatApi()


def api_of(exchange: "Exchange") -> ChatApi:
    return exchange.api or CHAT


# --- spend -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reservation:
    account: Account
    amount: int  # nano-dollars held (0: the store was away and no limit applied)


class StaleSnapshot(Exception):
    """The organization's configuration changed after this process loaded the key's
    snapshot: reload it and decide again (core/events.py)."""


def period_account(snapshot: KeySnapshot) -> Account | None:
    """The key's account with its current window, or None for a key without a recurring limit."""
    account = _account(snapshot, False)
    return account if account.period_limit is not None else None


def _account(snapshot: KeySnapshot, with_credits: bool) -> Account:
    account = Account(
        key_id=snapshot.key_id,
        key_limit=snapshot.limit_nanos,
        key_usage=to_nanos(snapshot.usage),
        org_id=snapshot.org_id,
        org_credited=snapshot.credited_nanos if with_credits else None,
        org_spent=to_nanos(snapshot.credits_spent),
    )
    if snapshot.period_limit is None or snapshot.period_duration is None:
        return account
    now = datetime.now(UTC)
    start, end = periods.window(snapshot.period_duration, now)
    # What the database counted is this window's only if the snapshot was read in it; a
    # window the store has not counted in yet has no settled request, so 0 then.
    counted = to_nanos(snapshot.period_usage) if snapshot.period_start == start else 0
    return replace(account, period_limit=to_nanos(snapshot.period_limit), period=periods.window_id(snapshot.period_duration, start),
                   period_usage=counted, period_ttl=int((end - now).total_seconds()) + 86_400)


def _worst(candidates: list[routing.Candidate], body: dict[str, Any], size: int, output: int | None = None) -> Bound:
    """The highest worst case among the candidates (any of them may end up serving)."""
    media = media_of(body)  # once, not per candidate
    bounds = [worst_case(c.offer, body, size, paid_with_credits=c.paid_with_credits, output_tokens=output, media=media)
              for c in candidates]
    return max(bounds, key=lambda b: b.cost.nanos)


async def reserve(
    exchange: Exchange, candidates: list[routing.Candidate], body: dict[str, Any], size: int
) -> list[routing.Candidate]:
    """Reserves the worst case of the request against the key's limit and, when credits may
    pay, the organization's credits (the reservation goes on the exchange). Without credits
    enough, the organization's own keys may still serve the request. A request without its own
    output cap that does not fit is tried again with the most output that fits (at least
    MIN_OUTPUT tokens; sent upstream as its max_tokens). Returns the candidates the
    reservation covers. Raises StaleSnapshot when the configuration moved on, GatewayError
    402/401 when the request does not fit (pricing.worst_case and the refusal say why)."""
    snapshot = exchange.snapshot
    account = _account(snapshot, any(c.paid_with_credits for c in candidates))
    bound = _worst(candidates, body, size)
    admission = await _reserve(exchange, account, bound.cost.nanos)
    if admission.outcome == INSUFFICIENT_CREDITS:
        own = [c for c in candidates if not c.paid_with_credits]
        if own:
            candidates, account = own, _account(snapshot, False)
            bound = _worst(own, body, size)
            admission = await _reserve(exchange, account, bound.cost.nanos)
    if admission.outcome != OK and requested_output(body) is None:
        fit = _fitting(candidates, body, size, admission.remaining)
        if fit >= _least_output(candidates, body):
            lowered = _worst(candidates, body, size, fit)
            retried = await _reserve(exchange, account, lowered.cost.nanos)
            if retried.outcome == OK:
                exchange.max_tokens_sent = fit
                bound = lowered
            admission = retried
    if admission.outcome != OK:
        metrics.reservation_refused(admission.outcome)
        raise _refusal(admission, candidates, body, size, bound, snapshot)
    exchange.reservation = Reservation(account, bound.cost.nanos if admission.held else 0)
    if admission.held:
        ACTIVE_HOLDS.add(exchange.hold)
    return candidates


def _least_output(candidates: list[routing.Candidate], body: dict[str, Any]) -> int:
    """The fewest output tokens worth sending a request with: MIN_OUTPUT, or, for Claude with
    a reasoning effort, more than its smallest thinking budget (1,024 tokens: Anthropic's
    extended thinking guide)."""
    thinking = body.get("reasoning_effort") not in (None, "none")
    return 1_025 if thinking and any(c.wire_format == "anthropic" for c in candidates) else MIN_OUTPUT


def _fitting(candidates: list[routing.Candidate], body: dict[str, Any], size: int, budget: int) -> int:
    """The most output tokens per choice that every candidate's worst case fits in `budget`."""
    unasked = {k: v for k, v in body.items() if k not in ("max_tokens", "max_completion_tokens")}
    media = media_of(body)
    return min(fitting_output(c.offer, unasked, size, max(budget, 0), paid_with_credits=c.paid_with_credits, media=media)
               for c in candidates)


def _refusal(admission: "Admitted", candidates: list[routing.Candidate], body: dict[str, Any], size: int,
             bound: Bound, snapshot: KeySnapshot) -> GatewayError:
    """Why the request does not fit: its worst case, what remains, and the max_tokens that
    would fit. `usage_limit_reached` only when the key has nothing left (of its lifetime
    limit, or of its recurring limit until the window ends)."""
    left = max(admission.remaining, 0)
    outputs = any(c.offer.max_output for c in candidates)  # False for embeddings: all input
    fit = _fitting(candidates, body, size, left) if outputs else 0
    worst = (f"This request could cost up to ${from_nanos(bound.cost.nanos):f} ({bound.prompt_tokens} prompt tokens and "
             f"{bound.choices} × {bound.output_tokens} output tokens at most)")
    if not outputs:
        advice = "Shorten the input"
    else:
        advice = (f"Set max_tokens to {fit} or less to fit." if fit >= MIN_OUTPUT
                  else f"Not even {MIN_OUTPUT} output tokens fit: shorten the prompt")
    if admission.outcome == INSUFFICIENT_CREDITS:
        return GatewayError(
            402, f"{worst}; the organization's credits have ${from_nanos(left):f} left. {advice}"
            f"{'' if fit >= MIN_OUTPUT else ', or add credits or a provider key.'}", "insufficient_credits")
    limit, headers = "usage limit", {}
    if admission.outcome == PERIOD_LIMIT and snapshot.period_duration:
        _, end = periods.window(snapshot.period_duration)
        limit = f"{PERIOD_NAMES.get(snapshot.period_duration, snapshot.period_duration)} usage limit (until {end.isoformat()})"
        headers = {"Retry-After": str(max(1, math.ceil((end - datetime.now(UTC)).total_seconds())))}
    if left <= 0:
        return GatewayError(401, f"This API key has reached its {limit}.", "usage_limit_reached", headers=headers)
    return GatewayError(
        402, f"{worst}; this API key has ${from_nanos(left):f} left of its {limit}. {advice}"
        f"{'' if fit >= MIN_OUTPUT else ', or raise the key usage limit.'}", "usage_limit_insufficient",
        param="max_tokens" if outputs else "input", headers=headers)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A reservation's outcome, what the refusing limit had left (nano-dollars), and whether
    the store holds something for the request."""

    outcome: int
    remaining: int
    held: bool


async def _reserve(exchange: Exchange, account: Account, amount: int) -> "Admitted":
    """The store's answer, and whether a hold was made. Limits fail closed: when the store cannot be asked,
    nothing is spent. A request that neither a key limit nor credits cover has nothing to
    enforce, so it goes on holding nothing: the store being away must not stop it (its cost
    is still settled, later if need be, and logged)."""
    store = get_store()
    try:
        admission = await store.reserve(account, amount, exchange.hold)
    except Exception:
        if account.key_limit is None and account.org_credited is None:
            log.warning("spend store unavailable; serving a request no limit applies to", exc_info=True)
            return Admitted(OK, 0, held=False)
        log.warning("spend store unavailable; refusing the request", exc_info=True)
        metrics.reservation_refused("store_unavailable")
        raise GatewayError(
            503, "The gateway cannot check spend limits right now; nothing was spent. Try again shortly.",
            "service_unavailable", headers={"Retry-After": "1"},
        ) from None
    if admission.config_version > exchange.snapshot.config_version:
        if admission.outcome == OK:  # give the hold back before deciding again
            await asyncio.shield(_settle(store, account, exchange.hold, amount, 0, 0, None))
        raise StaleSnapshot()
    return Admitted(admission.outcome, admission.remaining, held=admission.outcome == OK and amount > 0)


async def conclude(exchange: Exchange) -> None:
    """Prices the request and settles its reservation with its usage record, in one store
    operation (on Redis, one atomic script that also puts the record on the usage stream);
    a request that reserved nothing just leaves its record. Once per exchange. A store that
    cannot be reached keeps the settlement and sends it again later."""
    if exchange.concluded:
        return
    exchange.concluded = True
    price(exchange)
    if exchange.cached_entry is None:  # tokens used beyond the estimate, counted in the background
        ratelimit.settle(exchange.rate, exchange.usage.total_tokens)
    reservation = exchange.reservation or Reservation(_account(exchange.snapshot, False), 0)
    credits = exchange.cost.nanos if exchange.candidate and exchange.candidate.paid_with_credits else 0
    record = orjson.dumps(exchange.record())
    metrics.request_recorded(exchange)  # once per record, with it: requests = log rows
    await _settle(get_store(), reservation.account, exchange.hold, reservation.amount, exchange.cost.nanos, credits, record)
    ACTIVE_HOLDS.discard(exchange.hold)
    usagelog.written()


async def _settle(store: RedisStore | MemoryStore, account: Account, hold: str, reserved: int, actual: int,
                  credits: int, record: bytes | None) -> None:
    try:
        await store.settle(account, hold, reserved, actual, credits, record)
    except Exception:  # kept by the store and sent again; the record goes with it
        log.warning("could not settle a reservation now; it will be retried", exc_info=True)


def price(exchange: Exchange) -> None:
    """Sets the exchange's cost (and what the provider's prompt cache saved) from its usage."""
    c = exchange.candidate
    if c is not None and exchange.cached_entry is None:
        exchange.cost = cost_of(c.offer, exchange.usage, paid_with_credits=c.paid_with_credits)
        exchange.saved = prompt_cache_savings(c.offer, exchange.usage)


# --- upstream ------------------------------------------------------------------------------------


async def _open(
    exchange: Exchange, candidates: list[routing.Candidate], parsed: Parsed
) -> tuple[WireFormat, aiohttp.ClientResponse]:
    """The first provider to answer this request (first_answer): sent as the client wrote it to
    a provider that speaks the client's API, else as a chat completion through its wire format."""
    api = api_of(exchange)

    def call_for(candidate: routing.Candidate, wire: WireFormat) -> UpstreamCall:
        if api.is_native(candidate, parsed):
            return api.native_call(parsed, candidate, exchange.max_tokens_sent, exchange.stream)
        return wire.build_call(
            body=_capped(parsed.body, candidate, exchange.max_tokens_sent), upstream_model=candidate.offer.upstream_model,
            base_url=candidate.base_url, token=candidate.token, stream=exchange.stream,
        )
    return await first_answer(exchange, candidates, call_for)


async def first_answer(
    exchange: Exchange, candidates: list[routing.Candidate], call_for: Callable[[routing.Candidate, WireFormat], UpstreamCall]
) -> tuple[WireFormat, aiohttp.ClientResponse]:
    """The first candidate to answer 2xx, trying the next on a retryable failure: the next key
    of the same provider, then the next provider (providers cooling down come last: see
    gateway/health.py, which also hears how each call went). Each attempt is one upstream call
    (`call_for` builds it); nothing has reached the client yet."""
    failure: UpstreamFailure | None = None
    watch = health.get_health()
    for attempt, candidate in enumerate(watch.ordered(candidates)):
        exchange.candidate = candidate
        wire = for_format(candidate.wire_format)
        call = call_for(candidate, wire)
        sent = time.monotonic()
        try:
            response = await open_response(call, wire, candidate.token, public_only=candidate.org_url)
        except UpstreamFailure as f:
            metrics.upstream_called(candidate, attempt, time.monotonic() - sent, f)
            watch.failed(candidate, f)
            failure = f
            if not f.retryable:
                break
        else:
            metrics.upstream_called(candidate, attempt, time.monotonic() - sent, None)
            watch.answered(candidate)
            return wire, response
    assert failure is not None  # routing.candidates never returns an empty list
    raise failure.error


def _with_choices(candidates: list[routing.Candidate], body: dict[str, Any]) -> list[routing.Candidate]:
    """The candidates whose provider can answer `n` choices; a 400 naming `n` when none can
    (one choice instead of n would be an answer that silently differs from the request)."""
    n = choices(body)
    able = [c for c in candidates if n <= PROVIDERS[c.offer.provider].max_choices]
    if not able:
        providers = ", ".join(sorted({c.provider for c in candidates}))
        raise GatewayError(400, f"Invalid 'n': {providers} cannot answer {n} choices in one request; send n=1 "
                           "(or one request per choice)", "invalid_request_error", param="n")
    return able


def _capped(body: dict[str, Any], candidate: routing.Candidate, max_tokens: int | None) -> dict[str, Any]:
    """The body with the output cap the reservation counted: the one the gateway lowered it to,
    or the client's. OpenAI's reasoning models take only `max_completion_tokens`; other
    OpenAI-compatible hosts (DeepSeek, Mistral, Together, …) read `max_tokens`, so a client's
    `max_completion_tokens` is sent to them as `max_tokens` too (the translating formats read
    either)."""
    openai = candidate.offer.provider == "openai"
    if max_tokens is None:
        asked = requested_output(body)
        if openai or candidate.wire_format != "openai" or asked is None or body.get("max_tokens") == asked:
            return body
        return {**body, "max_tokens": asked}
    return {**body, "max_completion_tokens" if openai else "max_tokens": max_tokens}


def response_headers(exchange: Exchange) -> dict[str, str]:
    """The gateway's headers on an answer: request id, provider, cache, cost, rate limits (docs/api.md)."""
    headers = {"x-request-id": exchange.request_id}
    provider = exchange.served_by()[0]
    if provider:
        headers["x-gateway-provider"] = provider
    if exchange.cache_status:
        headers["x-gateway-cache"] = "HIT" if exchange.cache_status == "hit" else "MISS"
    if exchange.max_tokens_sent is not None:
        headers["x-gateway-max-tokens"] = str(exchange.max_tokens_sent)
    if exchange.concluded and not exchange.stream:
        headers["x-gateway-cost"] = str(exchange.cost.total)
    if exchange.rate is not None:
        headers.update(exchange.rate.headers)
    return headers


async def _answer_json(exchange: Exchange, wire: WireFormat, response: aiohttp.ClientResponse, send: http.Send,
                       native: bool) -> None:
    assert exchange.candidate is not None  # set by _open
    api = api_of(exchange)
    data = await read_json(response, exchange.candidate.token)
    if isinstance(data, dict) and data.get("error"):
        raise GatewayError(502, f"The provider reported an error: {wire.error_message(200, data)}", "upstream_error")
    completion: dict[str, Any] | None = None
    try:
        if native:
            out, usage, finish = api.native_answer(data, exchange)
        else:
            completion, usage, reason = wire.parse_response(
                data, model=exchange.candidate.offer.model, completion_id="chatcmpl-" + random_string(24),
                created=int(time.time()),
            )
            finish = reason or ""
    except UpstreamFormatError as e:
        raise GatewayError(502, f"The provider's answer could not be read: {e}", "upstream_error") from None
    exchange.usage, exchange.finish_reason = _or_estimate(usage, exchange, completion), finish
    exchange.first_byte_at = time.monotonic()
    price(exchange)
    if completion is not None:
        out = api.answer(completion, exchange)
    payload = orjson.dumps(out)
    if exchange.content is not None:
        exchange.content.answered(out)
    await conclude(exchange)  # recorded before the answer goes out
    # Marked before the last send: once it is out, the server reports the client gone.
    exchange.response_started = exchange.finished = True
    await http.send_json(send, 200, payload, response_headers(exchange))
    await keep(exchange, {"body": payload.decode()})


class ProviderStreamError(GatewayError):
    """The provider reported an error inside its stream (a native stream already passed it on)."""


async def _pump(exchange: Exchange, translator: StreamTranslator, writer: StreamWriter | None,
                response: aiohttp.ClientResponse, send: http.Send) -> None:
    """Upstream SSE → the client, until the provider's stream ends: each event through the
    translator, then as the writer frames its items (None: the event as it came, for a
    provider that speaks the client's API). What one upstream read brought goes out in one write."""
    decoder = SSEDecoder()
    received = 0
    while True:
        chunk = await read_chunk(response)
        received += len(chunk)
        if received > settings.UPSTREAM_MAX_RESPONSE_BYTES:
            raise GatewayError(502, "The provider's stream exceeded the size limit; it was cut.", "upstream_error")
        frames: list[bytes] = []
        for event, data in decoder.feed(chunk) if chunk else decoder.close():
            items = translator.feed(event, data)
            if writer is None:
                frames.append(http.sse_frame(event, data))
            else:
                frames.extend(frame for item in items for frame in writer.frames(item))
            if translator.state.error:
                await _send_frames(exchange, frames, send)
                raise ProviderStreamError(502, f"The provider reported an error: {translator.state.error}", "upstream_error")
        await _send_frames(exchange, frames, send)
        if not chunk:
            return


async def _send_frames(exchange: Exchange, frames: list[bytes], send: http.Send, more: bool = True) -> None:
    """Sends SSE frames in one write, keeping them for the response cache while they fit;
    `more=False` ends the response."""
    if not frames and more:
        return
    if exchange.first_byte_at is None:
        exchange.first_byte_at = time.monotonic()
    if exchange.content is not None:
        exchange.content.sent(frames)
    if exchange.stream_events is not None:
        exchange.stream_events.extend(frames)
        exchange.stream_bytes += sum(map(len, frames))
        if exchange.stream_bytes > MAX_ENTRY_BYTES:
            exchange.stream_events = None  # too large to store: stop collecting
    await send({"type": "http.response.body", "body": b"".join(frames), "more_body": more})


def _cost_into(exchange: Exchange, usage: dict[str, Any]) -> None:
    """Adds `cost` (USD) to a stream's usage chunk (OpenAI's shape, whatever the provider)."""
    counted = openai_usage_from(usage)
    if exchange.candidate is not None and counted is not None:
        cost = cost_of(exchange.candidate.offer, counted, paid_with_credits=exchange.candidate.paid_with_credits)
        usage["cost"] = float(cost.total)


def _or_estimate(usage: Usage | None, exchange: Exchange, answer: dict[str, Any] | None = None, chunks: int = 0) -> Usage:
    """The provider's counts, or, when it sent none (or only zeros), an estimate: an answer
    is never free because its provider forgot to count it."""
    if usage is not None and usage.total_tokens > 0:
        return usage
    text = ""
    if answer:
        message = ((answer.get("choices") or [{}])[0] or {}).get("message") or {}
        text = str(message.get("content") or "") + str(message.get("tool_calls") or "")
    return Usage(exchange.prompt_estimate, max(len(text) // 4, chunks, 1))


def _streamed_usage(exchange: Exchange, translator: StreamTranslator) -> Usage:
    """What a stream cut short is billed: the provider's figures as far as they came, else an
    estimate of one token per chunk sent."""
    known = translator.state.usage or Usage()
    # The provider's details (cache reads and writes, reasoning, audio) as far as they came.
    return replace(known, prompt_tokens=known.prompt_tokens or exchange.prompt_estimate,
                   completion_tokens=max(known.completion_tokens, translator.state.chunks))


async def _answer_stream(
    exchange: Exchange, wire: WireFormat, response: aiohttp.ClientResponse, send: http.Send, include_usage: bool,
    native: bool,
) -> None:
    assert exchange.candidate is not None  # set by _open
    api = api_of(exchange)
    model = exchange.candidate.offer.model
    writer = exchange.writer = api.writer(exchange)
    translator = api.native_stream(model, writer) if native else wire.stream_translator(
        model=model, completion_id="chatcmpl-" + random_string(24), created=int(time.time()), include_usage=include_usage,
    )
    await http.start_sse(send, response_headers(exchange))
    exchange.response_started = True
    try:
        await _pump(exchange, translator, None if native else writer, response, send)
        if translator.state.finish_reason is None:
            raise GatewayError(502, "The provider's stream ended before the answer was complete.", "upstream_error")
        exchange.usage = _or_estimate(translator.state.usage, exchange, chunks=translator.state.chunks)
        exchange.finish_reason = translator.state.finish_reason
        last = [] if native else [frame for item in translator.finish() for frame in writer.frames(item)]
        await _send_frames(exchange, last, send)
        await conclude(exchange)  # recorded before the stream's last bytes
        exchange.finished = True
        await _send_frames(exchange, [] if native else writer.end(), send, more=False)
        await keep(exchange, {"frames": exchange.stream_events})
    except (GatewayError, UpstreamFormatError) as e:
        error = e if isinstance(e, GatewayError) else GatewayError(502, f"The provider sent an unreadable event: {e}", "upstream_error")
        exchange.fail(error)
        exchange.usage = _streamed_usage(exchange, translator)
        exchange.finish_reason = exchange.finish_reason or translator.state.finish_reason or ""
        await conclude(exchange)
        exchange.finished = True
        passed_on = native and isinstance(error, ProviderStreamError)  # the provider's own error event went out
        await http.end_sse(send, b"" if passed_on else writer.error(error))
    except asyncio.CancelledError:
        exchange.usage = _streamed_usage(exchange, translator)
        raise
    finally:
        exchange.finish_reason = exchange.finish_reason or translator.state.finish_reason or ""
        price(exchange)


# --- the handler ---------------------------------------------------------------------------------


# --- the response cache ----------------------------------------------------------------------


async def _lookup(exchange: Exchange, raw: bytes, candidates: list[routing.Candidate]) -> dict[str, Any] | None:
    """The stored answer for this request, or None (a failing cache is a miss). An answer is
    served only to a request its provider could have served now, the same way paid (the
    asking key's IAM rules and the project's mode decide `candidates`). Raises StaleSnapshot
    when the configuration changed since the snapshot was loaded (a hit reserves nothing, so
    it asks for the version itself)."""
    snapshot = exchange.snapshot
    if not snapshot.caching_enabled:
        return None
    if exchange.no_cache:
        exchange.cache_status = "skip"
        return None
    exchange.cache_key = cache_key(snapshot.project_id, snapshot.cache_version, raw,
                                   exchange.endpoint + api_of(exchange).cache_variant())
    try:
        entry, version = await asyncio.gather(response_cache().get(exchange.cache_key),
                                              get_store().config_version(snapshot.org_id))
    except Exception:
        log.warning("response cache unavailable; treating as a miss", exc_info=True)
        entry, version = None, 0
    if entry is not None and version > snapshot.config_version:
        raise StaleSnapshot()
    if entry is not None and not any((c.provider, c.mode) == (entry["provider"], entry["mode"]) for c in candidates):
        entry = None  # produced by a provider (or a way of paying) this request may not use
    exchange.cache_status = "hit" if entry else "miss"
    if entry is None and exchange.stream:
        exchange.stream_events = []
    return cast(dict[str, Any] | None, entry)


async def keep(exchange: Exchange, content: dict[str, Any]) -> None:
    """Keeps a complete, successful answer for the project's cache duration."""
    if exchange.cache_status != "miss" or exchange.status != 200 or exchange.canceled:
        return
    if "frames" in content:
        if content["frames"] is None:
            return  # a stream too large to keep
        content = {"frames": [frame.decode() for frame in content["frames"]]}
    provider, model, mode = exchange.served_by()
    entry = {
        **content, "provider": provider, "model": model, "mode": mode, "cost": str(exchange.cost.total),
        "usage": list(astuple(exchange.usage)),
        "finish_reason": exchange.finish_reason,
    }
    try:
        await response_cache().put(exchange.cache_key, exchange.snapshot.project_id, entry, exchange.snapshot.cache_duration_seconds)
    except Exception:
        log.warning("could not store a response in the cache", exc_info=True)


async def _replay(exchange: Exchange, entry: dict[str, Any], send: http.Send) -> None:
    """Answers from the cache: free, with the original's token counts."""
    exchange.cached_entry = entry
    if exchange.content is not None and "frames" in entry:
        exchange.content.replayed(entry["frames"])
    elif exchange.content is not None:
        exchange.content.answered(entry["body"])
    exchange.usage = Usage(*entry["usage"])
    exchange.finish_reason = entry.get("finish_reason") or ""
    exchange.first_byte_at = time.monotonic()
    await conclude(exchange)
    headers = response_headers(exchange)
    exchange.response_started = True
    if "frames" in entry:
        await http.start_sse(send, headers)
        exchange.finished = True
        await http.end_sse(send, b"".join(_billed_nothing(frame).encode() for frame in entry["frames"]))
    else:
        exchange.finished = True
        await http.send_json(send, 200, _billed_nothing(entry["body"]).encode(), headers)


def _billed_nothing(payload: str) -> str:
    """A stored answer (or SSE frame) with its `usage.cost` set to 0: a hit costs nothing.
    Only payloads that carry a cost are parsed (a frame's JSON is its last line, `data: {...}`)."""
    if '"cost"' not in payload:
        return payload
    lines = payload.rstrip("\n").split("\n")
    framed = payload.startswith(("data: ", "event: ")) and lines[-1].startswith("data: ")
    try:
        data = orjson.loads(lines[-1][6:] if framed else payload)
    except orjson.JSONDecodeError:
        return payload
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict) or "cost" not in usage:
        return payload
    usage["cost"] = 0
    fixed = orjson.dumps(data).decode()
    return "\n".join([*lines[:-1], "data: " + fixed]) + "\n\n" if framed else fixed


# --- the handler ---------------------------------------------------------------------------------


Reload = Callable[[], Awaitable[KeySnapshot | None]]


async def handle(exchange: Exchange, raw: bytes, send: http.Send, on_stream: Callable[[], None] | None = None,
                 reload: Reload | None = None, api: ChatApi = CHAT) -> None:
    """Answers one request of `api` (chat completions, or an API served over them); the caller
    concludes the exchange, whatever happens here (an answer that went out whole was concluded
    already). `on_stream` is called when the request turns out to stream (to watch for the
    client leaving: a stream cut short is billed for what was sent). `reload` gives the key's
    snapshot afresh when the store says the organization's configuration changed since it was
    loaded."""
    exchange.api, exchange.endpoint = api, api.endpoint
    parsed = api.parse(raw)
    body, exchange.client_request = parsed.body, parsed.native
    if exchange.snapshot.log_content:
        exchange.content = Capture(api.endpoint, parsed.native or body)
    exchange.requested_model = body["model"]
    exchange.stream = bool(body.get("stream"))
    exchange.user = body["user"] if isinstance(body.get("user"), str) else ""
    exchange.prompt_estimate = len(raw) // 4
    if exchange.stream and on_stream is not None:
        on_stream()
    def route(snapshot: KeySnapshot, model: str) -> list[routing.Candidate]:
        return _servable(with_fallbacks(snapshot, model, parsed.fallbacks), parsed, api)

    candidates = await admit(exchange, raw, body, send, reload, route)
    if candidates is None:
        return  # answered from the cache
    wire, response = await _open(exchange, candidates, parsed)
    assert exchange.candidate is not None  # set by _open
    native = api.is_native(exchange.candidate, parsed)
    try:
        if exchange.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await _answer_stream(exchange, wire, response, send, include_usage, native)
        else:
            await _answer_json(exchange, wire, response, send, native)
    finally:
        response.close()


MAX_FALLBACKS = 5


def fallback_models(value: Any) -> tuple[str, ...]:
    """The request's `models`: up to MAX_FALLBACKS model ids to fall back on, in order; a 400
    naming `models` for anything else."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FALLBACKS or not all(
            isinstance(m, str) and 0 < len(m) <= 256 for m in value):
        raise GatewayError(400, f"Invalid 'models': must be a list of at most {MAX_FALLBACKS} model ids to fall back on, "
                                "in order", "invalid_request_error", param="models")
    return tuple(dict.fromkeys(value))


def with_fallbacks(snapshot: KeySnapshot, model: str, fallbacks: tuple[str, ...],
                   route: "Route" = routing.candidates) -> list[routing.Candidate]:
    """The model's candidates (`route`: chat or embedding ones), then each fallback model's, in
    order: each model under the key's IAM rules and the project's mode (a fallback they refuse
    is left out). When none can serve, the first model's refusal is the answer."""
    first_refusal: GatewayError | None = None
    try:
        candidates = route(snapshot, model)
    except GatewayError as refusal:
        candidates, first_refusal = [], refusal
    for fallback in fallbacks:
        if fallback == model:
            continue
        try:
            extra = route(snapshot, fallback)
        except GatewayError:
            continue
        candidates += [c for c in extra if c not in candidates]
    if not candidates and first_refusal is not None:
        raise first_refusal
    return candidates


def _servable(candidates: list[routing.Candidate], parsed: Parsed, api: ChatApi) -> list[routing.Candidate]:
    """The candidates that can take the request: all of them, or, when it has no chat
    completion equivalent, those that speak the client's API (else the reason, a 400)."""
    if parsed.untranslatable is None:
        return candidates
    native = [c for c in candidates if api.is_native(c, parsed)]
    if not native:
        raise parsed.untranslatable
    return native


Route = Callable[[KeySnapshot, str], list[routing.Candidate]]


async def admit(exchange: Exchange, raw: bytes, body: dict[str, Any], send: http.Send, reload: "Reload | None",
                route: Route = routing.candidates) -> list[routing.Candidate] | None:
    """Who may serve the request (`route`: chat or embeddings), then the cached answer (sent
    here: None is returned) or the reservation (the candidates it covers are returned). The
    decision is taken again on a fresh snapshot when the organization's configuration moved on.
    The key's rate limits count the request first (gateway/ratelimit.py: 429 when over)."""
    exchange.rate = await ratelimit.admit(exchange.snapshot, ratelimit.estimate(exchange.prompt_estimate, body))
    for attempt in range(3):
        try:
            candidates = _with_choices(await _candidates(exchange, body["model"], route), body)  # IAM rules hold for hits too
            entry = await _lookup(exchange, raw, candidates)
            if entry is not None:
                await _replay(exchange, entry, send)
                return None
            return await reserve(exchange, candidates, body, len(raw))
        except StaleSnapshot:
            if reload is None or attempt == 2:
                raise GatewayError(503, "The key's configuration is changing; try again.", "service_unavailable",
                                   headers={"Retry-After": "1"}) from None
            await _refresh(exchange, reload)
    raise AssertionError("unreachable: the loop returns or raises")


async def _candidates(exchange: Exchange, model: str, route: Route) -> list[routing.Candidate]:
    """Routing's answer; a refusal is given only on a snapshot that is current (it may be
    the key's provider key that was just added: then StaleSnapshot)."""
    try:
        return route(exchange.snapshot, model)
    except GatewayError:
        if await get_store().config_version(exchange.snapshot.org_id) > exchange.snapshot.config_version:
            raise StaleSnapshot() from None
        raise


async def _refresh(exchange: Exchange, reload: Reload) -> None:
    """The key as it is now; its refusal (deleted, disabled, archived) is the answer."""
    snapshot = await reload()
    if snapshot is None:
        raise GatewayError(401, "Invalid API key.", "invalid_api_key")
    refused = key_refusal(snapshot)
    if refused is not None:
        raise refused
    exchange.snapshot = snapshot


async def error_during(exchange: Exchange, error: GatewayError, send: http.Send) -> None:
    """An error before the answer started goes out as an HTTP error; after, as an SSE event."""
    exchange.fail(error)
    already_finished, exchange.finished = exchange.finished, True
    api = api_of(exchange)
    if not exchange.response_started:
        exchange.response_started = True
        await http.send_error(send, error, response_headers(exchange), api.error_body)
    elif exchange.stream and not already_finished:
        await http.end_sse(send, (exchange.writer or api.writer(exchange)).error(error))
