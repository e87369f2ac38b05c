"""Hard spend limits: reserve a request's worst-case cost before calling upstream, settle
to the real cost afterwards, release on failure; and the usage record made durable with the
settlement.

Amounts are integer nano-dollars. Per API key the store keeps its total usage and what is
reserved in flight, and, for a key with a recurring limit, its usage in the current window
(core/periods.py); per organization paying with credits, its total spend and reservations.
A request counts in the window it was reserved in, whenever it settles; the window's check
also counts every hold of the key in flight (those of the window before included), so a new
window can refuse early, never overspend.
Totals start from the database's figures the first time a key or organization is seen, and
from then on the store is ahead of the database (which ingestion catches up).
The credits check compares against everything ever credited (balance + spent), which only
grows with top-ups, so a stale read can only refuse, never overspend.

Each reservation is a hold with an id. A hold expires GATEWAY_HOLD_SECONDS after it was made
or last renewed (the process holding it renews its holds while their requests live), so a
process killed mid-request cannot keep a key's limit held: the next reservation anywhere, or
the periodic sweep, releases expired holds. Settling a hold is idempotent (a settlement sent
again after a lost reply changes nothing twice) and adds the real cost even after expiry.

Two implementations: Redis (atomic Lua scripts shared by every gateway process; the usage
record goes onto a Redis stream in the same script that settles, so an answered request's
record survives the process) when REDIS_URL is set, and process memory on the embedded
default (one web process; records go to the in-process ingester, gateway/usagelog.py).
Both report the organization's configuration version with each reservation (core/events.py).
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings

from core import events, metrics
from core.redis import async_client, sync_client
from gateway.record import USAGE_STREAM

OK, USAGE_LIMIT, INSUFFICIENT_CREDITS, PERIOD_LIMIT = 0, 1, 2, 3
PREFIX = "llmgw:spend:"
HOLDS = PREFIX + "holds"  # sorted set: hold id, scored by its expiry (ms since the epoch)


@dataclass(frozen=True)
class Account:
    """Who pays for a request, with the database's figures for first use."""

    key_id: str
    key_limit: int | None  # nano-dollars; None: no limit
    key_usage: int  # from the database
    org_id: str
    org_credited: int | None  # credits + credits spent; None: credits do not pay
    org_spent: int  # from the database
    period_limit: int | None = None  # nano-dollars per window; None: no recurring limit
    period: str = ""  # the window the request counts in (core/periods.window_id)
    period_usage: int = 0  # what the database counted in that window
    period_ttl: int = 0  # seconds the window's counter is kept: until its end and a day more


@dataclass(frozen=True)
class Admission:
    """A reservation's outcome (OK, USAGE_LIMIT or INSUFFICIENT_CREDITS), the organization's
    configuration version at that moment, and on a refusal what the refusing limit had left
    (nano-dollars, after what others hold; may be negative)."""

    outcome: int
    config_version: int
    remaining: int = 0


RecordSink = Callable[[bytes], None]


