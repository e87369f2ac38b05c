"""Several provider keys per provider and provider health, without a live gateway: the order
routing gives the keys (priority, then the next provider), the retry budget counting providers
rather than keys, and gateway/health.py's counting (refused keys, cool-downs), in memory and
in a Redis shared by two gateway processes."""

import asyncio
from decimal import Decimal

import pytest

from apikeys import services as key_services
from core.hashing import sha256_hex
from gateway import catalog, health, routing, v1
from gateway.errors import GatewayError
from gateway.health import Health, MemoryCounters, RedisCounters
from gateway.keys import load_snapshot
from gateway.upstream import UpstreamFailure
from projects import services as project_services
from usage.services import credits_add

LLAMA = "llama-3.3-70b-instruct"  # groq (cheaper) and together-ai


def own_key(org, provider, name="", priority=0, token=None, base_url=""):
    return key_services.provider_key_create(
        organization=org, provider=provider, name=name, priority=priority, token=token or f"sk-{provider}-{name or 'main'}",
        base_url=base_url, validate=False,
    )


def snapshot_for(project, key_for):
    return load_snapshot(sha256_hex(key_for(project)))


@pytest.fixture
def key_for():
    def make(project) -> str:
        token, _ = key_services.api_key_create(project=project)
        return token

    return make


@pytest.fixture
def api_keys_project(project):
    return project_services.project_update(project=project, mode="api-keys")


# --- routing -------------------------------------------------------------------------------------


