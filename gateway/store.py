"""Hard spend limits: reserve a request's worst-case cost before calling upstream, settle
to the real cost afterwards, release on failure.

Amounts are integer nano-dollars. Per API key the store keeps its total usage and what is
reserved in flight; per organization paying with credits, its total spend and reservations.
Totals start from the database's figures the first time a key or organization is seen, and
from then on the store is ahead of the database (which the usage-log task catches up).
The credits check compares against everything ever credited (balance + spent), which only
grows with top-ups, so a stale read can only refuse, never overspend.

Two implementations: Redis (atomic Lua scripts; shared by every gateway process) when
REDIS_URL is set, and process memory on the embedded default (one web process).
"""

import asyncio
from dataclasses import dataclass

from django.conf import settings

from core.redis import async_client

OK, USAGE_LIMIT, INSUFFICIENT_CREDITS = 0, 1, 2


@dataclass(frozen=True)
class Account:
    """Who pays for a request, with the database's figures for first use."""

    key_id: str
    key_limit: int | None  # nano-dollars; None: no limit
    key_usage: int  # from the database
    org_id: str
    org_credited: int | None  # credits + credits spent; None: credits do not pay
    org_spent: int  # from the database


class MemoryStore:
    def __init__(self) -> None:
        self.usage: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.spent: dict[str, int] = {}
        self.credit_reserved: dict[str, int] = {}

    async def reserve(self, account: Account, amount: int, hold: str = "") -> int:
        # No await between check and update: atomic within the event loop.
        usage = self.usage.setdefault(account.key_id, account.key_usage)
        if account.key_limit is not None and usage + self.reserved.get(account.key_id, 0) + amount > account.key_limit:
            return USAGE_LIMIT
        if account.org_credited is not None:
            spent = self.spent.setdefault(account.org_id, account.org_spent)
            if spent + self.credit_reserved.get(account.org_id, 0) + amount > account.org_credited:
                return INSUFFICIENT_CREDITS
            self.credit_reserved[account.org_id] = self.credit_reserved.get(account.org_id, 0) + amount
        self.reserved[account.key_id] = self.reserved.get(account.key_id, 0) + amount
        return OK

    async def settle(self, account: Account, reserved: int, actual: int, credits_actual: int, hold: str = "") -> None:
        """Releases `reserved` and adds the real cost; `credits_actual` is what credits paid."""
        self.usage[account.key_id] = self.usage.get(account.key_id, account.key_usage) + actual
        self.reserved[account.key_id] = self.reserved.get(account.key_id, 0) - reserved
        if account.org_credited is not None:
            self.credit_reserved[account.org_id] = self.credit_reserved.get(account.org_id, 0) - reserved
        if credits_actual:
            self.spent[account.org_id] = self.spent.get(account.org_id, account.org_spent) + credits_actual


_RESERVE = """
-- KEYS: key usage, key reserved, org spent, org reserved, key holds
-- ARGV: amount, key limit (-1: none), key usage from the db, org credited (-1: no credits), org spent from the db, hold id
redis.call('SET', KEYS[1], ARGV[3], 'NX')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 then
  local used = tonumber(redis.call('GET', KEYS[1])) + tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + amount > limit then return 1 end
end
local credited = tonumber(ARGV[4])
if credited >= 0 then
  redis.call('SET', KEYS[3], ARGV[5], 'NX')
  local spent = tonumber(redis.call('GET', KEYS[3])) + tonumber(redis.call('GET', KEYS[4]) or '0')
  if spent + amount > credited then return 2 end
  redis.call('INCRBY', KEYS[4], amount)
end
redis.call('INCRBY', KEYS[2], amount)
redis.call('HSET', KEYS[5], ARGV[6], amount)
return 0
"""