class MemoryStore:
    """The embedded default: one web process, so its memory is the only place that counts.
    Holds need no expiry: they die with the process that holds them."""

    def __init__(self) -> None:
        self.usage: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.spent: dict[str, int] = {}
        self.credit_reserved: dict[str, int] = {}
        self.holds: dict[str, tuple[int, bool]] = {}  # hold → (amount, credits reserved too)
        self.windows: dict[tuple[str, str], int] = {}  # (key, window) → usage in it
        self.sink: RecordSink | None = None  # where records go (the in-process ingester)

    async def reserve(self, account: Account, amount: int, hold: str) -> Admission:
        # No await between check and update: atomic within the event loop.
        version = events.local_config_version(account.org_id)
        usage = self.usage.setdefault(account.key_id, account.key_usage)
        used = usage + self.reserved.get(account.key_id, 0)
        if account.key_limit is not None and used + amount > account.key_limit:
            return Admission(USAGE_LIMIT, version, account.key_limit - used)
        if account.period_limit is not None:
            in_period = self.windows.setdefault((account.key_id, account.period), account.period_usage)
            in_period += self.reserved.get(account.key_id, 0)
            if in_period + amount > account.period_limit:
                return Admission(PERIOD_LIMIT, version, account.period_limit - in_period)
        if account.org_credited is not None:
            spent = self.spent.setdefault(account.org_id, account.org_spent)
            spent += self.credit_reserved.get(account.org_id, 0)
            if spent + amount > account.org_credited:
                return Admission(INSUFFICIENT_CREDITS, version, account.org_credited - spent)
            self.credit_reserved[account.org_id] = self.credit_reserved.get(account.org_id, 0) + amount
        self.reserved[account.key_id] = self.reserved.get(account.key_id, 0) + amount
        self.holds[hold] = (amount, account.org_credited is not None)
        return Admission(OK, version)

    async def settle(self, account: Account, hold: str, reserved: int, actual: int, credits_actual: int,
                     record: bytes | None = None) -> None:
        """Releases the hold and adds the real cost; `credits_actual` is what credits paid.
        `reserved` is 0 when nothing was held. The record goes to the sink either way."""
        held = self.holds.pop(hold, None)
        if held is not None or reserved == 0:
            amount, with_credits = held or (0, False)
            self.reserved[account.key_id] = self.reserved.get(account.key_id, 0) - amount
            if with_credits:
                self.credit_reserved[account.org_id] = self.credit_reserved.get(account.org_id, 0) - amount
            self.usage[account.key_id] = self.usage.get(account.key_id, account.key_usage) + actual
            if account.period_limit is not None:
                window = (account.key_id, account.period)
                self.windows[window] = self.windows.get(window, account.period_usage) + actual
            if credits_actual:
                self.spent[account.org_id] = self.spent.get(account.org_id, account.org_spent) + credits_actual
        if record is not None:
            await self.record(record)

    async def record(self, record: bytes) -> None:
        """A usage record with nothing to settle (a refusal, a cache hit)."""
        if self.sink is not None:
            self.sink(record)

    async def renew(self, holds: list[str]) -> None:
        pass

    async def key_usage(self, key_id: str, db_usage: int) -> tuple[int, int]:
        """(usage, reserved in flight) of a key, nano-dollars."""
        return self.usage.get(key_id, db_usage), self.reserved.get(key_id, 0)

    async def period_usage(self, key_id: str, period: str, db_usage: int) -> int:
        """A key's usage in a window, nano-dollars."""
        return self.windows.get((key_id, period), db_usage)

    async def config_version(self, org_id: str) -> int:
        return events.local_config_version(org_id)


# Releases up to 100 expired holds (a Lua fragment both scripts start with). A hold's value
# is "A|amount|credits(0/1)|key id|org id" while active; an expired one becomes "E|…" for a
# day, so that its settlement, should it still come, adds the cost without releasing twice.
_EXPIRE = """
local function expire_holds(now)
  local expired = redis.call('ZRANGEBYSCORE', '__HOLDS__', '-inf', now, 'LIMIT', 0, 100)
  for _, hold in ipairs(expired) do
    local value = redis.call('GET', '__PREFIX__hold:' .. hold)
    if value and string.sub(value, 1, 1) == 'A' then
      local _, _, amount, credits, key, org = string.find(value, '^A|(%d+)|(%d)|([^|]*)|(.*)$')
      redis.call('DECRBY', '__PREFIX__res:' .. key, amount)
      if credits == '1' then redis.call('DECRBY', '__PREFIX__cres:' .. org, amount) end
      redis.call('SET', '__PREFIX__hold:' .. hold, 'E' .. string.sub(value, 2), 'EX', 86400)
    end
    redis.call('ZREM', '__HOLDS__', hold)
  end
end
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
""".replace("__HOLDS__", HOLDS).replace("__PREFIX__", PREFIX)

