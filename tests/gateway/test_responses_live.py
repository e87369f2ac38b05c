"""POST /v1/responses end to end: the official openai SDK's `responses.create` (and OpenAI's
Agents SDK) against the live gateway and the fake upstream. OpenAI's own models get the
request as written and answer as they do; other models (Claude, Gemini, OpenAI-compatible
hosts) are reached through chat completions and answered as a Response or its typed events,
statelessly. One usage row per request (endpoint "responses")."""

import json

import openai
import pytest

from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TRANSLATED = {"anthropic": "claude-haiku-4-5", "google-ai-studio": "gemini-2.0-flash", "deepseek": "deepseek-chat"}
MODELS = {"openai": "gpt-4o-mini", **TRANSLATED}


def _generate_calls(fake):
    return [c for c in fake.calls if c.endpoint in ("generate", "responses")]


def _logs(project, n: int = 1) -> list[UsageLog]:
    rows = eventually(lambda: (found := list(UsageLog.objects.filter(project=project).order_by("created_at")))
                      and len(found) >= n and found)
    assert rows and len(rows) == n, rows
    return rows


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


@pytest.mark.parametrize("provider", MODELS)
def test_create_answers_a_response(gateway, org, project, key_for, fake_upstream, paid, provider):
    fake_upstream.reply, fake_upstream.usage = "Hello there", (21, 4)
    response = gateway.client(key_for(project)).responses.create(
        model=MODELS[provider], instructions="Be brief.", input="Hi", max_output_tokens=100)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "Hello there"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (21, 4, 25)
    [call] = _generate_calls(fake_upstream)
    if provider == "openai":
        assert call.endpoint == "responses"
        assert call.body == {"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 100}
    [log] = _logs(project)
    assert (log.endpoint, log.used_provider, log.prompt_tokens, log.completion_tokens) == ("responses", provider, 21, 4)
    assert log.cost > 0 and log.status_code == 200


@pytest.mark.parametrize("provider", MODELS)
def test_stream_sends_typed_events_and_usage_in_completed(gateway, org, project, key_for, fake_upstream, paid,
                                                           provider):
    fake_upstream.reply, fake_upstream.usage = "One two three four", (30, 7)
    stream = gateway.client(key_for(project)).responses.create(model=MODELS[provider], input="Count", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "One two three four" == events[-1].response.output_text
    assert (events[-1].response.usage.input_tokens, events[-1].response.usage.output_tokens) == (30, 7)
    [log] = _logs(project)
    assert (log.endpoint, log.streamed, log.prompt_tokens, log.completion_tokens) == ("responses", True, 30, 7)


@pytest.mark.parametrize("provider", MODELS)
def test_function_tools_round_trip(gateway, org, project, key_for, fake_upstream, paid, provider):
    client = gateway.client(key_for(project))
    first = client.responses.create(model=MODELS[provider], input="Weather in Paris?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
    second = client.responses.create(model=MODELS[provider], tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
    ])
    assert second.status == "completed"
    sent = _generate_calls(fake_upstream)[-1].body
    if provider == "deepseek":
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny"}
        assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("provider", MODELS)
def test_streamed_function_call(gateway, org, project, key_for, fake_upstream, paid, provider):
    events = list(gateway.client(key_for(project)).responses.create(
        model=MODELS[provider], input="Weather in Paris?", tools=[WEATHER], stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds or "response.function_call_arguments.done" in kinds
    [call] = [item for item in events[-1].response.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)


@pytest.mark.parametrize("provider", TRANSLATED)
def test_stateful_parts_are_refused_by_name_for_translated_models(gateway, org, project, key_for, paid, provider):
    client = gateway.client(key_for(project))
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODELS[provider], input="Go on", previous_response_id="resp_123")
    assert refused.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as builtin:
        client.responses.create(model=MODELS[provider], input="News?", tools=[{"type": "web_search"}])
    assert builtin.value.body["param"] == "tools[0]"


def test_text_format_and_reasoning_are_translated(gateway, org, project, key_for, fake_upstream, paid):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    gateway.client(key_for(project)).responses.create(
        model="deepseek-chat", input="JSON please", reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}})
    sent = _generate_calls(fake_upstream)[-1].body
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    assert sent["reasoning_effort"] == "low"


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[1]"),
    ({"tools": [{"type": "image_generation"}]}, "tools[0]"),
    ({"service_tier": "priority"}, "service_tier"),
])
def test_what_openai_bills_beyond_the_gateways_prices_is_refused_by_name_even_for_openai(
        gateway, org, project, key_for, fake_upstream, paid, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client(key_for(project)).responses.create(model="gpt-4o-mini", input="News?", **extra)
    assert refused.value.body["param"] == param
    assert not _generate_calls(fake_upstream)


def test_a_json_format_for_claude_is_refused_rather_than_answered_in_free_text(gateway, org, project, key_for, paid):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client(key_for(project)).responses.create(
            model="claude-haiku-4-5", input="JSON", text={"format": {"type": "json_schema", "name": "a", "schema": schema}})
    assert refused.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError):
        gateway.client(key_for(project)).chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "JSON"}], response_format={"type": "json_object"})
