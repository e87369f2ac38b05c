"""What the gateway learns from its calls upstream: provider keys their provider keeps
refusing, and providers that keep failing. Shared by every gateway process through Redis when
REDIS_URL is set; in this process's memory on the embedded defaults (one gateway process).

- **Refused keys.** An organization's provider key refused (HTTP 401 or 403) by its provider
  GATEWAY_KEY_REJECTIONS times in a row is marked `invalid` in the database
  (apikeys.services.provider_key_mark_invalid, run in a thread), whose configuration event
  makes every process reload its snapshots without it. A success of the key, seen by a process
  that counted one of its refusals, starts the count again; a count left alone for an hour is
  forgotten.
- **Cool-downs.** A provider that fails GATEWAY_COOLDOWN_FAILURES times within
  GATEWAY_COOLDOWN_WINDOW seconds (no connection, no answer in time, a 5xx or 408) cools down
  for GATEWAY_COOLDOWN_SECONDS: a request tries its candidates after every other provider's
  (the same candidates: a request is never refused because providers cool down). A success
  seen by a process that counted one of its failures starts the count again. Only calls to
  the operator's URL of a built-in provider count: an organization's own base URL says
  nothing about the provider, and one organization must not move everyone's traffic.

The hot path pays no I/O for this. The order comes from this process's view of the
cool-downs, read from Redis at most every REFRESH_SECONDS, in the background, when a request
finds the view older than that: another process's cool-down reaches this one within about a
second (a cool-down this process starts is in its view at once). Counting happens on
failures only, in a task off the request's path; a success costs a write only when this
process counted a failure of that provider or key before it.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from apikeys import services as key_services
from core.redis import async_client
from gateway.routing import Candidate
from gateway.upstream import UpstreamFailure

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0  # how old this process's view of the cool-downs may get (Redis)
REJECTION_MEMORY_SECONDS = 3600  # a key's refusal count is forgotten after this long without one
PREFIX = "llmgw:health:"
COOLING = PREFIX + "cooling"  # hash: provider → end of its cool-down (ms since the epoch, Redis's clock)
REFUSED = (401, 403)

C = TypeVar("C", bound=Candidate)


def provider_of(candidate: Candidate) -> str | None:
    """The provider whose health a call to this candidate tells about: a built-in provider
    at the operator's URL (None for a custom provider or an organization's own base URL)."""
    if candidate.org_url or candidate.offer.custom_name:
        return None
    return candidate.offer.provider


def is_outage(failure: UpstreamFailure) -> bool:
    """A failure that says the provider is unwell (not the request, the key or a rate limit)."""
    return failure.unreachable or (failure.status is not None and (failure.status >= 500 or failure.status == 408))


class MemoryCounters:
    """The embedded defaults: one gateway process, whose memory is the only place that counts."""

    def __init__(self) -> None:
        self.failures: dict[str, tuple[int, float]] = {}  # provider → (count, its window's end)
        self.rejections: dict[str, tuple[int, float]] = {}  # key id → (count, forgotten then)

    async def provider_failed(self, provider: str, threshold: int, window: float, cooldown: float) -> float:
        """Counts a failure; the seconds of cool-down it started (0: none)."""
        now = time.monotonic()
        count, ends = self.failures.get(provider, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + window
        if count + 1 >= threshold:
            self.failures.pop(provider, None)
            return cooldown
        self.failures[provider] = (count + 1, ends)
        return 0.0

    async def provider_ok(self, provider: str) -> None:
        self.failures.pop(provider, None)

    async def key_rejected(self, key_id: str) -> int:
        """Counts a refusal; the key's refusals in a row so far."""
        now = time.monotonic()
        count, forgotten = self.rejections.get(key_id, (0, 0.0))
        count = count + 1 if forgotten > now else 1
        if len(self.rejections) > 10_000:  # keys deleted mid-count: keep memory bounded
            self.rejections = {k: v for k, v in self.rejections.items() if v[1] > now}
        self.rejections[key_id] = (count, now + REJECTION_MEMORY_SECONDS)
        return count

    async def key_ok(self, key_id: str) -> None:
        self.rejections.pop(key_id, None)

    async def cooling_left(self) -> dict[str, float]:
        return {}  # never asked: this process's view is the whole truth


