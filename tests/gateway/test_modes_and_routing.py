"""Who serves a request and who pays for it: the project's mode (api-keys, credits,
hybrid), routing of bare, pinned and custom model ids, and fallback between providers."""

import time
from decimal import Decimal

import openai
import pytest

from apikeys import services as key_services
from core.hashing import sha256_hex
from gateway import catalog, routing
from gateway.keys import load_snapshot
from projects import services
from tests.gateway.conftest import eventually, gateway_key
from usage.models import UsageLog
from usage.services import credits_add

HI = [{"role": "user", "content": "Hi"}]
LLAMA = "llama-3.3-70b-instruct"  # groq ($0.59 + $0.79 /M) and together-ai ($0.88 + $0.88 /M)


def _logs(project):
    return list(UsageLog.objects.filter(project=project).order_by("created_at"))


def _one_log(project) -> UsageLog:
    """The request's usage row, once the worker wrote it, checking no second one follows."""
    eventually(lambda: _logs(project), timeout=5)
    time.sleep(0.1)
    logs = _logs(project)
    assert len(logs) == 1, logs
    return logs[0]


def _generate_calls(fake):
    return [c for c in fake.calls if c.endpoint == "generate"]


@pytest.fixture
def credits_project(org, project):
    """A project paying with credits: every provider is usable through the gateway's keys."""
    credits_add(organization=org, amount="10")
    return services.project_update(project=project, mode="credits")


def own_key(org, provider, token=None):
    return key_services.provider_key_create(
        organization=org, provider=provider, token=token or f"sk-own-{provider}", validate=False
    )


# --- modes -------------------------------------------------------------------------------------


def test_api_keys_mode_without_the_providers_key_is_a_400_naming_the_provider(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="10")  # credits are there, but this mode never uses them
    own_key(org, "openai")  # a key for another provider does not help either
    services.project_update(project=project, mode="api-keys")
    client = gateway.client(key_for(project))

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="claude-3-5-haiku", messages=HI)
    assert raised.value.code == "provider_key_missing"
    assert "anthropic" in raised.value.message.lower()
    assert raised.value.type == "invalid_request_error"
    assert _generate_calls(fake_upstream) == []
    log = _one_log(project)
    assert (log.status_code, log.has_error, log.cost) == (400, True, 0)


def test_api_keys_mode_uses_the_organizations_key_and_no_credits(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="10")
    own_key(org, "openai")
    services.project_update(project=project, mode="api-keys")

    gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert fake_upstream.calls[-1].headers["authorization"] == "Bearer sk-own-openai"
    log = _one_log(project)
    assert (log.used_mode, log.fee) == ("api-keys", 0)
    org.refresh_from_db()
    assert org.credits == 10


