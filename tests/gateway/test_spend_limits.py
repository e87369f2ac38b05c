"""Hard spend limits end to end: a key's usage limit and an organization's credits hold
under 100 concurrent requests, a key at its limit is disabled until the limit is raised,
and a request that fails before the first byte costs nothing and keeps no reservation.

Every request here sends the same orjson-encoded body, so the gateway reserves the same
worst case W for each (gateway.pricing.worst_case on the exact body bytes); the fake
upstream reports exactly the worst-case usage, so an admitted request also costs W.
"""

import asyncio
import time
from collections import Counter
from decimal import Decimal

import httpx
import orjson
import pytest

from apikeys import services as key_services
from apikeys.models import ApiKey
from core.hashing import sha256_hex
from gateway import catalog
from gateway.pricing import from_nanos, worst_case
from projects import services
from projects.models import Organization
from tests.gateway.conftest import eventually
from usage.models import CreditTransaction, UsageLog
from usage.services import credits_add

MODEL = "gpt-4o-mini"  # one provider only: each request is exactly one upstream attempt
OFFER = catalog.offers_of(MODEL)[0]
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Count to ten, please."}], "max_tokens": 200}
RAW = orjson.dumps(BODY)
CONCURRENT = 100
ADMITTED = 10


def worst_nanos(*, paid_with_credits: bool) -> int:
    """What the gateway reserves for RAW, in nano-dollars."""
    return worst_case(OFFER, BODY, len(RAW), paid_with_credits=paid_with_credits).cost.nanos


def bill_the_worst_case(fake) -> None:
    """The fake reports the usage the gateway assumed at worst: each request costs W."""
    bound = worst_case(OFFER, BODY, len(RAW), paid_with_credits=False)
    fake.usage = (bound.prompt_tokens, bound.output_tokens)


def post(gateway, token: str, request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(f"{gateway.url}/v1/chat/completions", content=RAW, headers=headers, timeout=20)


def error_code(response) -> str | None:
    return response.json()["error"]["code"]


@pytest.fixture
def own_openai_key(org):
    return key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)


def _key(token: str) -> ApiKey:
    return ApiKey.objects.get(token_hash=sha256_hex(token))


async def _burst(gateway, fake, token: str, request_ids: list[str]) -> list[httpx.Response]:
    """Sends every request at once with the upstream held, so all of them reserve before any
    settles; releases the upstream once the refused ones are answered (or time runs out)."""
    limits = httpx.Limits(max_connections=len(request_ids) + 10, max_keepalive_connections=len(request_ids) + 10)
    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=30) as client:
        async def one(request_id: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "x-request-id": request_id}
            return await client.post("/v1/chat/completions", content=RAW, headers=headers)

        tasks = [asyncio.create_task(one(rid)) for rid in request_ids]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if fake.held + sum(t.done() for t in tasks) >= len(tasks):
                break
            await asyncio.sleep(0.02)
        fake.release()
        return await asyncio.gather(*tasks)


def _logs_by_request(request_ids: list[str]) -> Counter:
    return Counter(UsageLog.objects.filter(request_id__in=request_ids).values_list("request_id", flat=True))


def _all_logged(request_ids: list[str], timeout: float = 20) -> Counter:
    """Waits until every request has its row, then a moment more for any duplicate."""
    eventually(lambda: len(_logs_by_request(request_ids)) >= len(request_ids), timeout=timeout)
    time.sleep(0.5)
    return _logs_by_request(request_ids)


def test_a_hundred_concurrent_requests_on_a_key_that_fits_ten_admit_exactly_ten(
    gateway, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    limit = from_nanos(ADMITTED * w)
    token = key_for(project, usage_limit=limit)
    bill_the_worst_case(fake_upstream)
    fake_upstream.gate()
    request_ids = [f"spend-key-{i:03d}" for i in range(CONCURRENT)]

    responses = asyncio.run(_burst(gateway, fake_upstream, token, request_ids))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: ADMITTED, 401: CONCURRENT - ADMITTED}
    assert {error_code(r) for r in responses if r.status_code == 401} == {"usage_limit_reached"}
    assert len(fake_upstream.calls) == ADMITTED

    logged = _all_logged(request_ids)
    assert logged == Counter({rid: 1 for rid in request_ids})  # exactly one row each, errors included
    logs = UsageLog.objects.filter(request_id__in=request_ids)
    assert Counter(logs.values_list("status_code", flat=True)) == {200: ADMITTED, 401: CONCURRENT - ADMITTED}
    assert all(log.cost == 0 for log in logs.filter(status_code=401))

    key = _key(token)
    assert key.usage <= key.usage_limit == limit
    assert key.usage == sum(log.cost for log in logs) == from_nanos(ADMITTED * w)


