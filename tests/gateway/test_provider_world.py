"""The real provider world through the openai SDK against a live gateway: today's models by
their providers' ids, pinned unknown models, usage with its details and cost, the output cap
lowered to what a limit leaves, refusals that say what fits, custom provider prices, and the
models a key can use."""

import time
from decimal import Decimal

import httpx
import openai
import pytest

from apikeys import services as key_services
from projects import services
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

HI = [{"role": "user", "content": "Hi"}]


def _logs(project):
    return list(UsageLog.objects.filter(project=project).order_by("created_at"))


def _generate_calls(fake):
    return [c for c in fake.calls if c.endpoint == "generate"]


def own_key(org, provider):
    return key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)


def _post(gateway, token: str, body: dict) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=20)


@pytest.mark.parametrize(("model", "provider", "upstream"), [
    ("anthropic/claude-sonnet-4-20250514", "anthropic", "claude-sonnet-4-20250514"),
    ("openai/gpt-4o-mini-2024-07-18", "openai", "gpt-4o-mini-2024-07-18"),
    ("gemini-2.0-flash", "google-ai-studio", "gemini-2.0-flash"),
    ("gpt-5", "openai", "gpt-5"),
    ("claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
])
def test_todays_models_work_by_their_providers_ids(gateway, org, project, key_for, fake_upstream, model, provider, upstream):
    own_key(org, provider)
    response = gateway.client(key_for(project)).chat.completions.with_raw_response.create(model=model, messages=HI)
    assert response.headers["x-gateway-provider"] == provider
    assert response.parse().choices[0].message.content
    [call] = _generate_calls(fake_upstream)
    assert call.model == upstream


def test_a_pinned_model_the_catalog_does_not_know_passes_through_on_the_organizations_key_unpriced(
        gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    completion = gateway.client(key_for(project)).chat.completions.create(model="openai/gpt-99-preview", messages=HI)
    assert completion.usage.cost == 0
    [call] = _generate_calls(fake_upstream)
    assert call.model == "gpt-99-preview"
    log = eventually(lambda: _logs(project))[0]
    assert (log.priced, log.cost, log.used_model, log.prompt_tokens) == (False, 0, "gpt-99-preview", 10)


def test_a_pinned_unknown_model_that_credits_would_pay_is_a_404_model_not_found(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="5")
    with pytest.raises(openai.NotFoundError) as raised:
        gateway.client(key_for(project)).chat.completions.create(model="openai/gpt-99-preview", messages=HI)
    assert raised.value.code == "model_not_found"
    assert _generate_calls(fake_upstream) == []


def test_usage_carries_its_details_and_cost_and_the_log_keeps_them(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="5")
    fake_upstream.usage = (1000, 50)
    response = gateway.client(key_for(project)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI, user="end-user-7")
    usage = response.parse().usage
    # $0.15 and $0.60 per 1M tokens, plus the credits fee
    cost = (Decimal(1000) * Decimal("0.15") + Decimal(50) * Decimal("0.6")) / 1_000_000
    log = eventually(lambda: _logs(project))[0]
    assert Decimal(response.headers["x-gateway-cost"]) == log.cost == cost + log.fee
    assert Decimal(str(usage.cost)) == log.cost
    assert (log.user, log.endpoint, log.priced, log.cached_tokens, log.reasoning_tokens) == (
        "end-user-7", "chat.completions", True, 0, 0)


def test_without_max_tokens_a_model_maximum_that_does_not_fit_is_lowered_to_what_fits(
        gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    token = key_for(project, usage_limit="0.05")  # claude-sonnet-4: 64,000 × $15/1M = $0.96 would not fit
    response = gateway.client(token).chat.completions.with_raw_response.create(model="claude-sonnet-4", messages=HI)
    lowered = int(response.headers["x-gateway-max-tokens"])
    assert 16 <= lowered < 64_000
    assert lowered * 15 / 1_000_000 <= 0.05
    [call] = _generate_calls(fake_upstream)
    assert call.body["max_tokens"] == lowered


def test_the_lowered_cap_goes_to_openai_as_max_completion_tokens(gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    token = key_for(project, usage_limit="0.01")  # gpt-5: 128,000 × $10/1M = $1.28 would not fit
    gateway.client(token).chat.completions.create(model="gpt-5", messages=HI)
    [call] = _generate_calls(fake_upstream)
    assert 16 <= call.body["max_completion_tokens"] <= 1_000 and "max_tokens" not in call.body


def test_a_request_that_does_not_fit_says_its_worst_case_what_remains_and_what_would_fit(
        gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    token = key_for(project, usage_limit="0.01")
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.client(token).chat.completions.create(model="claude-sonnet-4", messages=HI, max_tokens=10_000)
    assert raised.value.status_code == 402
    assert raised.value.code == "usage_limit_insufficient"
    message = raised.value.message
    assert "could cost up to $0.15" in message and "$0.010000000 left" in message
    assert "Set max_tokens to 648 or less" in message  # ($0.01 − 90 prompt tokens × $3/1M) / $15 per 1M
    assert _generate_calls(fake_upstream) == []


def test_a_key_with_nothing_left_is_usage_limit_reached(gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    token = key_for(project, usage_limit="0")
    with pytest.raises(openai.AuthenticationError) as raised:
        gateway.client(token).chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=10)
    assert raised.value.code == "usage_limit_reached"


def test_n_choices_are_reserved_n_times(gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    token = key_for(project, usage_limit="0.001")  # one choice of 1,000 fits ($0.0006), four do not
    client = gateway.client(token)
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=1_000)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=1_000, n=4)
    assert raised.value.code == "usage_limit_insufficient"
    assert "4 × 1000 output tokens" in raised.value.message


def test_pictures_count_at_their_per_picture_maximum_against_credits(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="0.01")
    picture = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    content = [{"type": "text", "text": "What is this?"}, picture, picture, picture]
    with pytest.raises(openai.APIStatusError) as raised:  # 3 × 1,600 tokens × $3/1M > $0.01
        gateway.client(key_for(project)).chat.completions.create(
            model="claude-sonnet-4", messages=[{"role": "user", "content": content}], max_tokens=10)
    assert (raised.value.status_code, raised.value.code) == (402, "insufficient_credits")
    assert _generate_calls(fake_upstream) == []


def test_a_custom_provider_with_declared_prices_is_billed_and_its_limit_holds(
        gateway, org, project, key_for, fake_upstream, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake listens on loopback
    key_services.provider_key_create(
        organization=org, provider="custom", name="my-llm", token="sk-own-my-llm", base_url=fake_upstream.base_url("my-llm"),
        validate=False, prices={"some-model": {"inputPrice": "1", "outputPrice": "2"}})
    fake_upstream.usage = (1000, 500)
    token = key_for(project, usage_limit="1")
    completion = gateway.client(token).chat.completions.create(model="my-llm/some-model", messages=HI, max_tokens=500)
    assert Decimal(str(completion.usage.cost)) == Decimal("0.002")  # 1,000 × $1 + 500 × $2 per 1M
    log = eventually(lambda: _logs(project))[0]
    assert (log.cost, log.priced) == (Decimal("0.002"), True)


def test_the_models_list_is_what_this_key_can_use_now(gateway, org, project, key_for, fake_upstream, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    services.project_update(project=project, mode="api-keys")
    own_key(org, "anthropic")
    key_services.provider_key_create(
        organization=org, provider="custom", name="my-llm", token="sk-own-my-llm", base_url=fake_upstream.base_url("my-llm"),
        validate=False, prices={"some-model": {"inputPrice": "1", "outputPrice": "2"}})
    client = gateway.client(key_for(project))
    ids = {m.id for m in client.models.list().data}
    assert {"claude-sonnet-4", "claude-sonnet-4-5", "my-llm/some-model"} <= ids
    assert not {"gpt-4o-mini", "gemini-2.5-flash"} & ids  # no key for those providers

    model = client.models.retrieve("claude-sonnet-4-5")
    assert model.id == "claude-sonnet-4-5"
    [provider] = model.model_extra["providers"]
    assert (provider["inputPrice"], provider["outputPrice"], provider["cachedInputPrice"]) == ("3", "15", "0.3")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o-mini")


def test_the_usage_log_api_shows_the_new_fields(gateway, org, project, key_for, fake_upstream, owner):
    own_key(org, "openai")
    gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI, user="u-1")
    eventually(lambda: _logs(project))
    time.sleep(0.05)
    [log] = owner.api.get("/api/v1/logs", projectId=project.id).json()["logs"]
    assert {k: log[k] for k in ("endpoint", "cachedTokens", "cacheWriteTokens", "reasoningTokens", "priced", "user")} == {
        "endpoint": "chat.completions", "cachedTokens": 0, "cacheWriteTokens": 0, "reasoningTokens": 0, "priced": True,
        "user": "u-1"}


@pytest.mark.parametrize(("model", "provider"), [("gpt-4o-mini", "openai"), ("claude-sonnet-4", "anthropic"),
                                                 ("gemini-2.5-flash", "google-ai-studio")])
def test_a_streams_usage_chunk_carries_the_cost_billed(gateway, org, project, key_for, fake_upstream, model, provider):
    own_key(org, provider)
    fake_upstream.usage = (1000, 50)
    stream = gateway.client(key_for(project)).chat.completions.create(
        model=model, messages=HI, stream=True, stream_options={"include_usage": True})
    last = list(stream)[-1]
    log = eventually(lambda: _logs(project))[0]
    assert log.cost > 0 and Decimal(str(last.usage.cost)) == log.cost


@pytest.mark.parametrize("stream", [False, True])
def test_a_cached_answer_says_it_cost_nothing(gateway, org, project, key_for, fake_upstream, stream):
    own_key(org, "openai")
    services.project_update(project=project, caching_enabled=True)
    client = gateway.client(key_for(project))

    def ask():
        if stream:
            return list(client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                                       stream_options={"include_usage": True}))[-1].usage
        return client.chat.completions.create(model="gpt-4o-mini", messages=HI).usage

    first, second = ask(), ask()
    assert first.cost > 0 and second.cost == 0
    assert second.prompt_tokens == first.prompt_tokens  # the original's counts