def test_each_key_of_a_provider_is_a_candidate_in_priority_order(org, api_keys_project, key_for, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    third = own_key(org, "openai", "third", priority=2)
    first = own_key(org, "openai", "first", priority=-1, base_url="http://127.0.0.1:9/v1")
    second = own_key(org, "openai", "second", priority=0)
    default_url = settings.PROVIDER_BASE_URLS["openai"]

    chosen = routing.candidates(snapshot_for(api_keys_project, key_for), "gpt-4o-mini")

    assert [(c.key_id, c.token) for c in chosen] == [
        (first.id, "sk-openai-first"), (second.id, "sk-openai-second"), (third.id, "sk-openai-third")]
    assert [(c.base_url, c.org_url) for c in chosen] == [
        ("http://127.0.0.1:9/v1", True), (default_url, False), (default_url, False)]
    assert {(c.provider, c.offer.model, c.paid_with_credits) for c in chosen} == {("openai", "gpt-4o-mini", False)}


def test_equal_priorities_keep_the_order_the_keys_were_added_in(org, api_keys_project, key_for):
    keys = [own_key(org, "groq", name) for name in ("a", "b", "c")]

    chosen = routing.candidates(snapshot_for(api_keys_project, key_for), LLAMA)

    assert [c.key_id for c in chosen] == [k.id for k in keys]


def test_inactive_and_invalid_keys_are_not_candidates(org, api_keys_project, key_for):
    disabled, refused, good = (own_key(org, "openai", name) for name in ("disabled", "refused", "good"))
    key_services.provider_key_update(provider_key=disabled, status="inactive")
    key_services.provider_key_mark_invalid(key_id=refused.id, rejections=3, status=401)

    chosen = routing.candidates(snapshot_for(api_keys_project, key_for), "gpt-4o-mini")

    assert [c.key_id for c in chosen] == [good.id]


def test_every_key_of_the_cheaper_provider_comes_before_the_next_provider(org, api_keys_project, key_for):
    together = own_key(org, "together-ai")
    groq = [own_key(org, "groq", "a", priority=1), own_key(org, "groq", "b", priority=0)]

    chosen = routing.candidates(snapshot_for(api_keys_project, key_for), LLAMA)

    assert [(c.provider, c.key_id) for c in chosen] == [
        ("groq", groq[1].id), ("groq", groq[0].id), ("together-ai", together.id)]


@pytest.fixture
def five_providers(monkeypatch, settings):
    """A model five providers serve, cheapest first in this order (no catalog model has more than two)."""
    providers = ["mistral", "groq", "deepseek", "xai", "together-ai"]
    offers = tuple(
        catalog.Offer(p, "shared-model", "shared-model", catalog.flat_price(Decimal(i + 1), Decimal(i + 1)), 8000, 1000)
        for i, p in enumerate(providers)
    )
    catalog_offers = catalog.offers_of
    monkeypatch.setattr(catalog, "offers_of", lambda model: offers if model == "shared-model" else catalog_offers(model))
    settings.PROVIDER_API_KEYS = {p: f"gw-{p}" for p in providers}
    settings.PROVIDER_BASE_URLS = {p: f"https://{p}.example" for p in providers}
    settings.UPSTREAM_MAX_RETRIES = 2
    return providers


def test_the_retry_budget_counts_providers_not_keys(org, project, key_for, five_providers):
    credits_add(organization=org, amount="10")  # hybrid: the organization's keys, else credits
    for name in ("a", "b", "c"):
        own_key(org, "mistral", name)
    for name in ("a", "b"):
        own_key(org, "groq", name)

    chosen = routing.candidates(snapshot_for(project, key_for), "shared-model")

    assert [(c.provider, c.paid_with_credits) for c in chosen] == [
        ("mistral", False), ("mistral", False), ("mistral", False), ("groq", False), ("groq", False),
        ("deepseek", True)]  # three providers: the first and two retries, each with all its keys


def test_a_provider_paid_with_credits_stays_one_candidate(org, project, key_for, five_providers):
    credits_add(organization=org, amount="10")
    project_services.project_update(project=project, mode="credits")
    own_key(org, "mistral", "a")
    own_key(org, "mistral", "b")  # credits mode never uses the organization's keys

    chosen = routing.candidates(snapshot_for(project, key_for), "shared-model")

    assert [(c.provider, c.token, c.key_id) for c in chosen] == [
        ("mistral", "gw-mistral", ""), ("groq", "gw-groq", ""), ("deepseek", "gw-deepseek", "")]


def test_embeddings_count_providers_too(org, api_keys_project, key_for, settings):
    settings.UPSTREAM_MAX_RETRIES = 0
    keys = [own_key(org, "openai", name) for name in ("a", "b")]

    chosen = routing.embedding_candidates(snapshot_for(api_keys_project, key_for), "text-embedding-3-small")

    assert [c.key_id for c in chosen] == [k.id for k in keys]


def test_the_models_list_shows_a_provider_once_whatever_its_keys(org, api_keys_project, key_for):
    own_key(org, "groq", "a")
    own_key(org, "groq", "b")
    own_key(org, "together-ai")

    entry = v1.model_entry(snapshot_for(api_keys_project, key_for), LLAMA)

    assert [p["provider"] for p in entry["providers"]] == ["groq", "together-ai"]


def test_without_an_active_key_api_keys_mode_still_names_the_missing_provider(org, api_keys_project, key_for):
    refused = own_key(org, "openai")
    key_services.provider_key_mark_invalid(key_id=refused.id, rejections=3, status=401)

    with pytest.raises(GatewayError) as raised:
        routing.candidates(snapshot_for(api_keys_project, key_for), "gpt-4o-mini")
    assert raised.value.code == "provider_key_missing"


# --- health: cool-downs and refused keys, in memory ----------------------------------------------------


def offer(provider: str, model: str = "m") -> catalog.Offer:
    return catalog.Offer(provider, model, model, catalog.flat_price(Decimal(1), Decimal(1)), 8000, 1000)


def candidate(provider: str, key_id: str = "", org_url: bool = False, model: str = "m") -> routing.Candidate:
    return routing.Candidate(offer(provider, model), "t", "https://x.example", paid_with_credits=not key_id,
                             org_url=org_url, key_id=key_id)


def failure(status: int | None = None, unreachable: bool = False) -> UpstreamFailure:
    return UpstreamFailure(GatewayError(502, "x", "upstream_error"), retryable=True, status=status, unreachable=unreachable)


@pytest.fixture
def thresholds(settings):
    settings.GATEWAY_COOLDOWN_FAILURES = 5
    settings.GATEWAY_COOLDOWN_WINDOW = 30
    settings.GATEWAY_COOLDOWN_SECONDS = 0.3
    settings.GATEWAY_KEY_REJECTIONS = 3
    return settings


def run(watch: Health, *calls) -> None:
    """Reports calls to `watch` ((candidate, failure or None for a 2xx), …) as first_answer
    does, and waits for the counting it started."""

    async def scenario() -> None:
        for c, f in calls:
            watch.failed(c, f) if f is not None else watch.answered(c)
            await watch.settled()

    asyncio.run(scenario())


def test_a_provider_failing_five_times_is_tried_last_until_its_cool_down_ends(thresholds):
    watch = Health(MemoryCounters())
    groq, groq_2, together = candidate("groq", "k1"), candidate("groq", "k2"), candidate("together-ai", "k3")

    run(watch, *[(groq, failure(500))] * 4)
    assert watch.ordered([groq, groq_2, together]) == [groq, groq_2, together]  # four are not enough
    run(watch, (groq, failure(unreachable=True)))

    assert list(watch.cooling()) == ["groq"]
    assert watch.ordered([groq, groq_2, together]) == [together, groq, groq_2]
    assert watch.ordered([groq, groq_2]) == [groq, groq_2]  # one provider (pinned): nothing to move
    asyncio.run(asyncio.sleep(0.35))
    assert watch.cooling() == {}
    assert watch.ordered([groq, groq_2, together]) == [groq, groq_2, together]


def test_a_cooling_provider_moves_behind_the_other_providers_of_its_model_not_behind_fallback_models(thresholds):
    watch = Health(MemoryCounters())
    groq, together = candidate("groq"), candidate("together-ai")
    fallback_groq, fallback_xai = candidate("groq", model="n"), candidate("xai", model="n")

    run(watch, *[(groq, failure(500))] * 5)

    assert watch.ordered([groq, together, fallback_groq, fallback_xai]) == [together, groq, fallback_xai, fallback_groq]
    assert watch.ordered([groq, fallback_xai]) == [groq, fallback_xai]


def test_when_every_provider_cools_down_the_order_stays_and_nothing_is_refused(thresholds):
    watch = Health(MemoryCounters())
    groq, together = candidate("groq"), candidate("together-ai")

    run(watch, *[(groq, failure(503))] * 5, *[(together, failure(502))] * 5)

    assert set(watch.cooling()) == {"groq", "together-ai"}
    assert watch.ordered([groq, together]) == [groq, together]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 301])
