"""POST /v1/messages end to end: the official `anthropic` SDK against the live gateway and the
fake upstream. Claude models get the client's request as written (nothing lost) and the client
gets Anthropic's answer and events as they came; OpenAI-format and Google models are reached
through chat completions and answered in Anthropic's shapes. Errors in Anthropic's shape,
count_tokens, and one usage row per request (endpoint "messages")."""

import anthropic
import pytest

from apikeys import services as key_services
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini", "google-ai-studio": "gemini-2.0-flash"}


def client(gateway, key: str, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20, **kwargs)


def _generate_calls(fake):
    return [c for c in fake.calls if c.endpoint == "generate"]


def _logs(project, n: int = 1) -> list[UsageLog]:
    rows = eventually(lambda: (found := list(UsageLog.objects.filter(project=project).order_by("created_at")))
                      and len(found) >= n and found)
    assert rows and len(rows) == n, rows
    return rows


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


@pytest.mark.parametrize("provider", MODELS)
def test_create_answers_anthropics_message_for_every_kind_of_model(gateway, org, project, key_for, fake_upstream, paid,
                                                                    provider):
    fake_upstream.reply, fake_upstream.usage = "Hello there", (21, 4)
    message = client(gateway, key_for(project)).messages.create(
        model=MODELS[provider], max_tokens=100, system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}], metadata={"user_id": "u-1"})
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hello there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (21, 4)
    [call] = _generate_calls(fake_upstream)
    if provider == "anthropic":  # native: the client's body, model replaced
        assert call.body == {"model": "claude-haiku-4-5", "max_tokens": 100, "system": "Be brief.",
                             "messages": [{"role": "user", "content": "Hi"}], "metadata": {"user_id": "u-1"}}
    [log] = _logs(project)
    assert (log.endpoint, log.used_provider, log.prompt_tokens, log.completion_tokens) == ("messages", provider, 21, 4)
    assert log.cost > 0 and log.status_code == 200 and log.user == "u-1"


@pytest.mark.parametrize("provider", MODELS)
def test_stream_sends_every_event_in_order(gateway, org, project, key_for, fake_upstream, paid, provider):
    fake_upstream.reply, fake_upstream.usage = "One two three four", (30, 7)
    with client(gateway, key_for(project)).messages.stream(
            model=MODELS[provider], max_tokens=50, messages=[{"role": "user", "content": "Count"}]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].text == "One two three four" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 7)
    [log] = _logs(project)
    assert (log.endpoint, log.streamed, log.prompt_tokens, log.completion_tokens) == ("messages", True, 30, 7)


@pytest.mark.parametrize("provider", MODELS)
def test_tools_round_trip(gateway, org, project, key_for, fake_upstream, paid, provider):
    c = client(gateway, key_for(project))
    first = c.messages.create(model=MODELS[provider], max_tokens=100, tools=[WEATHER],
                              messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input, dict)
    second = c.messages.create(model=MODELS[provider], max_tokens=100, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}]},
    ])
    assert second.type == "message"
    sent = _generate_calls(fake_upstream)[-1].body
    if provider == "openai":
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": use.id, "content": "Sunny"}
        assert sent["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("provider", MODELS)
def test_streamed_tool_use(gateway, org, project, key_for, fake_upstream, paid, provider):
    with client(gateway, key_for(project)).messages.stream(
            model=MODELS[provider], max_tokens=100, tools=[WEATHER],
            messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    [use] = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input, dict) and final.stop_reason == "tool_use"


@pytest.mark.parametrize("provider", MODELS)
def test_images(gateway, org, project, key_for, fake_upstream, paid, provider):
    client(gateway, key_for(project)).messages.create(model=MODELS[provider], max_tokens=20, messages=[
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                                     {"type": "text", "text": "What is this?"}]}])
    sent = _generate_calls(fake_upstream)[-1].body
    if provider == "openai":
        assert sent["messages"][0]["content"][0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    if provider == "anthropic":
        assert sent["messages"][0]["content"][0]["source"]["data"] == PNG


def test_claude_only_parts_go_natively_and_are_refused_by_name_for_other_models(gateway, org, project, key_for,
                                                                                  fake_upstream, paid):
    c = client(gateway, key_for(project))
    doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    messages = [{"role": "user", "content": [doc, {"type": "text", "text": "Summarise"}]}]
    c.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=messages)
    assert _generate_calls(fake_upstream)[-1].body["messages"][0]["content"][0] == doc
    with pytest.raises(anthropic.BadRequestError) as refused:
        c.messages.create(model="gpt-4o-mini", max_tokens=20, messages=messages)
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].source" in refused.value.body["error"]["message"]


