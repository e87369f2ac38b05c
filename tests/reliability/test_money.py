"""Money and records under concurrency and failure (issue 7, items 1–5).

Every request of a burst sends a body of the same length, streamed or not, so the gateway
reserves the same worst case W for each (gateway.pricing.worst_case depends on the model,
max_tokens and the body's size); the fake upstream reports exactly the worst-case usage, so
an admitted request also costs exactly W. Bounds can then be checked exactly, not roughly.
"""

import asyncio
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import httpx
import orjson

from apikeys.models import ApiKey
from core.hashing import sha256_hex
from gateway import catalog
from gateway.pricing import from_nanos, worst_case
from projects import services
from projects.models import Organization
from tests.reliability.conftest import RedisServer, eventually, headers_for, send_all, wait_for_rows
from usage.models import CreditTransaction, UsageLog
from usage.services import credits_add

MODEL = "gpt-4o-mini"  # one provider only: each admitted request is exactly one upstream call
OFFER = catalog.offers_of(MODEL)[0]
MESSAGES = [{"role": "user", "content": "Count to ten, please."}]


def same_size_bodies(**extra) -> tuple[bytes, bytes]:
    """(not streamed, streamed) request bodies of exactly the same length."""
    plain = {"model": MODEL, "messages": MESSAGES, "max_tokens": 200, "stream": False, **extra}
    streamed = {"model": MODEL, "messages": MESSAGES, "max_tokens": 200, "stream": True,
                "stream_options": {"include_usage": True}, **extra}
    short, long = orjson.dumps({**plain, "user": "u"}), orjson.dumps({**streamed, "user": "u"})
    pad = "u" * (1 + len(long) - len(short))
    raw_plain, raw_streamed = orjson.dumps({**plain, "user": pad}), long
    assert len(raw_plain) == len(raw_streamed)
    return raw_plain, raw_streamed


PLAIN, STREAMED = same_size_bodies()


def worst_nanos(*, paid_with_credits: bool, raw: bytes = PLAIN) -> int:
    return worst_case(OFFER, orjson.loads(raw), len(raw), paid_with_credits=paid_with_credits).cost.nanos


def bill_the_worst_case(fake, raw: bytes = PLAIN) -> None:
    bound = worst_case(OFFER, orjson.loads(raw), len(raw), paid_with_credits=False)
    fake.usage = (bound.prompt_tokens, bound.output_tokens)


def mixed(url_of, token: str, prefix: str, n: int) -> list[tuple[str, str, str, bytes]]:
    """n requests, every other one streamed; url_of(i) picks the gateway process."""
    return [(url_of(i), token, f"{prefix}-{i:03d}", STREAMED if i % 2 else PLAIN) for i in range(n)]


def key_of(token: str) -> ApiKey:
    return ApiKey.objects.get(token_hash=sha256_hex(token))


def logs_of(request_ids) -> list[UsageLog]:
    return list(UsageLog.objects.filter(request_id__in=list(request_ids)))


def total_cost(logs) -> Decimal:
    return sum((log.cost for log in logs), Decimal(0))


def usage_debits(org) -> Decimal:
    debits = CreditTransaction.objects.filter(organization=org, kind=CreditTransaction.Kind.USAGE)
    return -sum((t.amount for t in debits), Decimal(0))


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def assert_the_burst_admitted_exactly(answers, admitted: int, refused_status: int, refused_code: str) -> None:
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: admitted, refused_status: len(answers) - admitted}, statuses
    assert all(a.completed for a in answers if a.status == 200), "an admitted answer was not whole"
    assert {a.code for a in answers if a.status != 200} == {refused_code}


# --- 1. one process, 200 concurrent requests, a limit that fits 50 ------------------------------------------


