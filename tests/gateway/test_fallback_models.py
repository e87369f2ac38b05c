"""Fallback models: `models: [...]` in a chat completion request lists models to try, in order,
when the first cannot answer before the first byte; each under the key's IAM rules. The list
never reaches a provider."""

import httpx
import openai
import pytest

from apikeys import services as key_services
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


def _generate(fake):
    return [c for c in fake.calls if c.endpoint == "generate"]


def test_a_failing_model_falls_back_to_the_next_model_in_order(gateway, org, project, key_for, fake_upstream, paid):
    fake_upstream.fail("status", provider="openai", status=503, times=None)
    fake_upstream.reply = "from the fallback"
    response = gateway.client(key_for(project)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI, extra_body={"models": ["claude-haiku-4-5", "gemini-2.0-flash"]})
    answer = response.parse()
    assert answer.choices[0].message.content == "from the fallback"
    assert response.headers["x-gateway-provider"] == "anthropic"
    calls = _generate(fake_upstream)
    assert [c.provider for c in calls] == ["openai", "anthropic"]
    assert "models" not in calls[0].body and "models" not in calls[1].body
    [log] = eventually(lambda: list(UsageLog.objects.filter(project=project)))
    assert (log.requested_model, log.used_provider, log.status_code) == ("gpt-4o-mini", "anthropic", 200)


def test_a_fallback_the_rules_deny_is_skipped(gateway, org, project, key_for, fake_upstream, paid):
    token = key_for(project)
    key = project.api_keys.get()
    key_services.iam_rule_create(api_key=key, rule_type="deny_providers", rule_value={"providers": ["anthropic"]})
    fake_upstream.fail("status", provider="openai", status=503, times=None)
    answer = gateway.client(token).chat.completions.create(
        model="gpt-4o-mini", messages=HI, extra_body={"models": ["claude-haiku-4-5", "gemini-2.0-flash"]})
    assert answer.choices[0].message.content
    assert [c.provider for c in _generate(fake_upstream)] == ["openai", "google-ai-studio"]


def test_a_denied_first_model_is_served_by_an_allowed_fallback_and_all_denied_is_the_first_refusal(
        gateway, org, project, key_for, fake_upstream, paid):
    token = key_for(project)
    key = project.api_keys.get()
    key_services.iam_rule_create(api_key=key, rule_type="deny_models", rule_value={"models": ["gpt-4o-mini", "claude-haiku-4-5"]})
    client = gateway.client(token)
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={"models": ["gemini-2.0-flash"]})
    assert [c.provider for c in _generate(fake_upstream)] == ["google-ai-studio"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={"models": ["claude-haiku-4-5"]})
    assert "gpt-4o-mini" in denied.value.message


@pytest.mark.parametrize("models", ["gpt-4o", [1], [""], ["a", "b", "c", "d", "e", "f"]])
def test_a_bad_models_list_is_a_400_naming_it(gateway, project, key_for, paid, models):
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client(key_for(project)).chat.completions.create(model="gpt-4o-mini", messages=HI,
                                                                 extra_body={"models": models})
    assert refused.value.body["param"] == "models"


def test_every_endpoint_falls_back_and_never_sends_models_upstream(gateway, org, project, key_for, fake_upstream, paid):
    fake_upstream.fail("status", provider="openai", status=503, times=None, on="any")
    token = key_for(project)
    headers = {"Authorization": f"Bearer {token}"}
    messages = httpx.post(f"{gateway.url}/v1/messages", headers=headers, timeout=20, json={
        "model": "gpt-4o-mini", "max_tokens": 5, "messages": HI, "models": ["claude-haiku-4-5"]})
    responses = httpx.post(f"{gateway.url}/v1/responses", headers=headers, timeout=20, json={
        "model": "gpt-4o-mini", "input": "Hi", "models": ["gemini-2.0-flash"]})
    embeddings = httpx.post(f"{gateway.url}/v1/embeddings", headers=headers, timeout=20, json={
        "model": "text-embedding-3-small", "input": "Hi", "models": ["gemini-embedding-001"]})
    assert (messages.status_code, messages.headers["x-gateway-provider"], messages.json()["type"]) == \
        (200, "anthropic", "message")
    assert (responses.status_code, responses.headers["x-gateway-provider"], responses.json()["object"]) == \
        (200, "google-ai-studio", "response")
    assert (embeddings.status_code, embeddings.headers["x-gateway-provider"]) == (200, "google-ai-studio")
    assert all("models" not in (c.body or {}) for c in fake_upstream.calls)
    assert len([c for c in fake_upstream.calls if c.provider == "openai"]) == 3  # each tried its model first