_RESERVE = _EXPIRE + """
-- KEYS: key usage, key reserved, org spent, org reserved, the hold, the holds set, org config version,
--       key usage in the window
-- ARGV: amount, key limit (-1: none), key usage from the db, org credited (-1: no credits),
--       org spent from the db, hold id, hold lifetime (ms), key id, org id,
--       window limit (-1: none), window usage from the db, window counter lifetime (s)
-- Returns {outcome, config version, what the refusing limit has left (0 when admitted)}.
expire_holds(now)
local version = tonumber(redis.call('GET', KEYS[7]) or '0')
redis.call('SET', KEYS[1], ARGV[3], 'NX')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
if limit >= 0 then
  local used = tonumber(redis.call('GET', KEYS[1])) + reserved
  if used + amount > limit then return {1, version, limit - used} end
end
local period_limit = tonumber(ARGV[10])
if period_limit >= 0 then
  redis.call('SET', KEYS[8], ARGV[11], 'NX', 'EX', ARGV[12])
  local used = tonumber(redis.call('GET', KEYS[8])) + reserved
  if used + amount > period_limit then return {3, version, period_limit - used} end
end
local credited = tonumber(ARGV[4])
local credits = '0'
if credited >= 0 then
  redis.call('SET', KEYS[3], ARGV[5], 'NX')
  local spent = tonumber(redis.call('GET', KEYS[3])) + tonumber(redis.call('GET', KEYS[4]) or '0')
  if spent + amount > credited then return {2, version, credited - spent} end
  redis.call('INCRBY', KEYS[4], amount)
  credits = '1'
end
redis.call('INCRBY', KEYS[2], amount)
redis.call('SET', KEYS[5], 'A|' .. ARGV[1] .. '|' .. credits .. '|' .. ARGV[8] .. '|' .. ARGV[9])
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[7]), ARGV[6])
return {0, version, 0}
"""

_SETTLE = _EXPIRE + """
-- KEYS: key usage, key reserved, org spent, org reserved, the hold, the holds set, the usage stream,
--       key usage in the window the request was reserved in
-- ARGV: reserved (0: nothing was held), actual, key usage from the db, credits actual,
--       org spent from the db, hold id, the usage record (JSON; "" for none),
--       window limit (-1: none), window usage from the db, window counter lifetime (s)
-- Counters move once per hold however often this is sent; the record always goes onto the
-- stream (ingestion stores each log id once).
expire_holds(now)
local value = redis.call('GET', KEYS[5])
local count = false
if value and string.sub(value, 1, 1) == 'A' then
  local _, _, amount, credits = string.find(value, '^A|(%d+)|(%d)|')
  redis.call('DECRBY', KEYS[2], amount)
  if credits == '1' then redis.call('DECRBY', KEYS[4], amount) end
  redis.call('ZREM', KEYS[6], ARGV[6])
  redis.call('DEL', KEYS[5])
  count = true
elseif value and string.sub(value, 1, 1) == 'E' then
  redis.call('DEL', KEYS[5])
  count = true
elseif not value and tonumber(ARGV[1]) == 0 then
  redis.call('SET', KEYS[5], 'S', 'EX', 3600)
  count = true
end
if count then
  redis.call('SET', KEYS[1], ARGV[3], 'NX')
  redis.call('INCRBY', KEYS[1], ARGV[2])
  if tonumber(ARGV[8]) >= 0 then
    redis.call('SET', KEYS[8], ARGV[9], 'NX', 'EX', ARGV[10])
    redis.call('INCRBY', KEYS[8], ARGV[2])
  end
  if tonumber(ARGV[4]) > 0 then
    redis.call('SET', KEYS[3], ARGV[5], 'NX')
    redis.call('INCRBY', KEYS[3], ARGV[4])
  end
end
if ARGV[7] ~= '' then redis.call('XADD', KEYS[7], '*', 'r', ARGV[7]) end
return 0
"""

_RECORD = """
redis.call('XADD', KEYS[1], '*', 'r', ARGV[1])
return 0
"""

