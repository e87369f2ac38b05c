"""Per-key rate limits (requests and tokens per minute): the limiter on memory storage (counts,
corrections, headers, Retry-After, nothing stored for a key without limits, failing open),
then end to end: chat completions, /v1/messages and /v1/embeddings refused with 429 and
OpenAI's headers past the limit, a large prompt refused on tokens, and a burst spread over
three gateway processes on one Redis admitting exactly the limit."""

import asyncio
import logging
import re
import time
from collections import Counter
from decimal import Decimal

import httpx
import orjson
import pytest
from limits.aio.storage import MemoryStorage

from apikeys.models import ApiKey
from core import events
from core.hashing import sha256_hex
from gateway import ratelimit
from gateway.errors import GatewayError
from gateway.ratelimit import RateLimiter, duration, estimate, tokens_wait
from gateway.snapshot import KeySnapshot
from tests.gateway.conftest import eventually
from tests.reliability.conftest import RedisServer, base_env, processes, send_all  # noqa: F401  (fixtures)
from usage.models import UsageLog
from usage.services import credits_add

RESET = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?s$|^\d+ms$")
TRIO = ("x-ratelimit-limit-{}", "x-ratelimit-remaining-{}", "x-ratelimit-reset-{}")


def snapshot(key_id: str = "key_1", rpm: int | None = None, tpm: int | None = None) -> KeySnapshot:
    return KeySnapshot(
        key_id=key_id, key_active=True, disabled_reason=None, usage_limit=None, usage=Decimal(0), project_id="proj_1",
        project_active=True, mode="credits", caching_enabled=False, cache_duration_seconds=0, cache_version=0,
        org_id="org_1", org_active=True, credits=Decimal(0), credits_spent=Decimal(0), rules=(), own_keys={},
        custom_keys={}, rate_limit_rpm=rpm, rate_limit_tpm=tpm,
    )