def test_credits_mode_without_credits_is_a_402_insufficient_credits(gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")  # credits mode never falls back to the organization's own key
    services.project_update(project=project, mode="credits")
    client = gateway.client(key_for(project))

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert raised.value.status_code == 402
    assert raised.value.code == "insufficient_credits"
    assert _generate_calls(fake_upstream) == []
    log = _one_log(project)
    assert (log.status_code, log.has_error) == (402, True)


def test_credits_mode_pays_with_the_gateways_key_even_when_the_organization_has_one(gateway, org, credits_project, key_for, fake_upstream):
    own_key(org, "openai")
    gateway.client(key_for(credits_project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert fake_upstream.calls[-1].headers["authorization"] == f"Bearer {gateway_key('openai')}"
    log = _one_log(credits_project)
    assert log.used_mode == "credits" and log.fee > 0


def test_hybrid_prefers_the_organizations_own_key_and_charges_no_fee(gateway, org, project, key_for, fake_upstream):
    assert project.mode == "hybrid"
    credits_add(organization=org, amount="10")
    own_key(org, "openai")

    gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert fake_upstream.calls[-1].headers["authorization"] == "Bearer sk-own-openai"
    log = _one_log(project)
    assert (log.used_mode, log.used_provider, log.fee) == ("api-keys", "openai", 0)
    assert log.cost == Decimal("0.0000045")  # 10 × $0.15/M + 5 × $0.60/M
    org.refresh_from_db()
    assert org.credits == 10  # the organization's key was used: its credits are untouched


def test_hybrid_without_an_own_key_pays_with_credits_plus_the_five_percent_fee(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="10")

    gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert fake_upstream.calls[-1].headers["authorization"] == f"Bearer {gateway_key('openai')}"
    log = _one_log(project)
    assert log.used_mode == "credits"
    assert (log.input_cost, log.output_cost) == (Decimal("0.0000015"), Decimal("0.000003"))
    assert log.fee == Decimal("0.000000225")  # 5 % of $0.0000045
    assert log.cost == Decimal("0.000004725")
    assert eventually(lambda: (org.refresh_from_db(), org.credits)[1] == Decimal("10") - log.cost)


def test_hybrid_without_an_own_key_or_credits_is_a_402(gateway, project, key_for, fake_upstream):
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert (raised.value.status_code, raised.value.code) == (402, "insufficient_credits")
    assert _generate_calls(fake_upstream) == []
    assert _one_log(project).status_code == 402


# --- routing -----------------------------------------------------------------------------------


def test_a_bare_model_goes_to_its_cheapest_provider(gateway, credits_project, key_for, fake_upstream):
    response = gateway.client(key_for(credits_project)).chat.completions.with_raw_response.create(model=LLAMA, messages=HI)
    assert response.headers["x-gateway-provider"] == "groq"
    [call] = _generate_calls(fake_upstream)
    assert (call.provider, call.body["model"]) == ("groq", "llama-3.3-70b-versatile")
    log = _one_log(credits_project)
    assert (log.used_provider, log.used_model, log.requested_model) == ("groq", LLAMA, LLAMA)


def test_a_bare_model_goes_to_the_cheapest_provider_the_project_can_use(gateway, org, project, key_for, fake_upstream):
    services.project_update(project=project, mode="api-keys")
    own_key(org, "together-ai")  # groq is cheaper, but this organization has no groq key

    response = gateway.client(key_for(project)).chat.completions.with_raw_response.create(model=LLAMA, messages=HI)
    assert response.headers["x-gateway-provider"] == "together-ai"
    [call] = _generate_calls(fake_upstream)
    assert (call.provider, call.body["model"]) == ("together-ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo")
    assert call.headers["authorization"] == "Bearer sk-own-together-ai"
    assert _one_log(project).used_provider == "together-ai"


def test_provider_slash_model_pins_the_provider_even_when_another_is_cheaper(gateway, credits_project, key_for, fake_upstream):
    response = gateway.client(key_for(credits_project)).chat.completions.with_raw_response.create(
        model=f"together-ai/{LLAMA}", messages=HI
    )
    assert response.headers["x-gateway-provider"] == "together-ai"
    assert [c.provider for c in _generate_calls(fake_upstream)] == ["together-ai"]
    log = _one_log(credits_project)
    assert (log.used_provider, log.used_model, log.requested_model) == ("together-ai", LLAMA, f"together-ai/{LLAMA}")


def test_a_pinned_provider_that_fails_is_not_replaced_by_another(gateway, credits_project, key_for, fake_upstream):
    fake_upstream.fail("status", provider="together-ai", status=500)
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.client(key_for(credits_project)).chat.completions.create(model=f"together-ai/{LLAMA}", messages=HI)
    assert (raised.value.status_code, raised.value.code) == (502, "upstream_error")
    assert [c.provider for c in _generate_calls(fake_upstream)] == ["together-ai"]
    log = _one_log(credits_project)
    assert (log.status_code, log.used_provider) == (502, "together-ai")


def test_a_custom_provider_key_is_addressed_by_its_name(gateway, org, project, key_for, fake_upstream, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake listens on loopback
    key_services.provider_key_create(
        organization=org, provider="custom", name="my-llm", token="sk-own-my-llm",
        base_url=fake_upstream.base_url("my-llm"), validate=False,
    )
    client = gateway.client(key_for(project))

    response = client.chat.completions.with_raw_response.create(model="my-llm/some-model", messages=HI)
    assert response.parse().choices[0].message.content == "Hello from the fake upstream."
    assert response.headers["x-gateway-provider"] == "my-llm"
    [call] = _generate_calls(fake_upstream)
    assert (call.provider, call.path, call.body["model"]) == ("my-llm", "/my-llm/v1/chat/completions", "some-model")
    assert call.headers["authorization"] == "Bearer sk-own-my-llm"
    log = _one_log(project)
    assert (log.used_provider, log.used_model, log.used_mode) == ("my-llm", "some-model", "api-keys")
    assert (log.prompt_tokens, log.completion_tokens, log.cost) == (10, 5, 0)

    with pytest.raises(openai.NotFoundError) as raised:  # a name the organization did not set up
        client.chat.completions.create(model="other-llm/some-model", messages=HI)
    assert raised.value.code == "model_not_found"
    assert eventually(lambda: UsageLog.objects.filter(project=project, status_code=404).exists(), timeout=5)


# --- fallback ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_when_the_cheapest_provider_fails_the_next_one_serves_and_the_log_says_so(gateway, credits_project, key_for, fake_upstream, status):
    fake_upstream.fail("status", provider="groq", status=status)
    response = gateway.client(key_for(credits_project)).chat.completions.with_raw_response.create(model=LLAMA, messages=HI)

    assert response.parse().choices[0].message.content == "Hello from the fake upstream."
    assert response.headers["x-gateway-provider"] == "together-ai"
    assert [c.provider for c in _generate_calls(fake_upstream)] == ["groq", "together-ai"]
    log = _one_log(credits_project)
    assert (log.used_provider, log.used_model, log.status_code, log.has_error) == ("together-ai", LLAMA, 200, False)
    assert log.input_cost == Decimal("0.0000088")  # 10 × together-ai's $0.88/M, not groq's price


def test_when_every_provider_fails_the_client_gets_a_502_after_one_call_to_each(gateway, credits_project, key_for, fake_upstream):
    fake_upstream.fail("status", status=500, times=None)
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.client(key_for(credits_project)).chat.completions.create(model=LLAMA, messages=HI)

    assert (raised.value.status_code, raised.value.code) == (502, "upstream_error")
    assert [c.provider for c in _generate_calls(fake_upstream)] == ["groq", "together-ai"]
    log = _one_log(credits_project)
    assert (log.status_code, log.has_error, log.cost) == (502, True, 0)


def test_routing_tries_at_most_three_providers_the_first_and_two_retries(credits_project, key_for, monkeypatch, settings):
    # No catalog model has more than two providers, so the cap is checked on the router itself.
    providers = ["mistral", "groq", "deepseek", "xai", "together-ai"]
    offers = tuple(reversed([
        catalog.Offer(p, "shared-model", "shared-model", catalog.flat_price(Decimal(i + 1), Decimal(i + 1)), 8000, 1000)
        for i, p in enumerate(providers)
    ]))
    catalog_offers = catalog.offers_of
    monkeypatch.setattr(catalog, "offers_of", lambda model: offers if model == "shared-model" else catalog_offers(model))
    settings.UPSTREAM_MAX_RETRIES = 2
    settings.PROVIDER_API_KEYS = {p: f"gw-{p}" for p in providers}
    settings.PROVIDER_BASE_URLS = {p: f"https://{p}.example" for p in providers}
    snapshot = load_snapshot(sha256_hex(key_for(credits_project)))

    chosen = routing.candidates(snapshot, "shared-model")
    assert [c.provider for c in chosen] == ["mistral", "groq", "deepseek"]  # cheapest first, then cut at three


def test_a_429_on_the_only_provider_reaches_the_sdk_as_rate_limited_with_retry_after(gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    fake_upstream.fail("status", provider="openai", status=429, headers={"Retry-After": "7"})

    with pytest.raises(openai.RateLimitError) as raised:
        gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert raised.value.status_code == 429
    assert raised.value.code == "rate_limited"
    assert raised.value.response.headers["retry-after"] == "7"
    assert len(_generate_calls(fake_upstream)) == 1
    log = _one_log(project)
    assert (log.status_code, log.has_error) == (429, True)


def test_a_400_from_the_provider_is_not_retried_on_another(gateway, credits_project, key_for, fake_upstream):
    fake_upstream.fail("status", provider="groq", status=400, times=None)
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client(key_for(credits_project)).chat.completions.create(model=LLAMA, messages=HI)

    assert raised.value.type == "invalid_request_error"
    assert [c.provider for c in _generate_calls(fake_upstream)] == ["groq"]
    log = _one_log(credits_project)
    assert (log.status_code, log.has_error, log.used_provider) == (400, True, "groq")


def test_fallback_never_goes_to_a_provider_the_keys_iam_rules_deny(gateway, credits_project, fake_upstream):
    token, key = key_services.api_key_create(project=credits_project)
    key_services.iam_rule_create(api_key=key, rule_type="deny_providers", rule_value={"providers": ["together-ai"]})
    fake_upstream.fail("status", provider="groq", status=500)

    with pytest.raises(openai.InternalServerError) as raised:
        gateway.client(token).chat.completions.create(model=LLAMA, messages=HI)
    assert (raised.value.status_code, raised.value.code) == (502, "upstream_error")
    assert [c.provider for c in _generate_calls(fake_upstream)] == ["groq"]
    assert _one_log(credits_project).used_provider == "groq"