_SWEEP = _EXPIRE + """
expire_holds(now)
return redis.call('ZCOUNT', '__HOLDS__', '-inf', now)
""".replace("__HOLDS__", HOLDS)


class _Pipeliner:
    """Runs Lua scripts for many requests in one round trip: calls made in the same turn of
    the event loop go out together as one pipeline. Under load that is one write and one
    read for a dozen requests instead of a dozen of each."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, list[str], list[int | str], asyncio.Future[Any]]] = []
        self._sha: dict[str, str] = {}

    async def run(self, source: str, keys: list[str], args: list[int | str]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))
        self._pending.append((source, keys, args, future))
        return await future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        client = async_client()
        try:
            for source in {source for source, *_ in batch} - set(self._sha):
                self._sha[source] = await client.script_load(source)
            pipe = client.pipeline(transaction=False)
            for source, keys, args, _ in batch:
                # redis-py types script arguments as str, but encodes ints as well
                pipe.evalsha(self._sha[source], len(keys), *keys, *args)  # type: ignore[arg-type]
            results = await pipe.execute(raise_on_error=False)
        except Exception as e:  # Redis unreachable: every caller of this batch hears it
            self._sha.clear()
            results = [e] * len(batch)
        for (_, _, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                if "NOSCRIPT" in str(result):
                    self._sha.clear()  # Redis restarted and forgot the scripts: load again next time
                future.set_exception(result)
            else:
                future.set_result(result)


class RedisStore:
    """Every gateway process shares the counters, holds and usage stream in Redis."""

    def __init__(self) -> None:
        self._pipeliners: dict[asyncio.AbstractEventLoop, _Pipeliner] = {}
        # Settlements that could not reach Redis: sent again once it answers, so that a
        # reservation is released and the record stored.
        self._unsettled: list[tuple[list[str], list[int | str]]] = []

    @staticmethod
    def _keys(account: Account, hold: str) -> list[str]:
        return [f"{PREFIX}usage:{account.key_id}", f"{PREFIX}res:{account.key_id}", f"{PREFIX}spent:{account.org_id}",
                f"{PREFIX}cres:{account.org_id}", f"{PREFIX}hold:{hold}", HOLDS]

    @staticmethod
    def _period_key(key_id: str, period: str) -> str:
        return f"{PREFIX}pusage:{key_id}:{period}"

    @staticmethod
    def _period_args(account: Account) -> list[int | str]:
        limit = -1 if account.period_limit is None else account.period_limit
        return [limit, account.period_usage, max(account.period_ttl, 1)]

    def _pipeliner(self) -> _Pipeliner:
        loop = asyncio.get_running_loop()
        if loop not in self._pipeliners:
            self._pipeliners[loop] = _Pipeliner()
        return self._pipeliners[loop]

    async def reserve(self, account: Account, amount: int, hold: str) -> Admission:
        """`hold` names the reservation (unique per request): settling it is then idempotent."""
        limit = -1 if account.key_limit is None else account.key_limit
        credited = -1 if account.org_credited is None else account.org_credited
        keys = [*self._keys(account, hold), events.CONFIG_VERSION_KEY.format(account.org_id),
                self._period_key(account.key_id, account.period)]
        args: list[int | str] = [amount, limit, account.key_usage, credited, account.org_spent, hold,
                                 int(settings.GATEWAY_HOLD_SECONDS * 1000), account.key_id, account.org_id,
                                 *self._period_args(account)]
        try:
            outcome, version, remaining = await self._pipeliner().run(_RESERVE, keys, args)
        except Exception:
            # Redis may have run the script and only its reply been lost: release the hold
            # once Redis answers again (a no-op if it never ran). It would expire anyway.
            self._unsettled.append(self._settle_call(account, hold, amount, 0, 0, b""))
            raise
        if self._unsettled:
            await self._settle_backlog()
        return Admission(int(outcome), int(version), int(remaining))

    def _settle_call(self, account: Account, hold: str, reserved: int, actual: int, credits_actual: int,
                     record: bytes) -> tuple[list[str], list[int | str]]:
        keys = [*self._keys(account, hold), USAGE_STREAM, self._period_key(account.key_id, account.period)]
        args: list[int | str] = [reserved, actual, account.key_usage, credits_actual, account.org_spent, hold,
                                 record.decode(), *self._period_args(account)]
        return keys, args

    async def settle(self, account: Account, hold: str, reserved: int, actual: int, credits_actual: int,
                     record: bytes | None = None) -> None:
        """Releases the hold, adds the real cost and puts the record on the usage stream, in
        one atomic script. Sent again later when it fails; the hold makes a second delivery
        change the counters once."""
        keys, args = self._settle_call(account, hold, reserved, actual, credits_actual, record or b"")
        try:
            await self._pipeliner().run(_SETTLE, keys, args)
        except Exception:
            self._unsettled.append((keys, args))
            raise
        if record:
            metrics.USAGE_QUEUED.inc()

    async def record(self, record: bytes) -> None:
        """A usage record with nothing to settle (a refusal, a cache hit), onto the stream."""
        await self._pipeliner().run(_RECORD, [USAGE_STREAM], [record.decode()])
        metrics.USAGE_QUEUED.inc()

    async def renew(self, holds: list[str]) -> None:
        """Pushes these holds' expiry GATEWAY_HOLD_SECONDS ahead (those already expired stay
        expired: XX only updates members still there)."""
        if not holds:
            return
        expiry = int((time.time() + settings.GATEWAY_HOLD_SECONDS) * 1000)
        client = async_client()
        for start in range(0, len(holds), 1000):
            chunk = holds[start:start + 1000]
            await client.zadd(HOLDS, dict.fromkeys(chunk, expiry), xx=True)

    async def config_version(self, org_id: str) -> int:
        return int(await async_client().get(events.CONFIG_VERSION_KEY.format(org_id)) or 0)

    async def key_usage(self, key_id: str, db_usage: int) -> tuple[int, int]:
        """(usage, reserved in flight) of a key, nano-dollars; the database's usage until the
        store has counted for it."""
        usage, reserved = await async_client().mget([f"{PREFIX}usage:{key_id}", f"{PREFIX}res:{key_id}"])
        return (db_usage if usage is None else int(usage)), int(reserved or 0)

    async def period_usage(self, key_id: str, period: str, db_usage: int) -> int:
        """A key's usage in a window, nano-dollars; the database's until the store counted in it."""
        usage = await async_client().get(self._period_key(key_id, period))
        return db_usage if usage is None else int(usage)

    async def _settle_backlog(self) -> None:
        backlog, self._unsettled = self._unsettled, []
        # All at once, so the pipeliner sends them in one round trip: after a long outage
        # there is one per request that was refused or in flight, and the request that found
        # Redis back must not wait for thousands of round trips.
        results = await asyncio.gather(*(self._pipeliner().run(_SETTLE, keys, args) for keys, args in backlog),
                                       return_exceptions=True)
        self._unsettled.extend(item for item, result in zip(backlog, results, strict=True) if isinstance(result, BaseException))
        metrics.USAGE_QUEUED.inc(sum(1 for (_, args), result in zip(backlog, results, strict=True)
                                     if args[6] and not isinstance(result, BaseException)))


def sweep_expired_holds() -> int:
    """Releases holds whose process stopped renewing them (a periodic task; reservations do
    it too as they go). Returns how many expired holds remain (more than one sweep's worth)."""
    if not settings.REDIS_URL:
        return 0
    return int(cast(int, sync_client().eval(_SWEEP, 0)))  # redis-py's sync answer, typed as a union


_store: RedisStore | MemoryStore | None = None


def get_store() -> RedisStore | MemoryStore:
    global _store
    if _store is None:
        _store = RedisStore() if settings.REDIS_URL else MemoryStore()
    return _store
