"""Brute force on API keys: a client address presenting invalid keys is slowed down, on every
gateway process together, without locking out valid keys behind the same address."""

import asyncio
import http.client
import json
import time

import pytest
from django.conf import settings
from limits.aio.storage import MemoryStorage

from gateway.throttle import MAX_FAILURES_PER_MINUTE, FailureThrottle


@pytest.fixture(autouse=True)
def fresh_counts():
    """With Redis the counts outlive a test (a minute's window): start from none."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(match="LIMITS*"):
            client.delete(key)


def test_over_the_allowance_an_address_may_look_up_one_key_a_second():
    throttle = FailureThrottle(MemoryStorage())

    async def scenario() -> list[bool]:
        for _ in range(MAX_FAILURES_PER_MINUTE):
            assert await throttle.may_look_up("1.2.3.4")
            await throttle.failed("1.2.3.4")
        over = [await throttle.may_look_up("1.2.3.4") for _ in range(3)]
        elsewhere = await throttle.may_look_up("5.6.7.8")
        await asyncio.sleep(1.05)
        return [*over, elsewhere, await throttle.may_look_up("1.2.3.4")]

    assert asyncio.run(scenario()) == [True, False, False, True, True]


def _get_models(gateway, key: str, source: str = "127.0.0.2"):
    """GET /v1/models from another loopback address, so this test's count stays its own."""
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), source_address=(source, 0), timeout=5)
    conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, dict(response.getheaders()), body


def test_repeated_invalid_keys_get_429_while_warm_keys_keep_working(gateway, project, key_for):
    good = key_for(project)
    assert _get_models(gateway, good)[0] == 200  # warm: held by the gateway now
    statuses = [_get_models(gateway, f"llmgw_guess{i}")[0] for i in range(MAX_FAILURES_PER_MINUTE)]
    assert statuses == [401] * MAX_FAILURES_PER_MINUTE

    over = [_get_models(gateway, f"llmgw_guess-again{i}") for i in range(3)]

    assert [status for status, _, _ in over].count(429) >= 2  # one lookup a second at most
    status, headers, body = next(answer for answer in over if answer[0] == 429)
    assert body["error"]["code"] == "rate_limited" and int(headers["retry-after"]) >= 1
    assert _get_models(gateway, good)[0] == 200
    assert _get_models(gateway, "llmgw_guess-elsewhere", source="127.0.0.3")[0] == 401


def test_a_valid_key_never_used_before_gets_in_behind_a_guessing_address(gateway, project, key_for):
    for i in range(MAX_FAILURES_PER_MINUTE + 3):
        _get_models(gateway, f"llmgw_noise{i}", source="127.0.0.4")
    fresh = key_for(project)  # nobody presented it yet: no process holds it

    deadline, status = time.monotonic() + 3, None
    while time.monotonic() < deadline and status != 200:
        status = _get_models(gateway, fresh, source="127.0.0.4")[0]
        time.sleep(0.3)

    assert status == 200