def test_errors_come_in_anthropics_shape(gateway, org, project, key_for, paid):
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(gateway, "llmgw_nope").messages.create(model="claude-haiku-4-5", max_tokens=5,
                                                      messages=[{"role": "user", "content": "Hi"}])
    assert bad_key.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "Invalid API key."}}
    with pytest.raises(anthropic.BadRequestError) as no_max:
        client(gateway, key_for(project)).post("/v1/messages", cast_to=object, body={
            "model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]})
    assert "max_tokens" in no_max.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client(gateway, key_for(project)).messages.create(model="no-such-model", max_tokens=5,
                                                          messages=[{"role": "user", "content": "Hi"}])
    assert unknown.value.body["error"]["type"] == "not_found_error"


def test_bearer_and_x_api_key_both_carry_the_key(gateway, org, project, key_for, fake_upstream, paid):
    key = key_for(project)
    by_header = client(gateway, key).messages.create(model="claude-haiku-4-5", max_tokens=5,
                                                     messages=[{"role": "user", "content": "Hi"}])
    by_bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=key, max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert by_header.type == by_bearer.type == "message"


def test_count_tokens(gateway, org, project, key_for, fake_upstream, paid):
    fake_upstream.usage = (42, 1)
    c = client(gateway, key_for(project))
    counted = c.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "Hi"}])
    assert counted.input_tokens == 42
    estimated = c.messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi" * 100}])
    assert estimated.input_tokens >= 50
    assert not UsageLog.objects.filter(project=project).exists()


def test_a_usage_limit_refuses_in_anthropics_shape(gateway, org, project, key_for, paid):
    key = key_for(project, usage_limit="0.000001")
    with pytest.raises(anthropic.APIStatusError) as refused:
        client(gateway, key).messages.create(model="claude-haiku-4-5", max_tokens=4000,
                                             messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 402 and refused.value.body["error"]["type"] == "billing_error"
    [log] = _logs(project)
    assert (log.endpoint, log.status_code) == ("messages", 402)


def test_claude_gets_the_organizations_key_and_the_clients_version_and_beta_headers(gateway, org, project, key_for,
                                                                                    fake_upstream):
    key_services.provider_key_create(organization=org, provider="anthropic", token="sk-own-anthropic", validate=False)
    beta = {"anthropic-beta": "context-1m-2025-08-07"}
    client(gateway, key_for(project), default_headers=beta).messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    [call] = _generate_calls(fake_upstream)
    assert call.headers["x-api-key"] == "sk-own-anthropic" and call.headers["anthropic-beta"] == beta["anthropic-beta"]
    assert call.headers["anthropic-version"] == anthropic.Anthropic(api_key="x").default_headers["anthropic-version"]


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}, "tools[0]"),
    ({"tools": [{"type": "code_execution_20250522", "name": "code_execution"}]}, "tools[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]},
     "messages[0].content[0].cache_control.ttl"),
    ({"system": [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
     "system[0].cache_control.ttl"),
])
def test_what_anthropic_bills_beyond_the_gateways_prices_is_refused_by_name_even_for_claude(
        gateway, org, project, key_for, fake_upstream, paid, extra, param):
    body = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}], **extra}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(gateway, key_for(project)).post("/v1/messages", cast_to=object, body=body)
    assert param in refused.value.body["error"]["message"]
    assert not _generate_calls(fake_upstream)
