"""OpenAI's Agents SDK (openai-agents) running an agent with one function tool through the live
gateway's /v1/responses: `OpenAIResponsesModel` on an `AsyncOpenAI` client pointed at the
gateway, `Runner.run` and `Runner.run_streamed`, for an OpenAI model (sent to the fake's own
/responses as written) and for models reached through chat completions (Claude, Gemini).

The agent loop: by default the fake upstream answers a function call whenever the request has
tools (tests/fake_upstream.py, `tool_name`), even once the call's output is in the request. So
an agent that asks the model again after each tool call (the SDK's default) runs the tool once
per turn until `max_turns`, then the SDK raises MaxTurnsExceeded; with the fake's
`answer_tool_results` it answers in text once it has the tool's output, and the loop ends as
with a real model. An agent with `tool_use_behavior="stop_on_first_tool"` ends on the tool's
output after one model call.
Both are checked, with the tool's arguments (the fake's TOOL_ARGUMENTS), every model call's
request (the previous tool output in it) and one usage row per model call (endpoint
"responses", all of them 200)."""

import asyncio
import json
from typing import Any

import pytest
from agents import (
    Agent,
    MaxTurnsExceeded,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from tests.fake_upstream import TOOL_ARGUMENTS
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google-ai-studio": "gemini-2.0-flash"}
MAX_TURNS = 3


@pytest.fixture(autouse=True, scope="module")
def _no_tracing():
    """The SDK would export traces to OpenAI: no network here."""
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


class Weather:
    """The agent's one tool, recording each call's arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

        @function_tool
        def get_weather(city: str) -> str:
            """The weather in a city.

            Args:
                city: The city's name.
            """
            self.calls.append({"city": city})
            return f"Sunny in {city}"

        self.tool = get_weather


def agent_for(gateway, key: str, model: str, weather: Weather, **kwargs: Any) -> Agent:
    client = gateway.async_client(key)
    return Agent(name="Forecaster", instructions="Answer with the weather tool.", tools=[weather.tool],
                 model=OpenAIResponsesModel(model=model, openai_client=client), **kwargs)


def model_calls(fake) -> list:
    return [c for c in fake.calls if c.endpoint in ("generate", "responses")]


def rows(project, n: int) -> list[UsageLog]:
    eventually(lambda: UsageLog.objects.filter(project=project).count() >= n)
    found = list(UsageLog.objects.filter(project=project).order_by("created_at"))
    assert len(found) == n, [(r.endpoint, r.status_code, r.error_message) for r in found]
    return found


def tool_outputs_sent(call, provider: str) -> list[str]:
    """The tool outputs a model call's request carried to the provider, in its own format."""
    body = call.body
    if provider == "openai":  # the Responses request as the SDK wrote it
        return [item["output"] for item in body["input"] if item.get("type") == "function_call_output"]
    if provider == "anthropic":
        return [block["content"] if isinstance(block["content"], str) else block["content"][0]["text"]
                for message in body["messages"] if isinstance(message["content"], list)
                for block in message["content"] if block.get("type") == "tool_result"]
    return [part["functionResponse"]["response"].get("content", part["functionResponse"]["response"])
            for content in body["contents"] for part in content.get("parts", []) if "functionResponse" in part]


def check_served(project, fake, provider: str, n: int, *, streamed: bool) -> None:
    """`n` model calls, each one request to the provider and one usage row, none failed; each
    request after the first carried the tool outputs so far."""
    calls = model_calls(fake)
    assert [(c.provider if c.provider != "google" else "google-ai-studio") for c in calls] == [provider] * n
    assert all(c.status == 200 for c in calls), [c.status for c in calls]
    assert all(c.endpoint == ("responses" if provider == "openai" else "generate") for c in calls)
    for i, call in enumerate(calls):
        assert [str(o) for o in tool_outputs_sent(call, provider)] == ["Sunny in Paris"] * i, (i, call.body)
    logged = rows(project, n)
    assert [(r.endpoint, r.status_code, r.used_provider, r.streamed) for r in logged] == [
        ("responses", 200, provider, streamed)] * n
    assert all(r.cost > 0 and not r.has_error for r in logged)


# --- the default loop: the model is asked again after each tool call ----------------------------------


@pytest.mark.parametrize("provider", MODELS)
def test_run_calls_the_tool_every_turn_until_max_turns(gateway, org, project, key_for, fake_upstream, paid, provider):
    weather = Weather()
    agent = agent_for(gateway, key_for(project), MODELS[provider], weather)
    with pytest.raises(MaxTurnsExceeded):
        asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=MAX_TURNS))
    assert weather.calls == [TOOL_ARGUMENTS] * MAX_TURNS
    check_served(project, fake_upstream, provider, MAX_TURNS, streamed=False)