def away_from_a_minute_boundary(margin: float) -> None:
    """On memory storage the tokens' windows turn at each minute of the clock; a test whose
    exact counts must stay in one window starts `margin` seconds clear of a turn."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


def refusal(coroutine) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        asyncio.run(coroutine)
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    return caught.value


# --- the limiter ------------------------------------------------------------------------------------


def test_requests_per_minute_admit_the_limit_then_refuse_with_retry_after_and_headers():
    limiter = RateLimiter(MemoryStorage())
    key = snapshot(rpm=3)

    async def three():
        return [await limiter.admit(key, 10) for _ in range(3)]

    admitted = asyncio.run(three())
    assert [a.headers["x-ratelimit-remaining-requests"] for a in admitted] == ["2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "3" for a in admitted)
    assert all(RESET.match(a.headers["x-ratelimit-reset-requests"]) for a in admitted)
    assert not any(name.endswith("-tokens") for name in admitted[0].headers)  # no token limit: no token headers

    error = refusal(limiter.admit(key, 10))
    retry = int(error.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert error.message == f"This API key's limit of 3 requests per minute is reached; retry in {retry} s."
    assert error.headers["x-ratelimit-limit-requests"] == "3" and error.headers["x-ratelimit-remaining-requests"] == "0"
    assert RESET.match(error.headers["x-ratelimit-reset-requests"])
    # another key has its own window
    assert asyncio.run(limiter.admit(snapshot("key_2", rpm=3), 10)) is not None


def test_concurrent_requests_admit_exactly_the_limit():
    limiter = RateLimiter(MemoryStorage())

    async def burst():
        return await asyncio.gather(*(limiter.admit(snapshot(rpm=10), 1) for _ in range(25)), return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert sum(isinstance(o, ratelimit.Admitted) for o in outcomes) == 10
    assert all(isinstance(o, GatewayError) and o.status == 429 for o in outcomes if not isinstance(o, ratelimit.Admitted))


def test_tokens_per_minute_count_the_estimate_and_refuse_what_does_not_fit():
    away_from_a_minute_boundary(3)
    limiter = RateLimiter(MemoryStorage())
    key = snapshot(tpm=1000)

    async def two():
        return [await limiter.admit(key, 400) for _ in range(2)]

    first, second = asyncio.run(two())
    assert (first.tokens, second.tokens) == (400, 400)
    assert [a.headers["x-ratelimit-remaining-tokens"] for a in (first, second)] == ["600", "200"]
    assert second.headers["x-ratelimit-limit-tokens"] == "1000" and RESET.match(second.headers["x-ratelimit-reset-tokens"])

    error = refusal(limiter.admit(key, 400))
    retry = int(error.headers["Retry-After"])
    assert 1 <= retry <= 120
    assert error.message == (f"This API key's limit of 1000 tokens per minute is reached (this request counts 400); "
                             f"retry in {retry} s.")
    assert error.headers["x-ratelimit-remaining-tokens"] == "200"

    too_large = refusal(limiter.admit(key, 1001))
    assert "more than this API key's limit of 1000 tokens per minute" in too_large.message
    assert too_large.headers["Retry-After"] == "60"
    assert asyncio.run(limiter.admit(key, 200)).headers["x-ratelimit-remaining-tokens"] == "0"  # what fits still does


def test_a_request_refused_on_requests_counts_no_tokens():
    away_from_a_minute_boundary(3)
    limiter = RateLimiter(MemoryStorage())
    key = snapshot(rpm=1, tpm=1000)
    first = asyncio.run(limiter.admit(key, 100))
    assert first.headers["x-ratelimit-remaining-tokens"] == "900" and first.headers["x-ratelimit-remaining-requests"] == "0"
    error = refusal(limiter.admit(key, 100))
    assert "1 requests per minute" in error.message
    assert error.headers["x-ratelimit-remaining-tokens"] == "900"
    assert all(error.headers[name.format(kind)] for name in TRIO for kind in ("requests", "tokens"))


def test_settlement_adds_what_the_provider_counted_beyond_the_estimate():
    away_from_a_minute_boundary(3)
    limiter = RateLimiter(MemoryStorage())
    key = snapshot(tpm=1000)

    async def scenario():
        admitted = await limiter.admit(key, 100)
        limiter.settle(admitted, 50)  # fewer: nothing to give back, nothing added
        await limiter.drain()
        after_fewer = (await limiter.admit(key, 100)).headers["x-ratelimit-remaining-tokens"]
        limiter.settle(admitted, 600)  # 500 more than counted
        await limiter.drain()
        after_more = (await limiter.admit(key, 100)).headers["x-ratelimit-remaining-tokens"]
        over = await limiter.admit(key, 100)
        limiter.settle(over, 5000)  # counted even past the limit: those tokens were used
        await limiter.drain()
        return after_fewer, after_more

    assert asyncio.run(scenario()) == ("800", "200")
    error = refusal(limiter.admit(key, 1))
    assert error.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_wait_for_tokens_follows_the_sliding_window():
    # room enough once the previous minute's weight fades: 1000 left of its 1000 at 60 s, half at 30 s
    assert tokens_wait(1000, 500, (1000, 60.0, 0, 0.0)) == pytest.approx(30)
    assert tokens_wait(1000, 100, (900, 30.0, 0, 0.0)) == 0
    # the current minute alone is too full: it must turn (in 40 s), then fade to 900
    assert tokens_wait(1000, 100, (0, 0.0, 950, 100.0)) == pytest.approx(40 + 60 * (1 - 900 / 950))


def test_durations_are_written_the_way_openai_writes_them():
    assert [duration(s) for s in (0, 0.02, 0.0201, 1, 12.5, 59.9994, 60, 360, 3725)] == [
        "0s", "20ms", "21ms", "1s", "12.5s", "1m0s", "1m0s", "6m0s", "1h2m5s"]


def test_the_estimate_is_the_prompt_plus_the_output_cap():
    assert estimate(50, {"model": "m"}) == 50
    assert estimate(50, {"max_tokens": 100}) == 150
    assert estimate(50, {"max_completion_tokens": 100, "n": 3}) == 350


class Untouchable(MemoryStorage):
    """Storage that fails the test if it is asked anything once armed."""

    armed = False

    def __getattribute__(self, name):
        if name in ("incr", "get", "acquire_entry", "get_moving_window", "acquire_sliding_window_entry",
                    "get_sliding_window", "get_expiry", "clear", "reset", "check"):
            if super().__getattribute__("armed"):
                raise AssertionError(f"storage touched: {name}")
        return super().__getattribute__(name)


def test_a_key_without_limits_never_touches_the_storage():
    storage = Untouchable()
    limiter = RateLimiter(storage)
    storage.armed = True
    assert asyncio.run(limiter.admit(snapshot(), 10_000)) is None
    limiter.settle(None, 10_000)
    assert asyncio.run(ratelimit.admit(snapshot(), 10)) is None  # the module's limiter is not even made for it


class Unreachable(MemoryStorage):
    async def acquire_entry(self, *args, **kwargs):
        raise ConnectionError("Redis is away")

    async def acquire_sliding_window_entry(self, *args, **kwargs):
        raise ConnectionError("Redis is away")


def test_unreachable_counters_let_requests_through_with_a_warning(caplog):
    limiter = RateLimiter(Unreachable())
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        assert asyncio.run(limiter.admit(snapshot(rpm=1, tpm=10), 5)) is None
        assert asyncio.run(limiter.admit(snapshot(rpm=1, tpm=10), 5)) is None

        async def settle():
            limiter.settle(ratelimit.Admitted("key_1", 10, 5), 50)
            await limiter.drain()

        asyncio.run(settle())
    assert "not rate limiting" in caplog.text and "went uncounted" in caplog.text


# --- end to end ---------------------------------------------------------------------------------------


CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20})
MESSAGES = orjson.dumps({"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]})
EMBEDDINGS = orjson.dumps({"model": "text-embedding-3-small", "input": "The quick brown fox"})


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


def limited(token: str, rpm: int | None = None, tpm: int | None = None) -> None:
    """Sets the key's limits on its row and tells the gateways, as the API's services do."""
    key = ApiKey.objects.select_related("project").get(token_hash=sha256_hex(token))
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_rpm=rpm, rate_limit_tpm=tpm)
    events.config_changed(key.project.organization_id)


def post(url: str, path: str, token: str, raw: bytes, request_id: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(f"{url}{path}", content=raw, headers=headers, timeout=20)


def check_refused(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-limit-requests"] == str(limit)
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert RESET.match(response.headers["x-ratelimit-reset-requests"])


@pytest.mark.parametrize("path, raw", [("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES),
                                       ("/v1/embeddings", EMBEDDINGS)], ids=["chat", "messages", "embeddings"])
def test_a_key_limited_to_five_requests_a_minute_gets_five_answers_then_429(gateway, project, key_for, paid, path, raw):
    token = key_for(project)
    limited(token, rpm=5)
    answers = [post(gateway.url, path, token, raw) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5, answers[-1].text
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["4", "3", "2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "5" for a in answers)

    refused = post(gateway.url, path, token, raw, request_id=f"rl-refused-{path.rsplit('/', 1)[1]}")
    check_refused(refused, 5)
    if path != "/v1/messages":  # Anthropic's error shape there
        error = refused.json()["error"]
        assert (error["code"], error["type"]) == ("rate_limited", "rate_limit_error")
        assert error["message"].startswith("This API key's limit of 5 requests per minute is reached; retry in ")
    else:
        assert refused.json()["error"]["type"] == "rate_limit_error"
    row = eventually(lambda: UsageLog.objects.filter(request_id=refused.headers["x-request-id"]).first())
    assert row is not None and row.status_code == 429 and row.cost == 0


def test_a_stream_carries_the_headers_too(gateway, project, key_for, paid):
    token = key_for(project)
    limited(token, rpm=2, tpm=10_000)
    raw = orjson.dumps({**orjson.loads(CHAT), "stream": True})
    answer = post(gateway.url, "/v1/chat/completions", token, raw)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-ratelimit-remaining-requests"] == "1"
    assert answer.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 10_000


def test_a_large_prompt_is_refused_on_tokens(gateway, project, key_for, paid, fake_upstream):
    away_from_a_minute_boundary(8)
    token = key_for(project)
    limited(token, tpm=3000)
    fake_upstream.usage = (10, 5)  # fewer than estimated: nothing to correct
    big = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 100,
                        "messages": [{"role": "user", "content": "lorem ipsum " * 500}]})  # ~1,600 tokens counted
    counted = estimate(len(big) // 4, orjson.loads(big))

    first = post(gateway.url, "/v1/chat/completions", token, big)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-tokens"] == "3000"
    assert first.headers["x-ratelimit-remaining-tokens"] == str(3000 - counted)

    second = post(gateway.url, "/v1/chat/completions", token, big)
    assert second.status_code == 429
    assert second.json()["error"]["message"].startswith(
        f"This API key's limit of 3000 tokens per minute is reached (this request counts {counted}); retry in ")
    assert 1 <= int(second.headers["retry-after"]) <= 120
    assert second.headers["x-ratelimit-remaining-tokens"] == str(3000 - counted)
    assert RESET.match(second.headers["x-ratelimit-reset-tokens"])

    huge = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "lorem ipsum " * 1200}]})
    too_large = post(gateway.url, "/v1/chat/completions", token, huge)
    assert too_large.status_code == 429 and too_large.headers["retry-after"]
    assert "more than this API key's limit of 3000 tokens per minute" in too_large.json()["error"]["message"]
    assert len([c for c in fake_upstream.calls if c.endpoint == "generate"]) == 1


def test_tokens_the_provider_counted_beyond_the_estimate_count_too(gateway, project, key_for, paid, fake_upstream):
    away_from_a_minute_boundary(8)
    token = key_for(project)
    limited(token, tpm=1000)
    fake_upstream.usage = (600, 100)  # far more than the ~30 tokens the gateway estimates
    counted = estimate(len(CHAT) // 4, orjson.loads(CHAT))

    assert post(gateway.url, "/v1/chat/completions", token, CHAT).status_code == 200
    time.sleep(0.2)  # the correction is sent after the answer, in the background
    second = post(gateway.url, "/v1/chat/completions", token, CHAT)
    assert second.status_code == 200
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 700 - counted)
    time.sleep(0.2)
    third = post(gateway.url, "/v1/chat/completions", token, CHAT)  # 700 + 700 + counted: past the limit
    assert third.status_code == 429 and "tokens per minute" in third.json()["error"]["message"]


# --- three processes, one Redis ---------------------------------------------------------------------


def test_a_burst_over_three_processes_on_one_redis_admits_exactly_the_limit(processes, base_env, project, key_for,
                                                                           paid, fake_upstream):
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        gateways = [processes.gateway(env, f"gateway-{i}") for i in range(3)]
        token = key_for(project)
        limited(token, rpm=10)
        burst = [(gateways[i % 3].url, token, f"rl-burst-{i:02d}", CHAT) for i in range(40)]

        answers = asyncio.run(send_all(burst))

        assert Counter(a.status for a in answers) == {200: 10, 429: 30}
        assert len([c for c in fake_upstream.calls if c.endpoint == "generate"]) == 10
        assert {a.code for a in answers if a.status == 429} == {"rate_limited"}
        assert all(1 <= int(a.headers["retry-after"]) <= 60 and a.headers["x-ratelimit-remaining-requests"] == "0"
                   for a in answers if a.status == 429)
        assert all(a.headers["x-ratelimit-limit-requests"] == "10" for a in answers)
        keys = redis.client().keys("LIMITS:llmgw-rpm/*")
        assert len(keys) == 1 and redis.client().llen(keys[0]) == 10
    finally:
        processes.stop()
        redis.stop()

