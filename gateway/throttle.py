"""Brute force on API keys: a client address that keeps presenting invalid keys is slowed
down, on every gateway process together.

Failed lookups are counted per client address with `limits` (a fixed window), in Redis when
it is configured (every process shares the count) and in memory on the embedded defaults
(one web process). Keys a process already holds never touch the counter. An address over the
allowance is not locked out: it may still look up one unknown key per second, so a valid
key that was never used before still gets in behind a shared address (an office NAT) while
guessing crawls. The client address is the peer's, or, behind proxies listed in
TRUSTED_PROXIES, the one they forward (bin/run tells uvicorn which proxies to trust).
"""

import logging

from django.conf import settings
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

log = logging.getLogger(__name__)

MAX_FAILURES_PER_MINUTE = 20
FAILURES = RateLimitItemPerMinute(MAX_FAILURES_PER_MINUTE, namespace="llmgw-badkey")
TRICKLE = RateLimitItemPerSecond(1, namespace="llmgw-badkey-trickle")


def _storage() -> Storage:
    if settings.REDIS_URL:
        return RedisStorage("async+" + settings.REDIS_URL, implementation="redispy")
    return MemoryStorage()


class FailureThrottle:
    """Counts failed key lookups per client address; see the module's docstring."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.limiter = FixedWindowRateLimiter(storage or _storage())

    async def may_look_up(self, address: str) -> bool:
        """Whether an unknown key from this address may be looked up now: always under the
        allowance, once a second over it. A counter that cannot be reached lets it through
        (the lookup is the cost guarded, not a limit someone pays)."""
        try:
            if await self.limiter.test(FAILURES, address):
                return True
            return await self.limiter.hit(TRICKLE, address)
        except Exception:
            log.warning("invalid-key counter unavailable; not throttling", exc_info=True)
            return True

    async def failed(self, address: str) -> None:
        try:
            await self.limiter.hit(FAILURES, address)
        except Exception:
            log.warning("invalid-key counter unavailable; a failure went uncounted", exc_info=True)
