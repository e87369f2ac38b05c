"""A gateway process killed with SIGKILL (issue 12, items 3 and 6).

- Its reservations expire: the key it held spend for is not refused for ever; the holds of
  a process that stops renewing them are released after GATEWAY_HOLD_SECONDS.
- Every request it answered whole is recorded and billed: with Redis, the record is on the
  Redis stream by the time the answer's last bytes leave (written by the script that
  settles); on the embedded defaults the web process stores its own records every
  USAGE_LOG_FLUSH_SECONDS, so a restart re-grants nothing once that moment has passed.
"""

import asyncio
import os
import random
import signal
import threading
import time
from collections import Counter

import httpx

from gateway.pricing import from_nanos
from projects import services
from tests.reliability.conftest import Answer, RedisServer, eventually, headers_for, send_all, wait_for_rows
from tests.reliability.test_money import PLAIN, STREAMED, bill_the_worst_case, key_of, mixed, worst_nanos

HOLD_SECONDS = 2


def _kill(gateway) -> None:
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.process.wait(10)


def test_the_holds_of_a_killed_process_expire_and_its_key_spends_again(
    processes, base_env, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    token = key_for(project, usage_limit=from_nanos(2 * w))  # two requests in flight fill it
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url,
                            GATEWAY_HOLD_SECONDS=str(HOLD_SECONDS))
        processes.worker(env)
        doomed, survivor = processes.gateway(env, "doomed"), processes.gateway(env, "survivor")
        bill_the_worst_case(fake_upstream)
        fake_upstream.gate()

        def held_requests() -> None:
            try:
                asyncio.run(send_all([(doomed.url, token, f"held-{i}", PLAIN) for i in range(2)], timeout=60))
            except httpx.HTTPError:
                pass  # their process is killed under them: that is the point

        held = threading.Thread(target=held_requests, daemon=True)
        held.start()
        assert eventually(lambda: fake_upstream.held == 2, timeout=10)
        refused = asyncio.run(send_all([(survivor.url, token, "while-held", PLAIN)]))[0]
        assert (refused.status, refused.code) == (401, "usage_limit_reached")  # both holds count, on every process

        _kill(doomed)  # mid-request: its two holds are never settled nor renewed
        fake_upstream.release()
        killed_at = time.monotonic()
        admitted = eventually(lambda: asyncio.run(send_all([(survivor.url, token, f"after-{time.monotonic()}", PLAIN)]))[0]
                              .status == 200, timeout=HOLD_SECONDS * 5, interval=0.25)
        waited = time.monotonic() - killed_at

        assert admitted, "the killed process's reservations never expired"
        assert waited >= HOLD_SECONDS * 0.5  # released by expiry, not at once
        assert int(redis.client().get(f"llmgw:spend:res:{key_of(token).id}") or 0) == 0
    finally:
        processes.stop()
        redis.stop()


def test_a_hold_renewed_while_its_request_lives_outlasts_the_hold_lifetime(
    processes, base_env, project, own_openai_key, key_for, fake_upstream
):
    """A request slower than GATEWAY_HOLD_SECONDS keeps its reservation: its process renews it."""
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    token = key_for(project, usage_limit=from_nanos(w))  # one request in flight fills it
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url,
                            GATEWAY_HOLD_SECONDS=str(HOLD_SECONDS), UPSTREAM_FIRST_BYTE_TIMEOUT="30")
        processes.worker(env)
        gateway = processes.gateway(env)
        bill_the_worst_case(fake_upstream)
        fake_upstream.gate()
        slow = threading.Thread(target=lambda: asyncio.run(send_all([(gateway.url, token, "slow", PLAIN)], timeout=60)),
                                daemon=True)
        slow.start()
        assert eventually(lambda: fake_upstream.held == 1, timeout=10)

        time.sleep(HOLD_SECONDS * 2.5)
        refused = asyncio.run(send_all([(gateway.url, token, "meanwhile", PLAIN)]))[0]
        fake_upstream.release()
        slow.join(30)

        assert (refused.status, refused.code) == (401, "usage_limit_reached")
    finally:
        processes.stop()
        redis.stop()


