"""Brute force: a client that keeps presenting invalid keys is refused for a while.

Counted per client address and per process, in memory: the check costs a dictionary lookup
on the hot path and nothing on Redis. With several gateway processes a client gets the
allowance once per process, which still turns guessing into a crawl.
"""

import time

WINDOW_SECONDS = 60
MAX_FAILURES = 20


class FailureThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS):
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, tuple[int, float]] = {}  # address → (count, window start)

    def retry_after(self, address: str) -> int | None:
        """Seconds until this address may try again, or None when it may now."""
        entry = self._failures.get(address)
        if entry is None:
            return None
        count, started = entry
        left = started + self.window - time.monotonic()
        if left <= 0:
            del self._failures[address]
            return None
        return int(left) + 1 if count >= self.max_failures else None

    def failed(self, address: str) -> None:
        now = time.monotonic()
        count, started = self._failures.get(address, (0, now))
        if now - started > self.window:
            count, started = 0, now
        self._failures[address] = (count + 1, started)
        if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest half
            for key in sorted(self._failures, key=lambda k: self._failures[k][1])[:50_000]:
                del self._failures[key]