@pytest.mark.parametrize("provider", MODELS)
def test_run_streamed_calls_the_tool_every_turn_until_max_turns(gateway, org, project, key_for, fake_upstream, paid,
                                                                 provider):
    weather = Weather()
    agent = agent_for(gateway, key_for(project), MODELS[provider], weather)
    kinds: list[str] = []

    async def run() -> None:
        result = Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=MAX_TURNS)
        async for event in result.stream_events():
            if event.type == "run_item_stream_event":
                kinds.append(event.item.type)

    with pytest.raises(MaxTurnsExceeded):
        asyncio.run(run())
    assert weather.calls == [TOOL_ARGUMENTS] * MAX_TURNS
    assert kinds == ["tool_call_item", "tool_call_output_item"] * MAX_TURNS
    check_served(project, fake_upstream, provider, MAX_TURNS, streamed=True)


# --- an agent that ends on its tool's output --------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("provider", MODELS)
def test_an_agent_that_stops_on_its_first_tool_ends_with_the_tools_output(gateway, org, project, key_for, fake_upstream,
                                                                          paid, provider, streamed):
    weather = Weather()
    agent = agent_for(gateway, key_for(project), MODELS[provider], weather, tool_use_behavior="stop_on_first_tool")

    async def run() -> Any:
        if not streamed:
            return await Runner.run(agent, "What is the weather in Paris?", max_turns=MAX_TURNS)
        result = Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=MAX_TURNS)
        async for _ in result.stream_events():
            pass
        return result

    result = asyncio.run(run())
    assert result.final_output == "Sunny in Paris"
    assert weather.calls == [TOOL_ARGUMENTS]
    [call_item] = [item for item in result.new_items if item.type == "tool_call_item"]
    assert call_item.raw_item.name == "get_weather" and json.loads(call_item.raw_item.arguments) == TOOL_ARGUMENTS
    [response] = result.raw_responses
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 5)  # the fake's usage
    check_served(project, fake_upstream, provider, 1, streamed=streamed)


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("provider", MODELS)
def test_the_agent_loop_calls_the_tool_then_ends_on_the_models_answer(gateway, org, project, key_for, fake_upstream,
                                                                      paid, provider, streamed):
    """The usual agent: the model calls the tool, gets its output back, and answers in text."""
    fake_upstream.answer_tool_results = True
    fake_upstream.reply = "It is sunny in Paris."
    weather = Weather()
    agent = agent_for(gateway, key_for(project), MODELS[provider], weather)

    async def run() -> Any:
        if not streamed:
            return await Runner.run(agent, "What is the weather in Paris?", max_turns=MAX_TURNS)
        result = Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=MAX_TURNS)
        async for _ in result.stream_events():
            pass
        return result

    result = asyncio.run(run())
    assert result.final_output == "It is sunny in Paris."
    assert weather.calls == [TOOL_ARGUMENTS]
    assert [item.type for item in result.new_items] == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    check_served(project, fake_upstream, provider, 2, streamed=streamed)