def test_only_outages_count_towards_a_cool_down(thresholds, status):
    watch = Health(MemoryCounters())

    run(watch, *[(candidate("groq"), failure(status))] * 6)

    assert watch.cooling() == {}


def test_a_success_between_failures_starts_the_count_again(thresholds):
    watch = Health(MemoryCounters())
    groq = candidate("groq")

    run(watch, *[(groq, failure(500))] * 4, (groq, None), *[(groq, failure(500))] * 4)
    assert watch.cooling() == {}
    run(watch, (groq, failure(500)))
    assert list(watch.cooling()) == ["groq"]


def test_failures_outside_the_window_do_not_add_up(thresholds):
    thresholds.GATEWAY_COOLDOWN_WINDOW = 0.2
    watch = Health(MemoryCounters())
    groq = candidate("groq")

    run(watch, *[(groq, failure(500))] * 4)
    asyncio.run(asyncio.sleep(0.25))
    run(watch, (groq, failure(500)))

    assert watch.cooling() == {}


def test_custom_providers_and_organization_urls_never_cool_a_provider_down(thresholds):
    watch = Health(MemoryCounters())
    own_url = candidate("openai", "k1", org_url=True)
    custom = routing.Candidate(catalog.custom_offer("my-llm", "m", None), "t", "https://x.example",
                               paid_with_credits=False, org_url=True, key_id="k2")

    run(watch, *[(own_url, failure(500))] * 5, *[(custom, failure(500))] * 5)

    assert watch.cooling() == {}


def test_thresholds_of_zero_turn_the_counting_off(thresholds, monkeypatch):
    thresholds.GATEWAY_COOLDOWN_FAILURES = 0
    thresholds.GATEWAY_KEY_REJECTIONS = 0
    marked = []
    monkeypatch.setattr(health, "_mark_invalid", lambda *args: marked.append(args))
    watch = Health(MemoryCounters())

    run(watch, *[(candidate("groq", "k1"), failure(500))] * 9, *[(candidate("groq", "k1"), failure(401))] * 9)

    assert (watch.cooling(), marked) == ({}, [])