_SETTLE = """
-- KEYS: key usage, key reserved, org spent, org reserved, key holds
-- ARGV: reserved, actual, key usage from the db, credits reserved (0 or reserved), credits actual, org spent from the db, hold id
-- A hold is settled once: sent again (its first reply was lost), or for a reservation that
-- never ran, this does nothing.
if tonumber(ARGV[1]) > 0 and redis.call('HDEL', KEYS[5], ARGV[7]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'NX')
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('DECRBY', KEYS[2], ARGV[1])
if tonumber(ARGV[4]) > 0 then redis.call('DECRBY', KEYS[4], ARGV[4]) end
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[3], ARGV[6], 'NX')
  redis.call('INCRBY', KEYS[3], ARGV[5])
end
return 0
"""


class _Pipeliner:
    """Runs Lua scripts for many requests in one round trip: calls made in the same turn of
    the event loop go out together as one pipeline. Under load that is one write and one
    read for a dozen requests instead of a dozen of each."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, list[str], list[int | str], asyncio.Future[int]]] = []
        self._sha: dict[str, str] = {}

    async def run(self, source: str, keys: list[str], args: list[int | str]) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
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
    PREFIX = "llmgw:spend:"

    def __init__(self) -> None:
        self._pipeliners: dict[asyncio.AbstractEventLoop, _Pipeliner] = {}
        # Settlements that could not reach Redis: sent again once it answers, so that a
        # reservation is not held forever.
        self._unsettled: list[tuple[list[str], list[int | str]]] = []

    def _keys(self, account: Account) -> list[str]:
        p = self.PREFIX
        return [f"{p}usage:{account.key_id}", f"{p}res:{account.key_id}", f"{p}spent:{account.org_id}",
                f"{p}cres:{account.org_id}", f"{p}holds:{account.key_id}"]

    def _pipeliner(self) -> _Pipeliner:
        loop = asyncio.get_running_loop()
        if loop not in self._pipeliners:
            self._pipeliners[loop] = _Pipeliner()
        return self._pipeliners[loop]

    async def reserve(self, account: Account, amount: int, hold: str = "") -> int:
        """`hold` names the reservation (unique per request): settling it is then idempotent."""
        limit = -1 if account.key_limit is None else account.key_limit
        credited = -1 if account.org_credited is None else account.org_credited
        args: list[int | str] = [amount, limit, account.key_usage, credited, account.org_spent, hold]
        try:
            outcome = int(await self._pipeliner().run(_RESERVE, self._keys(account), args))
        except Exception:
            # Redis may have run the script and only its reply been lost: release the hold
            # once Redis answers again (a no-op if it never ran), or it is held for ever.
            self._unsettled.append((self._keys(account), self._settle_args(account, amount, 0, 0, hold)))
            raise
        if self._unsettled:
            await self._settle_backlog()
        return outcome

    @staticmethod
    def _settle_args(account: Account, reserved: int, actual: int, credits_actual: int, hold: str) -> list[int | str]:
        credits_reserved = reserved if account.org_credited is not None else 0
        return [reserved, actual, account.key_usage, credits_reserved, credits_actual, account.org_spent, hold]

    async def settle(self, account: Account, reserved: int, actual: int, credits_actual: int, hold: str = "") -> None:
        """Sent again later when it fails; the hold makes a second delivery a no-op."""
        args = self._settle_args(account, reserved, actual, credits_actual, hold)
        keys = self._keys(account)
        try:
            await self._pipeliner().run(_SETTLE, keys, args)
        except Exception:
            self._unsettled.append((keys, args))
            raise

    async def _settle_backlog(self) -> None:
        backlog, self._unsettled = self._unsettled, []
        # All at once, so the pipeliner sends them in one round trip: after a long outage
        # there is one per request that was refused or in flight, and the request that found
        # Redis back must not wait for thousands of round trips.
        results = await asyncio.gather(*(self._pipeliner().run(_SETTLE, keys, args) for keys, args in backlog),
                                       return_exceptions=True)
        self._unsettled.extend(item for item, result in zip(backlog, results, strict=True) if isinstance(result, BaseException))


_store: RedisStore | MemoryStore | None = None


def get_store() -> RedisStore | MemoryStore:
    global _store
    if _store is None:
        _store = RedisStore() if settings.REDIS_URL else MemoryStore()
    return _store