def test_a_hundred_concurrent_requests_on_credits_that_fit_ten_admit_exactly_ten_and_bill_them_to_the_nano(
    gateway, org, project, key_for, fake_upstream
):
    services.project_update(project=project, mode="credits")
    w = worst_nanos(paid_with_credits=True)
    credits_add(organization=org, amount=from_nanos(ADMITTED * w))
    org.refresh_from_db()
    credits_before, spent_before = org.credits, org.credits_spent
    token = key_for(project)
    bill_the_worst_case(fake_upstream)
    fake_upstream.gate()
    request_ids = [f"spend-org-{i:03d}" for i in range(CONCURRENT)]

    responses = asyncio.run(_burst(gateway, fake_upstream, token, request_ids))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: ADMITTED, 402: CONCURRENT - ADMITTED}
    assert {error_code(r) for r in responses if r.status_code == 402} == {"insufficient_credits"}

    logged = _all_logged(request_ids)
    assert logged == Counter({rid: 1 for rid in request_ids})
    logs = UsageLog.objects.filter(request_id__in=request_ids)
    total = sum((log.cost for log in logs), Decimal(0))
    assert total == from_nanos(ADMITTED * w)
    assert all(log.used_mode == "credits" and log.fee > 0 for log in logs.filter(status_code=200))

    org = Organization.objects.get(pk=org.pk)
    debits = CreditTransaction.objects.filter(organization=org, kind=CreditTransaction.Kind.USAGE)
    assert org.credits_spent - spent_before == total
    assert -sum((t.amount for t in debits), Decimal(0)) == total
    assert credits_before - org.credits == total
    assert org.credits >= 0  # never overspent


def test_a_key_at_its_limit_is_disabled_and_refused_until_the_limit_is_raised(
    gateway, owner, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    token = key_for(project, usage_limit=from_nanos(w))
    key_id = _key(token).id
    bill_the_worst_case(fake_upstream)

    assert post(gateway, token).status_code == 200  # uses the whole limit

    def key_json():
        return owner.api.get(f"/api/v1/api-keys/{key_id}").json()["apiKey"]

    disabled = eventually(lambda: (lambda k: k if k["status"] == "inactive" else None)(key_json()))
    assert disabled, key_json()
    assert disabled["disabledReason"] == "usage_limit"
    assert Decimal(disabled["usage"]) == Decimal(disabled["usageLimit"]) == from_nanos(w)
    for _ in range(2):
        refused = post(gateway, token)
        assert refused.status_code == 401 and error_code(refused) == "usage_limit_reached"

    patched = owner.api.patch(f"/api/v1/api-keys/{key_id}", {"usageLimit": str(from_nanos(3 * w))})
    assert patched.status_code == 200, patched.content
    assert (patched.json()["apiKey"]["status"], patched.json()["apiKey"]["disabledReason"]) == ("active", None)
    again = eventually(lambda: (lambda r: r if r.status_code == 200 else None)(post(gateway, token)), timeout=3)
    assert again, "the key stayed refused after its limit was raised"


def test_an_upstream_failure_before_the_first_byte_releases_the_reservation_and_bills_nothing(
    gateway, project, own_openai_key, key_for, fake_upstream
):
    services.project_update(project=project, mode="api-keys")
    w = worst_nanos(paid_with_credits=False)
    token = key_for(project, usage_limit=from_nanos(w))  # room for one worst case only
    bill_the_worst_case(fake_upstream)
    fake_upstream.fail("status", status=500, times=1)

    failed = post(gateway, token, request_id="fails-upstream")
    assert failed.status_code == 502 and error_code(failed) == "upstream_error"
    assert len(fake_upstream.calls) == 1 and fake_upstream.calls[0].status == 500
    succeeded = post(gateway, token, request_id="then-succeeds")
    assert succeeded.status_code == 200, succeeded.text

    logged = _all_logged(["fails-upstream", "then-succeeds"])
    assert logged == Counter({"fails-upstream": 1, "then-succeeds": 1})
    failed_log = UsageLog.objects.get(request_id="fails-upstream")
    assert (failed_log.status_code, failed_log.has_error, failed_log.cost) == (502, True, 0)
    assert _key(token).usage == UsageLog.objects.get(request_id="then-succeeds").cost == from_nanos(w)
