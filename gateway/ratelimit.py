"""Per-key rate limits: requests per minute (`rateLimitRpm`) and tokens per minute
(`rateLimitTpm`), counted with `limits` by every gateway process together.

Storage: Redis when REDIS_URL is set (every process shares the counts), process memory on
the embedded defaults (one web process). A key without rate limits costs nothing: no storage
call at all.

Strategies (`limits.aio.strategies`):
- Requests: a moving window. Each admitted request's timestamp is kept, and on Redis the
  check and the push are one Lua script, so processes racing for the last slots cannot
  overshoot: at most `rateLimitRpm` requests are admitted in any 60 seconds, exactly, however
  many processes serve the key. A sliding-window counter would only approximate that (it
  weights the previous minute's count as if its requests had been spread evenly, so after a
  burst at the end of one minute, nearly twice the limit can pass within 60 seconds).
- Tokens: a sliding-window counter, atomic on Redis too (one Lua script, on Redis's own
  clock). A moving window stores one entry per unit counted: a 100,000-token request would
  push 100,000 timestamps and a key allowed 1M tokens keep a list of a million; the counter
  is two integers per key whatever the amounts. The price is the approximation above, for
  tokens only, which are an estimate at admission anyway.

Tokens are counted when a request is admitted, as an estimate: its prompt at 4 bytes a
token (the exchange's `prompt_estimate`) plus its output cap (`n` × `max_tokens` or
`max_completion_tokens`) when it sets one. When the request is concluded and the provider
counted more than that, the difference is added (never delaying the answer: it is sent in
the background). The library cannot take tokens back, so a request that used fewer tokens
than estimated (or none: refused by the spend check, failed, answered from the cache) keeps
its estimate counted until it leaves the window.

A request refused because the tokens are used up has already counted as a request (the
request limit is checked first, so a request refused on requests counts no tokens); one
that counts more tokens than the whole limit is refused counting nothing. The windows are stored per limit
value: a key whose limit changes starts counting afresh under the new one.

When the counters cannot be reached, requests are let through with a warning: a rate limit
protects capacity, not money, and the spend limits (gateway/store.py) stay hard regardless.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.base import SlidingWindowCounterSupport
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from core import metrics
from gateway.errors import GatewayError
from gateway.pricing import choices, requested_output
from gateway.snapshot import KeySnapshot

log = logging.getLogger(__name__)

WINDOW = 60  # seconds: both limits are per minute
UNBOUNDED = 10**15  # the limit a correction is added under: tokens used count, whatever is left


def _storage() -> Storage:
    if settings.REDIS_URL:
        return RedisStorage("async+" + settings.REDIS_URL, implementation="redispy",
                            socket_timeout=2, socket_connect_timeout=2)
    return MemoryStorage()


def _requests(limit: int) -> RateLimitItem:
    return RateLimitItemPerMinute(limit, namespace="llmgw-rpm")


def _tokens(limit: int) -> RateLimitItem:
    return RateLimitItemPerMinute(limit, namespace="llmgw-tpm")


def estimate(prompt_tokens: int, body: dict[str, Any]) -> int:
    """The tokens a request counts at admission: its prompt estimate plus its output cap."""
    return prompt_tokens + (requested_output(body) or 0) * choices(body)


def duration(seconds: float) -> str:
    """A duration the way OpenAI writes its reset headers (Go's): `20ms`, `1s`, `12.5s`, `6m0s`."""
    ms = max(0, math.ceil(round(seconds * 1000, 6)))  # 0.07 s is 70 ms, not 71
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    minutes, ms = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    text = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


def _trio(kind: str, limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {f"x-ratelimit-limit-{kind}": str(limit), f"x-ratelimit-remaining-{kind}": str(max(remaining, 0)),
            f"x-ratelimit-reset-{kind}": duration(reset)}


def tokens_wait(limit: int, need: int, window: tuple[int, float, int, float]) -> float:
    """Seconds until `need` tokens fit a sliding-window counter of `limit` whose state is
    (previous count, its weight's time left, current count, the current window's time left
    plus a window), as `get_sliding_window` gives it. The previous window's count weighs in
    proportion to the time it has left; the current one becomes the previous at its end."""
    previous, previous_left, current, current_left = window
    room = limit - need - current
    if room >= 0:
        if previous <= 0 or previous * previous_left / WINDOW <= room:
            return 0.0
        return previous_left - room * WINDOW / previous
    # The current window alone leaves no room: it must become the previous one and fade.
    return max(current_left - WINDOW, 0.0) + WINDOW * (1 - (limit - need) / current)


@dataclass(frozen=True)
class Admitted:
    """A request the key's rate limits let through: the headers its answer carries, and the
    tokens it counted (to correct at settlement)."""

    key_id: str
    tokens_limit: int | None
    tokens: int
    headers: dict[str, str] = field(default_factory=dict)


class RateLimiter:
    """The requests and tokens windows of every key; see the module's docstring."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage or _storage()
        self.requests = MovingWindowRateLimiter(self.storage)
        self.tokens = SlidingWindowCounterRateLimiter(self.storage)
        self._corrections: set[asyncio.Task[None]] = set()

    async def admit(self, snapshot: KeySnapshot, tokens: int) -> Admitted | None:
        """Counts the request (and its estimated `tokens`) against the key's limits. None when
        the key has none, or when the counters cannot be reached (then it is let through).
        Raises GatewayError 429 `rate_limited` when over either limit."""
        if not snapshot.rate_limit_rpm and not snapshot.rate_limit_tpm:
            return None
        try:
            outcome = await self._check(snapshot, tokens)
        except Exception:
            log.warning("rate limit counters unavailable; not rate limiting key %s", snapshot.key_id, exc_info=True)
            return None
        if isinstance(outcome, GatewayError):
            raise outcome
        return outcome

    async def _check(self, snapshot: KeySnapshot, tokens: int) -> Admitted | GatewayError:
        """The request counted and its headers, or its refusal (returned, so that only storage
        failures are exceptions here)."""
        key, rpm, tpm = snapshot.key_id, snapshot.rate_limit_rpm, snapshot.rate_limit_tpm
        refused: str | None = None
        if tpm and tokens > tpm:
            refused = "too large"  # would never fit: counts as nothing
        elif rpm and not await self.requests.hit(_requests(rpm), key):
            refused = "requests"
        elif tpm and not await self.tokens.hit(_tokens(tpm), key, cost=tokens):
            refused = "tokens"
        windows: list[tuple[str, int, MovingWindowRateLimiter | SlidingWindowCounterRateLimiter, RateLimitItem]] = []
        if rpm:
            windows.append(("requests", rpm, self.requests, _requests(rpm)))
        if tpm:
            windows.append(("tokens", tpm, self.tokens, _tokens(tpm)))
        stats = await asyncio.gather(*(limiter.get_window_stats(item, key) for _, _, limiter, item in windows))
        now = time.time()
        headers: dict[str, str] = {}
        resets: dict[str, float] = {}
        for (kind, limit, _, _), (reset, remaining) in zip(windows, stats, strict=True):
            resets[kind] = max(reset - now, 0.0)
            headers.update(_trio(kind, limit, remaining, resets[kind]))
        if refused is None:
            return Admitted(key, tpm, tokens if tpm else 0, headers)
        if refused == "requests":
            wait, reached = resets["requests"], f"This API key's limit of {rpm} requests per minute is reached"
        elif refused == "tokens":
            assert tpm is not None
            storage = cast(SlidingWindowCounterSupport, self.storage)
            wait = tokens_wait(tpm, tokens, await storage.get_sliding_window(_tokens(tpm).key_for(key), WINDOW))
            headers["x-ratelimit-reset-tokens"] = duration(wait)
            reached = f"This API key's limit of {tpm} tokens per minute is reached (this request counts {tokens})"
        else:
            message = (f"This request counts {tokens} tokens (its prompt at 4 bytes a token plus its output cap), "
                       f"more than this API key's limit of {tpm} tokens per minute; shorten it or lower its max_tokens.")
            metrics.RATE_LIMITED.labels("tpm").inc()
            return _rate_limited(message, WINDOW, headers)
        retry = max(1, math.ceil(wait))
        metrics.RATE_LIMITED.labels("rpm" if refused == "requests" else "tpm").inc()
        return _rate_limited(f"{reached}; retry in {retry} s.", retry, headers)

    def settle(self, admitted: "Admitted | None", used: int) -> None:
        """Adds the tokens a request used beyond what it counted at admission, in the
        background (the answer does not wait for it). Fewer cannot be given back."""
        if admitted is None or admitted.tokens_limit is None or used <= admitted.tokens:
            return
        task = asyncio.get_running_loop().create_task(
            self._add_tokens(admitted.key_id, admitted.tokens_limit, used - admitted.tokens))
        self._corrections.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._corrections.discard)

    async def _add_tokens(self, key_id: str, limit: int, extra: int) -> None:
        # Under a limit no count reaches, so that the tokens are added however many are left.
        storage = cast(SlidingWindowCounterSupport, self.storage)
        try:
            await storage.acquire_sliding_window_entry(_tokens(limit).key_for(key_id), UNBOUNDED, WINDOW, extra)
        except Exception:
            log.warning("rate limit counters unavailable; %s tokens of key %s went uncounted", extra, key_id,
                        exc_info=True)

    async def drain(self) -> None:
        """Waits for the corrections in flight (tests; a process shutting down may drop them)."""
        while self._corrections:
            await asyncio.gather(*self._corrections, return_exceptions=True)


def _rate_limited(message: str, retry_after: int, headers: dict[str, str]) -> GatewayError:
    return GatewayError(429, message, "rate_limited", headers={**headers, "Retry-After": str(retry_after)})


_limiter: RateLimiter | None = None


def limiter() -> RateLimiter:
    global _limiter
    if _limiter is None:
        _limiter = RateLimiter()
    return _limiter


async def admit(snapshot: KeySnapshot, tokens: int) -> Admitted | None:
    """RateLimiter.admit on this process's limiter; a key without limits never creates it."""
    if not snapshot.rate_limit_rpm and not snapshot.rate_limit_tpm:
        return None
    return await limiter().admit(snapshot, tokens)


def settle(admitted: Admitted | None, used: int) -> None:
    if admitted is not None:
        limiter().settle(admitted, used)
