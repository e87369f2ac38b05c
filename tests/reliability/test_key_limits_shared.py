"""A key's recurring limit, expiry and roll hold on every gateway process together: 200
concurrent requests across three processes on one Redis admit exactly what the window's limit
fits; an expired key and a rolled token's end of grace stop on two processes at once."""

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from apikeys import services as key_services
from apikeys.models import ApiKey
from gateway.pricing import from_nanos
from projects import services as project_services
from tests.gateway.test_spend_limits import RAW, bill_the_worst_case, worst_nanos
from tests.reliability.conftest import RedisServer

CONCURRENT, ADMITTED = 200, 10


@pytest.fixture
def shared(processes, base_env):
    """Three gateway processes and a worker on one Redis."""
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        processes.worker(env)
        yield [processes.gateway(env, f"gateway-{n}") for n in range(3)]
    finally:
        processes.stop()
        redis.stop()


@pytest.fixture
def own_openai_key(org, project):
    project_services.project_update(project=project, mode="api-keys")
    return key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)


def chat(url: str, token: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", content=RAW, timeout=20,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


async def _burst(gateways, fake, token: str) -> list[httpx.Response]:
    """Every request at once, spread over the processes, the upstream held until the refused
    ones are answered: all reserve before any settles."""
    limits = httpx.Limits(max_connections=CONCURRENT + 10, max_keepalive_connections=CONCURRENT + 10)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one(n: int) -> httpx.Response:
            return await client.post(f"{gateways[n % len(gateways)].url}/v1/chat/completions", content=RAW,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

        tasks = [asyncio.create_task(one(n)) for n in range(CONCURRENT)]
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and fake.held + sum(t.done() for t in tasks) < len(tasks):
            await asyncio.sleep(0.02)
        fake.release()
        return await asyncio.gather(*tasks)


@pytest.mark.parametrize("duration", ["hour", "day", "week", "month"])
def test_a_recurring_limit_admits_exactly_what_its_window_fits_across_three_processes(
        shared, project, own_openai_key, fake_upstream, duration):
    w = worst_nanos(paid_with_credits=False)
    token, _ = key_services.api_key_create(project=project, period_usage_limit=from_nanos(ADMITTED * w),
                                           period_usage_duration=duration)
    bill_the_worst_case(fake_upstream)
    fake_upstream.gate()

    responses = asyncio.run(_burst(shared, fake_upstream, token))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: ADMITTED, 401: CONCURRENT - ADMITTED}, statuses
    refusal = next(r for r in responses if r.status_code == 401)
    assert refusal.json()["error"]["code"] == "usage_limit_reached"
    assert f"{ {'hour': 'hourly', 'day': 'daily', 'week': 'weekly', 'month': 'monthly'}[duration]} usage limit" in \
        refusal.json()["error"]["message"]
    assert int(refusal.headers["retry-after"]) >= 1
    assert len(fake_upstream.calls) == ADMITTED


def test_an_expired_key_stops_at_once_on_every_process(shared, project, own_openai_key, fake_upstream):
    token, key = key_services.api_key_create(project=project, expires_at=datetime.now(UTC) + timedelta(seconds=3))
    assert [chat(g.url, token).status_code for g in shared] == [200, 200, 200]  # each process holds the key now
    time.sleep(max(0.0, (key.expires_at - datetime.now(UTC)).total_seconds()) + 0.2)
    answers = [chat(g.url, token) for g in shared]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all(a.json()["error"]["code"] == "invalid_api_key" and "expired" in a.json()["error"]["message"]
               for a in answers)


def roll(url: str, owner, key_id: str, grace: int) -> str:
    """Rolls through the REST API of one process: its event reaches the others through Redis."""
    response = httpx.post(f"{url}/api/v1/api-keys/{key_id}/roll", json={"graceSeconds": grace}, timeout=10,
                          headers={"Authorization": f"Bearer {owner.token}"})
    assert response.status_code == 201, response.text
    return response.json()["apiKey"]["token"]


def test_a_rolled_token_works_through_its_grace_on_every_process_and_then_stops(
        shared, owner, project, own_openai_key, fake_upstream):
    old, key = key_services.api_key_create(project=project, description="backend")
    assert [chat(g.url, old).status_code for g in shared] == [200, 200, 200]
    new = roll(shared[0].url, owner, key.id, 3)
    rolled = ApiKey.objects.get(pk=key.id)
    assert new != old
    assert [chat(g.url, new).status_code for g in shared] == [200, 200, 200]
    assert [chat(g.url, old).status_code for g in shared] == [200, 200, 200]  # within its grace
    time.sleep(max(0.0, (rolled.previous_token_expires_at - datetime.now(UTC)).total_seconds()) + 0.2)
    stopped = [chat(g.url, old) for g in shared]
    assert [a.status_code for a in stopped] == [401, 401, 401]
    assert "rolled" in stopped[0].json()["error"]["message"]
    assert [chat(g.url, new).status_code for g in shared] == [200, 200, 200]
    again = roll(shared[1].url, owner, key.id, 0)
    assert [chat(g.url, new).status_code for g in shared] == [401, 401, 401]  # no grace: at once, everywhere
    assert chat(shared[0].url, again).status_code == 200