def test_200_concurrent_mixed_requests_on_a_key_that_fits_50_admit_50_and_bill_exactly_what_was_logged(
    gateway, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    assert w == worst_nanos(paid_with_credits=False, raw=STREAMED)
    limit = from_nanos(50 * w)
    token = key_for(project, usage_limit=limit)
    bill_the_worst_case(fake_upstream)
    fake_upstream.gate()
    requests = mixed(lambda i: gateway.url, token, "one-process", 200)

    answers = asyncio.run(send_all(requests, fake=fake_upstream))

    assert_the_burst_admitted_exactly(answers, 50, 401, "usage_limit_reached")
    assert len(fake_upstream.calls) == 50
    request_ids = [r[2] for r in requests]
    assert wait_for_rows(request_ids) == Counter({rid: 1 for rid in request_ids})  # one row each, refusals too
    logs = logs_of(request_ids)
    key = key_of(token)
    assert key.usage <= key.usage_limit == limit
    assert key.usage == total_cost(logs) == limit  # 50 × W, to the nano
    assert all(log.cost == 0 for log in logs if log.status_code == 401)


# --- 2. three processes sharing one Redis ---------------------------------------------------------------


def test_three_gateway_processes_sharing_one_redis_admit_50_in_all_not_50_each(
    processes, base_env, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    limit = from_nanos(50 * w)
    token = key_for(project, usage_limit=limit)
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        processes.worker(env)
        gateways = [processes.gateway(env, f"gateway-{n}") for n in range(3)]
        bill_the_worst_case(fake_upstream)
        fake_upstream.gate()
        # 66 or 67 requests to each process: with a limit per process, each would admit 50.
        requests = mixed(lambda i: gateways[i % 3].url, token, "three-processes", 200)

        answers = asyncio.run(send_all(requests, fake=fake_upstream))

        assert_the_burst_admitted_exactly(answers, 50, 401, "usage_limit_reached")
        assert len(fake_upstream.calls) == 50
        request_ids = [r[2] for r in requests]
        assert wait_for_rows(request_ids) == Counter({rid: 1 for rid in request_ids})
        key = key_of(token)
        assert key.usage == total_cost(logs_of(request_ids)) == limit
        # Every reservation was settled: nothing is held in Redis, and Redis's usage is the bill.
        spend = redis.client()
        assert int(spend.get(f"llmgw:spend:res:{key.id}") or 0) == 0
        assert int(spend.get(f"llmgw:spend:usage:{key.id}")) == 50 * w
        assert all(g.alive for g in gateways)
        assert eventually(redis.broker_idle, timeout=10)
    finally:
        processes.stop()
        redis.stop()


# --- 3. 100 failures before the first byte -------------------------------------------------------------


def test_100_requests_failing_before_the_first_byte_release_every_reservation_and_bill_nothing(
    gateway, org, project, key_for, fake_upstream
):
    """Credits pay, and both the key's limit and the credits fit exactly 100 worst cases:
    were a single failed reservation kept, key or organization, one of the next 100 would
    be refused."""
    services.project_update(project=project, mode="credits")
    w = worst_nanos(paid_with_credits=True)
    credits_add(organization=org, amount=from_nanos(100 * w))
    org.refresh_from_db()
    balance_before = org.credits
    token = key_for(project, usage_limit=from_nanos(100 * w))
    bill_the_worst_case(fake_upstream)
    for kind, options in (("status", {"status": 500}), ("status", {"status": 503}),
                          ("reset_after_request", {}), ("hang", {})):
        fake_upstream.fail(kind, provider="openai", times=25, **options)
    failing = mixed(lambda i: gateway.url, token, "fails-first", 100)

    answers = asyncio.run(send_all(failing))

    assert Counter(a.status for a in answers) == {502: 75, 504: 25}, Counter((a.status, a.code) for a in answers)
    assert {a.code for a in answers} == {"upstream_error", "upstream_timeout"}
    assert len(fake_upstream.calls) == 100 and fake_upstream.pending_faults == 0
    failed_ids = [r[2] for r in failing]
    assert wait_for_rows(failed_ids) == Counter({rid: 1 for rid in failed_ids})
    assert all(log.cost == 0 and log.has_error for log in logs_of(failed_ids))
    assert key_of(token).usage == 0
    assert Organization.objects.get(pk=org.pk).credits == balance_before
    assert usage_debits(org) == 0

    succeeding = mixed(lambda i: gateway.url, token, "then-succeeds", 100)
    answers = asyncio.run(send_all(succeeding))

    assert Counter(a.status for a in answers) == {200: 100}, Counter((a.status, a.code) for a in answers)
    succeeded_ids = [r[2] for r in succeeding]
    wait_for_rows(succeeded_ids)
    billed = total_cost(logs_of(succeeded_ids))
    assert billed == from_nanos(100 * w)
    assert key_of(token).usage == billed
    assert usage_debits(org) == billed
    assert Organization.objects.get(pk=org.pk).credits == balance_before - billed == 0
    last = asyncio.run(send_all([(gateway.url, token, "one-too-many", PLAIN)]))[0]
    assert (last.status, last.code) == (401, "usage_limit_reached")


# --- 4. credits after a mixed run -------------------------------------------------------------------------

MODELS = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.5-flash"]  # three wire formats, three prices


def body(n: int, model: str, stream: bool, words: str = "") -> bytes:
    request = {"model": model, "messages": [{"role": "user", "content": f"Question {n}. {words}"}], "max_tokens": 100 + n}
    if stream:
        request["stream"] = True
    return orjson.dumps(request)


async def cancel_after_two_chunks(url: str, token: str, request_id: str, raw: bytes) -> int:
    """Opens a stream, reads two content events and hangs up."""
    async with httpx.AsyncClient(timeout=20) as client:
        async with client.stream("POST", f"{url}/v1/chat/completions", content=raw,
                                 headers=headers_for(token, request_id)) as response:
            seen = 0
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    seen += 1
                    if seen == 2:
                        break
            return response.status_code


def test_after_a_mixed_run_on_credits_the_logs_the_ledger_and_the_balance_agree_to_the_cent(
    gateway, org, project, key_for, fake_upstream
):
    services.project_update(project=project, mode="credits", caching_enabled=True, cache_duration_seconds=600)
    credits_add(organization=org, amount="5.00")
    org.refresh_from_db()
    balance_before, spent_before = org.credits, org.credits_spent
    token = key_for(project)
    url = gateway.url
    fake_upstream.usage = (1234, 567)
    fake_upstream.stream_chunks = 8
    sent: list[str] = []

    def run(requests):
        sent.extend(r[2] for r in requests)
        return asyncio.run(send_all(requests))

    # Fresh answers, streamed and not, on three providers; then the same bodies again: hits.
    fresh = [(url, token, f"fresh-{i}", body(i, MODELS[i % 3], stream=i % 2 == 1)) for i in range(24)]
    assert {a.status for a in run(fresh)} == {200}
    time.sleep(1)  # each answer is stored just after it is sent
    repeats = [(url, token, f"repeat-{i}", raw) for i, (_, _, _, raw) in enumerate(fresh[:12])]
    hits = run(repeats)
    assert [a.headers.get("x-gateway-cache") for a in hits] == ["HIT"] * 12
    assert all(a.completed for a in hits)

    # Errors before the first byte: free.
    fake_upstream.fail("status", provider="openai", status=500, times=6)
    failed = run([(url, token, f"failed-{i}", body(100 + i, "gpt-4o-mini", stream=i % 2 == 1)) for i in range(6)])
    assert {a.status for a in failed} == {502}

    # Streams the provider breaks after two chunks: billed for what was sent.
    fake_upstream.chunk_delay = 0.02
    fake_upstream.fail("cut_mid_stream", provider="anthropic", after=2, times=3)
    fake_upstream.fail("error_in_200", provider="google-ai-studio", after=2, times=3)
    broken = run([(url, token, f"broken-{i}", body(200 + i, MODELS[1 + i % 2], stream=True)) for i in range(6)])
    assert all(a.status == 200 and a.stream_error for a in broken)

    # Streams the client hangs up on after two chunks: billed for what was sent.
    fake_upstream.chunk_delay = 0.2
    cancels = [(url, token, f"canceled-{i}", body(300 + i, MODELS[i % 3], stream=True)) for i in range(6)]
    sent.extend(r[2] for r in cancels)

    async def cancel_all():
        return await asyncio.gather(*(cancel_after_two_chunks(*r) for r in cancels))

    assert asyncio.run(cancel_all()) == [200] * 6

    counts = wait_for_rows(sent)
    assert counts == Counter({rid: 1 for rid in sent})
    logs = logs_of(sent)
    by_kind = Counter(rid.split("-")[0] for rid in sent)
    assert by_kind == {"fresh": 24, "repeat": 12, "failed": 6, "broken": 6, "canceled": 6}
    canceled = [log for log in logs if log.request_id.startswith("canceled")]
    assert all(log.canceled and log.status_code == 499 for log in canceled), [(x.request_id, x.status_code) for x in canceled]
    assert all(log.cost > 0 for log in canceled)
    assert all(log.cost > 0 and log.has_error for log in logs if log.request_id.startswith("broken"))
    assert all(log.cost == 0 for log in logs if log.request_id.startswith("failed"))
    hits_logged = [log for log in logs if log.cached]
    assert len(hits_logged) == 12 and all(log.cost == 0 and log.saved_cost > 0 for log in hits_logged)

    billable = [log for log in logs if log.used_mode == "credits" and not log.cached]
    for log in billable:  # the fee is 5 % of the provider's cost, to the nano
        assert log.cost == log.input_cost + log.output_cost + log.fee
        assert log.fee == ((log.input_cost + log.output_cost) * 5 / 100).quantize(Decimal("0.000000001"), ROUND_HALF_UP)
    billed = total_cost(billable)
    assert billed == total_cost(logs) > 0

    org = Organization.objects.get(pk=org.pk)
    assert usage_debits(org) == billed
    assert balance_before - org.credits == billed
    assert org.credits_spent - spent_before == billed
    assert cents(usage_debits(org)) == cents(balance_before - org.credits) == cents(billed)
    assert key_of(token).usage == billed


# --- 5. the same completion id for every request -------------------------------------------------------------


def test_an_upstream_that_repeats_one_completion_id_still_leaves_one_row_per_request(
    gateway, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    token = key_for(project)
    fake_upstream.fixed_completion_id = "chatcmpl-always-the-same"
    requests = mixed(lambda i: gateway.url, token, "same-id", 60)

    answers = asyncio.run(send_all(requests))

    assert all(a.completed for a in answers)
    assert "chatcmpl-always-the-same" in answers[0].text  # the provider's id did come back
    request_ids = [r[2] for r in requests]
    assert wait_for_rows(request_ids) == Counter({rid: 1 for rid in request_ids})
    logs = logs_of(request_ids)
    assert len({log.id for log in logs}) == 60
    assert key_of(token).usage == total_cost(logs) > 0