_PROVIDER_FAILED = """
-- KEYS: the provider's failure count, the cool-downs hash
-- ARGV: provider, threshold, window (ms), cool-down (ms). Returns the cool-down started (ms; 0: none).
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if count < tonumber(ARGV[2]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[4]))
redis.call('DEL', KEYS[1])
return tonumber(ARGV[4])
"""

_KEY_REJECTED = """
-- KEYS: the key's refusal count. ARGV: seconds it is kept. Returns the count.
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""

_COOLING_LEFT = """
-- KEYS: the cool-downs hash. Returns {provider, ms left, ...} of those still running; ended ones go.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #entries, 2 do
  local left = tonumber(entries[i + 1]) - now
  if left > 0 then
    out[#out + 1] = entries[i]
    out[#out + 1] = left
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return out
"""


async def _eval(script: str, keys: list[str], args: list[str]) -> Any:
    # redis-py types its sync and async answers as one union; the async client's is awaitable
    return await cast(Awaitable[Any], async_client().eval(script, len(keys), *keys, *args))


class RedisCounters:
    """Every gateway process counts in Redis; times are Redis's clock, so hosts' clocks may differ."""

    async def provider_failed(self, provider: str, threshold: int, window: float, cooldown: float) -> float:
        started = await _eval(_PROVIDER_FAILED, [f"{PREFIX}fail:{provider}", COOLING], [
            provider, str(threshold), str(max(int(window * 1000), 1)), str(max(int(cooldown * 1000), 1)),
        ])
        return int(started) / 1000

    async def provider_ok(self, provider: str) -> None:
        await async_client().delete(f"{PREFIX}fail:{provider}")

    async def key_rejected(self, key_id: str) -> int:
        count = await _eval(_KEY_REJECTED, [f"{PREFIX}refused:{key_id}"], [str(REJECTION_MEMORY_SECONDS)])
        return int(count)

    async def key_ok(self, key_id: str) -> None:
        await async_client().delete(f"{PREFIX}refused:{key_id}")

    async def cooling_left(self) -> dict[str, float]:
        flat = await _eval(_COOLING_LEFT, [COOLING], [])
        return {flat[i].decode(): int(flat[i + 1]) / 1000 for i in range(0, len(flat), 2)}


def _mark_invalid(key_id: str, rejections: int, status: int | None) -> bool:
    close_old_connections()  # a thread of the pool: its connection may have gone stale since
    return key_services.provider_key_mark_invalid(key_id=key_id, rejections=rejections, status=status)


class Health:
    """This process's side: its view of the cool-downs, and what it counted."""

    def __init__(self, counters: MemoryCounters | RedisCounters | None = None) -> None:
        self.counters = counters or (RedisCounters() if settings.REDIS_URL else MemoryCounters())
        self.shared = isinstance(self.counters, RedisCounters)
        self._cooling: dict[str, float] = {}  # provider → end of its cool-down (monotonic)
        self._started: dict[str, float] = {}  # provider → when this process started its cool-down
        self._read_at = -math.inf
        self._reading = False
        # Providers and keys this process counted a failure of since it last saw them succeed.
        self._failing: set[str] = set()
        self._refused: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- reading ---------------------------------------------------------------------------

    def cooling(self) -> dict[str, float]:
        """provider → seconds left of its cool-down, as this process sees it now. No I/O:
        with Redis, a view older than REFRESH_SECONDS is read again in the background."""
        now = time.monotonic()
        if self.shared and not self._reading and now - self._read_at >= REFRESH_SECONDS:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None  # a synchronous caller: the view as it is
            if loop is not None:
                self._reading, self._read_at = True, now
                self._spawn(self._refresh())
        return {p: end - now for p, end in self._cooling.items() if end > now}

    async def _refresh(self) -> None:
        issued = time.monotonic()
        try:
            left = await self.counters.cooling_left()
        except Exception:  # the spend store says it louder; the view stays as it is
            log.debug("could not read the providers' cool-downs", exc_info=True)
            return
        finally:
            self._reading = False
        now = time.monotonic()
        view = {p: now + seconds for p, seconds in left.items()}
        for p, end in self._cooling.items():  # started here while the read was on its way
            if self._started.get(p, -math.inf) >= issued:
                view[p] = max(view.get(p, 0.0), end)
        self._cooling = view

    def ordered(self, candidates: Sequence[C]) -> list[C]:
        """The candidates with those of cooling providers moved after the other providers of
        the same model (a request's fallback models keep their place after it); each group
        keeps its order. A model served by one provider (pinned) is left as it is."""
        cooling = self.cooling()
        if not cooling or not any(provider_of(c) in cooling for c in candidates):
            return list(candidates)
        ordered: list[C] = []
        start = 0
        for end in range(1, len(candidates) + 1):
            if end == len(candidates) or candidates[end].offer.model != candidates[start].offer.model:
                run = candidates[start:end]
                healthy = [c for c in run if provider_of(c) not in cooling]
                ordered += healthy + [c for c in run if provider_of(c) in cooling]
                start = end
        return ordered

    # --- counting --------------------------------------------------------------------------

    def failed(self, candidate: Candidate, failure: UpstreamFailure) -> None:
        """A call to `candidate` failed before its first byte: counted off the request's path."""
        if failure.status in REFUSED:
            if candidate.key_id and settings.GATEWAY_KEY_REJECTIONS > 0:
                self._spawn(self._rejected(candidate.key_id, failure.status))
            return
        provider = provider_of(candidate)
        if provider is not None and settings.GATEWAY_COOLDOWN_FAILURES > 0 and is_outage(failure):
            self._spawn(self._provider_failed(provider))

    def answered(self, candidate: Candidate) -> None:
        """A call to `candidate` answered 2xx: counts this process kept of it start again."""
        if candidate.key_id in self._refused:
            self._refused.discard(candidate.key_id)
            self._spawn(self.counters.key_ok(candidate.key_id))
        provider = provider_of(candidate)
        if provider in self._failing:
            self._failing.discard(provider)
            self._spawn(self.counters.provider_ok(provider))

    async def _provider_failed(self, provider: str) -> None:
        self._failing.add(provider)
        cooldown = await self.counters.provider_failed(
            provider, settings.GATEWAY_COOLDOWN_FAILURES, settings.GATEWAY_COOLDOWN_WINDOW,
            settings.GATEWAY_COOLDOWN_SECONDS,
        )
        if cooldown:
            self._failing.discard(provider)
            now = time.monotonic()
            self._cooling[provider], self._started[provider] = now + cooldown, now
            log.warning("provider %s failed %d times within %gs: tried last for %gs", provider,
                        settings.GATEWAY_COOLDOWN_FAILURES, settings.GATEWAY_COOLDOWN_WINDOW, cooldown)

    async def _rejected(self, key_id: str, status: int | None) -> None:
        self._refused.add(key_id)
        count = await self.counters.key_rejected(key_id)
        if count < settings.GATEWAY_KEY_REJECTIONS:
            return
        self._refused.discard(key_id)
        await self.counters.key_ok(key_id)  # a key brought back counts from zero
        if await sync_to_async(_mark_invalid, thread_sensitive=False)(key_id, count, status):
            log.warning("provider key %s marked invalid: its provider refused it %d times in a row (HTTP %s)",
                        key_id, count, status)

    # --- tasks -----------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:  # health is advice: its store being away never fails a request
            log.warning("could not update provider health", exc_info=True)

    async def settled(self) -> None:
        """Waits for the counting under way (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


_health: Health | None = None


def get_health() -> Health:
    global _health
    if _health is None:
        _health = Health()
    return _health


def cooling_down() -> dict[str, float]:
    """provider → seconds left of its cool-down, as this gateway process sees it (for /metrics)."""
    return get_health().cooling()
