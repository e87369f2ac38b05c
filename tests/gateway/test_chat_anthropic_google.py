"""The gateway end to end through the official OpenAI SDK: Anthropic and Google AI Studio,
whose wire formats the gateway translates both ways (request out, answer and stream back)."""

import json
from dataclasses import dataclass
from decimal import Decimal

import pytest

from apikeys import services as key_services
from tests.gateway.conftest import eventually, gateway_key
from usage.models import UsageLog

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
USAGE = (123, 45)  # what the fake reports; every figure below follows from it


@dataclass(frozen=True)
class Vendor:
    provider: str  # the gateway's provider id, also the fake's first path segment
    model: str  # the gateway's model id
    upstream_model: str  # the id the provider knows it by
    token: str  # the organization's own key for the provider
    auth_header: str  # where the provider expects that key
    endpoint: str  # the path the non-streaming call goes to, after the provider segment
    stream_endpoint: str
    input_cost: str  # USD for USAGE at the catalog's prices
    output_cost: str


ANTHROPIC = Vendor(
    "anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022", "sk-own-anthropic-key", "x-api-key",
    "/v1/messages", "/v1/messages",
    input_cost="0.0000984",  # 123 × $0.80/M
    output_cost="0.00018",  # 45 × $4.00/M
)
GOOGLE = Vendor(
    "google-ai-studio", "gemini-2.5-flash", "gemini-2.5-flash", "own-google-ai-studio-key", "x-goog-api-key",
    "/v1beta/models/gemini-2.5-flash:generateContent", "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    input_cost="0.0000369",  # 123 × $0.30/M
    output_cost="0.0001125",  # 45 × $2.50/M
)


@pytest.fixture(params=[ANTHROPIC, GOOGLE], ids=["anthropic", "google"])
def vendor(request, org, fake_upstream):
    """One of the two vendors, with the organization's own key for it and the fake's usage set."""
    spec = request.param
    key_services.provider_key_create(organization=org, provider=spec.provider, token=spec.token, validate=False)
    fake_upstream.usage = USAGE
    return spec


def _logs(project):
    return list(UsageLog.objects.filter(project=project).order_by("created_at"))


def _rows_written(project, count: int) -> list[UsageLog]:
    """The usage rows, once the worker wrote `count` of them (a test must not end while the
    worker still writes: the database is emptied after each test)."""
    eventually(lambda: UsageLog.objects.filter(project=project).count() >= count, timeout=5)
    return _logs(project)


def _generate_calls(fake, vendor):
    return [c for c in fake.calls_for(vendor.provider) if c.endpoint == "generate"]


