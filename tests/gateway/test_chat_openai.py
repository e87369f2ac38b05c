"""The gateway end to end through the official OpenAI SDK: OpenAI-format providers."""

import openai
import pytest

from apikeys import services as key_services
from projects import services
from tests.gateway.conftest import eventually, gateway_key
from usage.models import UsageLog


@pytest.fixture
def own_openai_key(org):
    return key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)


def _logs(project):
    return list(UsageLog.objects.filter(project=project).order_by("created_at"))


def test_a_chat_completion_goes_through_with_the_providers_usage(gateway, project, own_openai_key, key_for, fake_upstream):
    client = gateway.client(key_for(project))
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    completion = response.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 5)
    assert response.headers["x-gateway-provider"] == "openai"
    assert response.headers["x-request-id"]
    call = fake_upstream.calls[-1]
    assert call.headers["authorization"] == "Bearer sk-own-openai"
    assert call.body["model"] == "gpt-4o-mini"

    logs = eventually(lambda: _logs(project))
    assert len(logs) == 1
    log = logs[0]
    assert (log.used_provider, log.used_model, log.used_mode) == ("openai", "gpt-4o-mini", "api-keys")
    assert (log.prompt_tokens, log.completion_tokens, log.status_code, log.has_error) == (10, 5, 200, False)
    assert log.request_id == response.headers["x-request-id"]
    # gpt-4o-mini: 10 × $0.15/M + 5 × $0.60/M, no fee on own keys
    assert str(log.cost.normalize()) == "0.0000045" and log.fee == 0


def test_a_stream_arrives_in_chunks_with_usage_when_asked(gateway, project, own_openai_key, key_for):
    client = gateway.client(key_for(project))
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert chunks[-1].usage.completion_tokens == 5
    log = eventually(lambda: _logs(project))[0]
    assert log.streamed and log.completion_tokens == 5 and log.time_to_first_token is not None


def test_a_stream_without_include_usage_hides_the_usage_chunk_but_logs_usage(gateway, project, own_openai_key, key_for, fake_upstream):
    client = gateway.client(key_for(project))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert fake_upstream.calls[-1].body["stream_options"] == {"include_usage": True}
    assert eventually(lambda: _logs(project))[0].completion_tokens == 5


def test_an_unknown_model_is_a_404_model_not_found(gateway, project, key_for):
    client = gateway.client(key_for(project))
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.code == "model_not_found"
    log = eventually(lambda: _logs(project))[0]
    assert log.status_code == 404 and log.has_error


def test_a_wrong_key_is_a_401(gateway, project):
    with pytest.raises(openai.AuthenticationError) as raised:
        gateway.client("llmgw_not-a-key").chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.code == "invalid_api_key"


def test_credits_mode_uses_the_gateways_key_and_bills_credits_with_the_fee(gateway, org, project, key_for, fake_upstream):
    from usage.services import credits_add

    credits_add(organization=org, amount="10")
    services.project_update(project=project, mode="credits")
    client = gateway.client(key_for(project))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=50)
    assert fake_upstream.calls[-1].headers["authorization"] == f"Bearer {gateway_key('openai')}"
    log = eventually(lambda: _logs(project))[0]
    assert log.used_mode == "credits"
    assert log.fee == (log.input_cost + log.output_cost) * 5 / 100
    org.refresh_from_db()
    assert eventually(lambda: (org.refresh_from_db(), org.credits)[1] == 10 - log.cost)


def test_the_models_list_carries_prices_per_provider(gateway, project, key_for):
    models = gateway.client(key_for(project)).models.list()
    by_id = {m.id: m for m in models.data}
    assert "gpt-4o-mini" in by_id and "claude-3-5-haiku" in by_id and "gemini-2.5-flash" in by_id
    provider = by_id["gpt-4o-mini"].model_extra["providers"][0]
    assert provider["inputPrice"] == "0.15" and provider["contextLength"] == 128000