def test_every_answer_a_killed_process_gave_is_recorded_once(
    processes, base_env, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    token = key_for(project)
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        processes.worker(env)
        doomed = processes.gateway(env, "doomed")
        survivor = processes.gateway(env, "survivor")
        fake_upstream.chunk_delay = 0.002
        answers = []

        def load() -> None:
            """20 clients sending one request after another until the process dies."""
            async def client_loop(client: httpx.AsyncClient, n: int) -> None:
                for i in range(1000):
                    request_id, raw = f"load-{n}-{i}", STREAMED if i % 2 else PLAIN
                    started = time.monotonic()
                    try:
                        response = await client.post(f"{doomed.url}/v1/chat/completions", content=raw,
                                                     headers=headers_for(token, request_id))
                    except httpx.HTTPError:
                        return  # cut off by the kill: never answered, so nothing is owed
                    answers.append(Answer(request_id, response.status_code, dict(response.headers), response.text,
                                          time.monotonic() - started))

            async def all_clients() -> None:
                async with httpx.AsyncClient(timeout=30) as client:
                    await asyncio.gather(*(client_loop(client, n) for n in range(20)))

            asyncio.run(all_clients())

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(random.uniform(1.0, 2.0))
        _kill(doomed)
        loader.join(60)
        # The survivor's requests ring the ingester too (no beat runs here).
        asyncio.run(send_all([(survivor.url, token, "afterwards", PLAIN)]))

        completed = [a.request_id for a in answers if a.completed]
        assert len(completed) >= 20, Counter(a.status for a in answers)
        assert wait_for_rows(completed, timeout=30) == Counter({rid: 1 for rid in completed})
        assert eventually(redis.broker_idle, timeout=10)
    finally:
        processes.stop()
        redis.stop()


def test_on_the_embedded_defaults_a_restart_regrants_nothing(
    processes, base_env, project, own_openai_key, key_for, fake_upstream
):
    """One web process, its spend in memory: after a restart it starts from the database,
    which holds every record its predecessor answered more than a flush interval ago."""
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    token = key_for(project, usage_limit=from_nanos(30 * w))
    env = processes.env(base_env, USAGE_LOG_FLUSH_SECONDS="0.05")
    bill_the_worst_case(fake_upstream)
    first = processes.gateway(env, "first")
    burst = [(first.url, token, f"first-{i}", STREAMED if i % 2 else PLAIN) for i in range(60)]

    answers = asyncio.run(send_all(burst))
    time.sleep(0.5)  # ten flush intervals
    _kill(first)
    second = processes.gateway(env, "second")
    more = asyncio.run(send_all([(second.url, token, f"second-{i}", PLAIN) for i in range(30)]))

    assert Counter(a.status for a in answers)[200] == 30
    assert Counter(a.status for a in more) == {401: 30}, Counter(a.status for a in more)
    admitted = [a.request_id for a in answers + more if a.status == 200]
    wait_for_rows(admitted)
    assert key_of(token).usage == from_nanos(30 * w)


def test_on_the_embedded_defaults_the_web_process_stores_its_records_as_fast_as_it_answers(
    processes, base_env, project, own_openai_key, key_for
):
    services.project_update(project=project, mode="api-keys")
    token = key_for(project)
    # The fake upstream runs on a thread of this process, which also drives the 600 requests:
    # under that load it can take longer than the suite's 3 s first-byte timeout to answer
    # (seen in CI, also on code from before this test last changed), and a 504 from the
    # harness's own slowness is not what this test is about.
    gateway = processes.gateway(processes.env(base_env, UPSTREAM_FIRST_BYTE_TIMEOUT="30"))
    requests = mixed(lambda i: gateway.url, token, "embedded-load", 600)

    answers = asyncio.run(send_all(requests))
    answered_at = time.monotonic()
    ids = [r[2] for r in requests]
    rows = wait_for_rows(ids, timeout=20)
    lag = time.monotonic() - answered_at

    assert Counter(a.status for a in answers) == {200: 600}
    assert rows == Counter({rid: 1 for rid in ids})
    assert lag < 5, f"the last rows came {lag:.1f} s after the last answer"