def _collect_tool_calls(chunks) -> dict[int, dict]:
    """The tool calls of a stream, assembled from their deltas as an SDK user does."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or delta.id
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return calls


# --- answers ---------------------------------------------------------------------------------


def test_a_completion_comes_back_in_openai_shape_with_the_providers_usage(gateway, project, vendor, key_for, fake_upstream):
    client = gateway.client(key_for(project))
    for model in (f"{vendor.provider}/{vendor.model}", vendor.model):  # pinned, then bare
        response = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Hi"}])
        completion = response.parse()

        assert completion.object == "chat.completion"
        assert completion.choices[0].message.role == "assistant"
        assert completion.choices[0].message.content == "Hello from the fake upstream."
        assert completion.choices[0].finish_reason == "stop"
        usage = completion.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (123, 45, 168)
        assert response.headers["x-gateway-provider"] == vendor.provider
        call = _generate_calls(fake_upstream, vendor)[-1]
        assert call.path == f"/{vendor.provider}{vendor.endpoint}"
        assert call.model == vendor.upstream_model
    assert len(_generate_calls(fake_upstream, vendor)) == 2
    logs = _rows_written(project, 2)
    assert [(log.used_provider, log.used_model, log.status_code) for log in logs] == [(vendor.provider, vendor.model, 200)] * 2


def test_a_stream_arrives_in_chunks_with_the_providers_usage(gateway, project, vendor, key_for, fake_upstream):
    client = gateway.client(key_for(project))
    chunks = list(client.chat.completions.create(
        model=f"{vendor.provider}/{vendor.model}", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    ))

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1  # really streamed, not one blob
    assert "".join(c.choices[0].delta.content for c in content_chunks) == "Hello from the fake upstream."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (123, 45)
    [call] = _generate_calls(fake_upstream, vendor)
    assert call.stream and call.path == f"/{vendor.provider}{vendor.stream_endpoint}"
    [log] = _rows_written(project, 1)
    assert log.streamed and log.time_to_first_token is not None
    assert (log.prompt_tokens, log.completion_tokens, log.finish_reason) == (123, 45, "stop")


# --- tools -----------------------------------------------------------------------------------


def test_a_tool_call_reaches_the_sdk_with_its_name_and_json_arguments(gateway, project, vendor, key_for, fake_upstream):
    client = gateway.client(key_for(project))
    completion = client.chat.completions.create(
        model=f"{vendor.provider}/{vendor.model}", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL], tool_choice="auto",
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [tool_call] = choice.message.tool_calls
    assert tool_call.type == "function" and tool_call.id
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    # the tool went up in the provider's own shape
    body = _generate_calls(fake_upstream, vendor)[0].body
    if vendor is ANTHROPIC:
        assert body["tools"] == [{
            "name": "get_weather", "description": "The weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }]
    else:
        [declaration] = body["tools"][0]["functionDeclarations"]
        assert declaration["name"] == "get_weather"
        # Gemini takes the schema as `parametersJsonSchema` (JSON Schema) or `parameters` (its OpenAPI subset)
        schema = declaration.get("parametersJsonSchema") or declaration.get("parameters")
        assert schema["properties"] == {"city": {"type": "string"}} and schema["required"] == ["city"]
    [log] = _rows_written(project, 1)
    assert (log.status_code, log.finish_reason) == (200, "tool_calls")


def test_a_streamed_tool_call_is_assembled_by_the_sdk_with_its_name_and_json_arguments(gateway, project, vendor, key_for):
    client = gateway.client(key_for(project))
    chunks = list(client.chat.completions.create(
        model=f"{vendor.provider}/{vendor.model}", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL], stream=True,
    ))

    calls = _collect_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    [log] = _rows_written(project, 1)
    assert (log.status_code, log.finish_reason, log.streamed) == (200, "tool_calls", True)


# --- translation of the request ----------------------------------------------------------------


def test_the_system_prompt_goes_where_the_provider_expects_it(gateway, project, vendor, key_for, fake_upstream):
    client = gateway.client(key_for(project))
    client.chat.completions.create(
        model=f"{vendor.provider}/{vendor.model}",
        messages=[{"role": "system", "content": "You answer in French."}, {"role": "user", "content": "Hello?"}],
    )

    body = _generate_calls(fake_upstream, vendor)[0].body
    if vendor is ANTHROPIC:
        assert body["system"] == "You answer in French."
        assert [m["role"] for m in body["messages"]] == ["user"]
        turns = body["messages"]
    else:
        assert body["systemInstruction"] == {"parts": [{"text": "You answer in French."}]}
        assert [c["role"] for c in body["contents"]] == ["user"]
        turns = body["contents"]
    assert "You answer in French." not in json.dumps(turns)
    assert "Hello?" in json.dumps(turns)
    assert [log.status_code for log in _rows_written(project, 1)] == [200]


def test_the_organizations_own_key_reaches_the_provider_in_its_header_and_nothing_else_does(gateway, project, vendor, key_for, fake_upstream):
    token = key_for(project)
    gateway.client(token).chat.completions.create(
        model=f"{vendor.provider}/{vendor.model}", messages=[{"role": "user", "content": "Hi"}]
    )

    headers = _generate_calls(fake_upstream, vendor)[0].headers
    assert headers[vendor.auth_header] == vendor.token
    assert "authorization" not in headers  # neither the gateway API key nor a bearer token goes up
    assert not any(token in value or gateway_key(vendor.provider) in value for value in headers.values())
    if vendor is ANTHROPIC:
        assert headers["anthropic-version"]
    [log] = _rows_written(project, 1)
    assert (log.used_mode, log.fee) == ("api-keys", 0)  # the organization's key: no credits, no fee


# --- usage log -------------------------------------------------------------------------------


def test_each_request_leaves_one_usage_log_row_with_provider_model_tokens_and_cost(gateway, project, vendor, key_for):
    client = gateway.client(key_for(project))
    plain = client.chat.completions.with_raw_response.create(
        model=vendor.model, messages=[{"role": "user", "content": "Hi"}]
    )
    list(client.chat.completions.create(
        model=f"{vendor.provider}/{vendor.model}", messages=[{"role": "user", "content": "Hi"}], stream=True,
    ))

    logs = _rows_written(project, 2)
    assert len(logs) == 2
    assert logs[0].request_id == plain.headers["x-request-id"]
    assert [(log.requested_model, log.streamed) for log in logs] == [
        (vendor.model, False), (f"{vendor.provider}/{vendor.model}", True),
    ]
    expected_cost = Decimal(vendor.input_cost) + Decimal(vendor.output_cost)
    for log in logs:
        assert (log.used_provider, log.used_model, log.used_mode) == (vendor.provider, vendor.model, "api-keys")
        assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (123, 45, 168)
        assert (log.status_code, log.has_error, log.finish_reason) == (200, False, "stop")
        assert log.input_cost == Decimal(vendor.input_cost) and log.output_cost == Decimal(vendor.output_cost)
        assert log.fee == 0 and log.cost == expected_cost