def test_a_key_refused_three_times_in_a_row_is_marked_invalid_once(thresholds, monkeypatch):
    marked = []
    monkeypatch.setattr(health, "_mark_invalid", lambda *args: marked.append(args) or True)
    watch = Health(MemoryCounters())
    bad, other = candidate("openai", "pk_bad"), candidate("openai", "pk_other")

    run(watch, (bad, failure(401)), (bad, failure(403)), (other, failure(401)))
    assert marked == []
    run(watch, (bad, failure(401)))
    assert marked == [("pk_bad", 3, 401)]
    run(watch, (bad, failure(401)), (bad, failure(401)))
    assert marked == [("pk_bad", 3, 401)]  # counted from zero again after the verdict


def test_a_success_of_the_key_starts_its_refusals_again(thresholds, monkeypatch):
    marked = []
    monkeypatch.setattr(health, "_mark_invalid", lambda *args: marked.append(args) or True)
    watch = Health(MemoryCounters())
    key = candidate("openai", "pk_flaky")

    run(watch, (key, failure(403)), (key, failure(403)), (key, None), (key, failure(403)), (key, failure(403)))

    assert marked == []


def test_the_gateways_own_key_is_never_marked(thresholds, monkeypatch):
    marked = []
    monkeypatch.setattr(health, "_mark_invalid", lambda *args: marked.append(args) or True)
    watch = Health(MemoryCounters())

    run(watch, *[(candidate("openai"), failure(401))] * 5)  # credits: no provider key row

    assert marked == []


def test_health_bookkeeping_that_fails_never_reaches_the_request(thresholds):
    class Broken(MemoryCounters):
        async def provider_failed(self, *args):
            raise ConnectionError("store away")

    watch = Health(Broken())

    run(watch, *[(candidate("groq"), failure(500))] * 5)

    assert watch.cooling() == {}


# --- health in Redis: two gateway processes count together ---------------------------------------


@pytest.fixture
def shared_redis(settings):
    from tests.reliability.conftest import RedisServer

    server = RedisServer().start()
    settings.REDIS_URL = server.url
    try:
        yield server
    finally:
        server.stop()


def test_two_processes_count_a_providers_failures_together_and_both_see_its_cool_down(thresholds, shared_redis, monkeypatch):
    monkeypatch.setattr(health, "REFRESH_SECONDS", 0.05)
    one, two = Health(RedisCounters()), Health(RedisCounters())
    groq, together = candidate("groq"), candidate("together-ai")

    async def scenario() -> None:
        for watch in (one, one, one, two):
            watch.failed(groq, failure(500))
            await watch.settled()
        assert one.cooling() == {} and two.cooling() == {}  # four, across the two
        two.failed(groq, failure(504))
        await two.settled()
        assert list(two.cooling()) == ["groq"]  # the process that started it: at once
        await asyncio.sleep(0.06)
        one.cooling()  # a view older than REFRESH_SECONDS is read again, in the background
        await one.settled()
        assert one.ordered([groq, together]) == [together, groq]
        await asyncio.sleep(0.3)
        assert one.cooling() == {} and two.cooling() == {}

    asyncio.run(scenario())


def test_two_processes_count_a_keys_refusals_together(thresholds, shared_redis, monkeypatch):
    marked = []
    monkeypatch.setattr(health, "_mark_invalid", lambda *args: marked.append(args) or True)
    one, two = Health(RedisCounters()), Health(RedisCounters())
    key = candidate("openai", "pk_shared")

    async def scenario() -> None:
        for watch in (one, two):
            watch.failed(key, failure(401))
            await watch.settled()
        assert marked == []
        one.answered(key)  # `one` counted a refusal: its success starts the count again
        await one.settled()
        for watch in (two, one, two):
            watch.failed(key, failure(401))
            await watch.settled()

    asyncio.run(scenario())
    assert marked == [("pk_shared", 3, 401)]
    assert shared_redis.client().get(f"{health.PREFIX}refused:pk_shared") is None  # forgotten with the verdict


def test_a_redis_that_is_away_costs_the_request_nothing(thresholds, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    watch = Health(RedisCounters())

    async def scenario() -> list:
        watch.failed(candidate("groq"), failure(500))
        watch.cooling()
        await watch.settled()
        return watch.ordered([candidate("groq"), candidate("together-ai")])

    assert [c.provider for c in asyncio.run(scenario())] == ["groq", "together-ai"]
