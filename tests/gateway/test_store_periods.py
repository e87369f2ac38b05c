"""The spend store's recurring windows, on Redis and in memory: a request counts once, in the
window it was reserved in, whenever it settles; a window's check counts every hold in flight;
and whatever the interleaving of reservations and settlements, a window never takes more
than its limit."""

import asyncio
import uuid

import pytest
from django.conf import settings as django_settings
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from core.redis import sync_client
from gateway.store import OK, PERIOD_LIMIT, Account, MemoryStore, RedisStore
from tests.reliability.conftest import RedisServer

LIMIT = 1_000


def account(key: str, window: str, db_usage: int = 0) -> Account:
    return Account(key_id=key, key_limit=None, key_usage=0, org_id="org_" + key, org_credited=None, org_spent=0,
                   period_limit=LIMIT, period=window, period_usage=db_usage, period_ttl=3600)


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    if request.param == "memory":
        yield MemoryStore()
        return
    if django_settings.REDIS_URL:
        yield RedisStore()
        return
    server = RedisServer().start()  # the embedded defaults have no Redis: a server of the test's own
    try:
        settings.REDIS_URL = server.url
        yield RedisStore()
    finally:
        server.stop()


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_request_reserved_in_one_window_and_settled_in_the_next_counts_once_in_the_first(store):
    key = uuid.uuid4().hex
    old, new = account(key, "day:1"), account(key, "day:2")

    async def scenario():
        assert (await store.reserve(old, 600, key + "a")).outcome == OK
        # The next window's check counts the hold still in flight: it can refuse early, never overspend.
        assert (await store.reserve(new, 600, key + "b")).outcome == PERIOD_LIMIT
        await store.settle(old, key + "a", 600, 500, 0)  # settles after midnight, with its reservation's window
        await store.settle(old, key + "a", 600, 500, 0)  # sent twice: counted once
        assert await store.period_usage(key, "day:1", 0) == 500
        assert await store.period_usage(key, "day:2", 0) == 0
        assert (await store.reserve(new, 1_000, key + "c")).outcome == OK  # the new window is whole again

    run(scenario())


def test_a_window_starts_from_what_the_database_counted_in_it(store):
    key = uuid.uuid4().hex
    admission = run(store.reserve(account(key, "hour:9", db_usage=900), 200, key + "h"))
    assert (admission.outcome, admission.remaining) == (PERIOD_LIMIT, 100)


@examples(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.integers(0, 400), st.booleans()), min_size=1, max_size=30))
def test_no_interleaving_lets_a_window_take_more_than_its_limit(steps):
    """Each step reserves an amount and settles it (at most what was reserved: the provider
    bills within the bound), now or at the end."""
    store = MemoryStore()
    key = uuid.uuid4().hex
    window = account(key, "month:1")

    async def scenario():
        later = []
        for n, (amount, actual, now) in enumerate(steps):
            hold = f"{key}{n}"
            if (await store.reserve(window, amount, hold)).outcome == OK:
                settle = store.settle(window, hold, amount, min(actual, amount), 0)
                if now:
                    await settle
                else:
                    later.append(settle)
            assert await store.period_usage(key, "month:1", 0) + store.reserved.get(key, 0) <= LIMIT
        for settle in later:
            await settle
        assert await store.period_usage(key, "month:1", 0) <= LIMIT

    run(scenario())


def teardown_module():
    if django_settings.REDIS_URL:
        client = sync_client()
        for name in client.scan_iter("llmgw:spend:pusage:*"):
            client.delete(name)
