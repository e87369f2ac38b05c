"""The Anthropic wire format: OpenAI requests become Messages API requests, and Anthropic's
answers and stream events come back as OpenAI completions and chunks with real usage."""

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.tokens import Usage
from gateway.wire.anthropic import FORMAT
from gateway.wire.base import UpstreamFormatError

CALL = {"upstream_model": "claude-sonnet-4-20250514", "base_url": "https://api.anthropic.com", "token": "sk-ant-test"}
IDS = {"model": "anthropic/claude-sonnet-4", "completion_id": "chatcmpl-123", "created": 1700000000}
PNG = "iVBORw0KGgo="


def upstream_body(stream=False, **body) -> dict:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return orjson.loads(FORMAT.build_call(body=body, stream=stream, **CALL).body)


def weather_call(call_id="toolu_1", city="Paris") -> dict:
    arguments = orjson.dumps({"city": city}).decode()
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


# --- build_call ------------------------------------------------------------------------------


def test_the_call_goes_to_the_messages_endpoint_with_the_key_and_api_version():
    call = FORMAT.build_call(body={"messages": [{"role": "user", "content": "Hi"}]}, stream=False, **CALL)
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}
    assert upstream_body() == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_system_and_developer_messages_are_joined_into_the_top_level_system():
    body = upstream_body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert [m["role"] for m in body["messages"]] == ["user"]


@pytest.mark.parametrize(
    "url, source",
    [
        (f"data:image/png;base64,{PNG}", {"type": "base64", "media_type": "image/png", "data": PNG}),
        ("https://example.com/cat.jpg", {"type": "url", "url": "https://example.com/cat.jpg"}),
    ],
)
def test_image_parts_become_image_blocks_from_data_or_web_urls(url, source):
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    body = upstream_body(messages=[{"role": "user", "content": content}])
    assert body["messages"][0]["content"] == [{"type": "text", "text": "What is this?"}, {"type": "image", "source": source}]


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/a.png", "data:image/png,not-base64", "data:image/svg+xml;base64,PHN2Zz4=", "cat.png"],
)
def test_an_image_claude_cannot_read_is_a_400_naming_the_part_not_left_out(url):
    content = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": url}}]
    assert refusal(messages=[{"role": "user", "content": content}]).param == "messages[0].content[1]"


def test_an_image_jpg_media_type_is_sent_as_jpeg():
    content = [{"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}}]
    [block] = upstream_body(messages=[{"role": "user", "content": content}])["messages"][0]["content"]
    assert block["source"]["media_type"] == "image/jpeg"


def test_a_tool_round_becomes_tool_use_then_merged_tool_results_in_one_user_turn():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1"), weather_call("toolu_2", "Rome")]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "24°C"}]},
            {"role": "user", "content": "Thanks"},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24°C"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_assistant_text_comes_before_its_tool_calls_and_bad_arguments_become_an_empty_input():
    call = {"id": "toolu_9", "type": "function", "function": {"name": "lookup", "arguments": "{not json"}}
    body = upstream_body(messages=[{"role": "user", "content": "Go"}, {"role": "assistant", "content": "Looking.", "tool_calls": [call]},
                                   {"role": "tool", "tool_call_id": "toolu_9", "content": "none"}])
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {}},
    ]


def test_consecutive_messages_of_one_role_are_merged_and_empty_ones_dropped():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "One"},
            {"role": "user", "content": ""},
            {"role": "user", "content": "Two"},
        ]
    )
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]}]


@pytest.mark.parametrize(
    "request_fields, expected",
    [
        ({"max_completion_tokens": 50, "max_tokens": 10}, {"max_tokens": 50}),
        ({"max_tokens": 10}, {"max_tokens": 10}),
        ({}, {"max_tokens": 4096}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
        ({"temperature": 1.8}, {"temperature": 1}),
        ({"user": "user-42"}, {"metadata": {"user_id": "user-42"}}),
    ],
)
def test_sampling_limits_stop_and_user_fields_are_translated(request_fields, expected):
    body = upstream_body(**request_fields)
    assert {key: body[key] for key in expected} == expected


def test_streaming_is_asked_for_only_when_the_gateway_streams():
    assert upstream_body(stream=True)["stream"] is True
    assert "stream" not in upstream_body(stream=False)


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_function_tools_become_anthropic_tools_with_an_input_schema():
    assert upstream_body(tools=[TOOL, {"type": "function", "function": {"name": "now"}}])["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": TOOL["function"]["parameters"]},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    "tool_choice, expected",
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_is_translated(tool_choice, expected):
    assert upstream_body(tools=[TOOL], tool_choice=tool_choice)["tool_choice"] == expected


def test_parallel_tool_calls_off_disables_parallel_tool_use():
    assert upstream_body(tools=[TOOL], parallel_tool_calls=False)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_a_tool_choice_without_tools_is_not_sent():
    assert "tool_choice" not in upstream_body(tool_choice="auto")


# --- prompt caching: cache_control -----------------------------------------------------------
# Clients of Claude in the OpenAI format put Anthropic's cache_control on parts, messages and
# tools; each must reach the block it became, or Claude never caches the prompt.

CACHED = {"type": "ephemeral"}
CACHED_5M = {"type": "ephemeral", "ttl": "5m"}


def test_cache_control_on_a_text_part_reaches_its_text_block_with_only_type_and_ttl():
    content = [
        {"type": "text", "text": "<a long document>", "cache_control": {"type": "ephemeral", "ttl": "5m", "scope": "org"}},
        {"type": "text", "text": "Summarize it."},
    ]
    assert upstream_body(messages=[{"role": "user", "content": content}])["messages"][0]["content"] == [
        {"type": "text", "text": "<a long document>", "cache_control": CACHED_5M},
        {"type": "text", "text": "Summarize it."},
    ]


def test_cache_control_on_an_image_part_reaches_its_image_block():
    content = [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}, "cache_control": CACHED},
        {"type": "text", "text": "What is this?"},
    ]
    blocks = upstream_body(messages=[{"role": "user", "content": content}])["messages"][0]["content"]
    assert blocks[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}, "cache_control": CACHED}
    assert "cache_control" not in blocks[1]


def test_cache_control_on_a_string_message_marks_its_block_not_the_merged_turns_last():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "<a long document>", "cache_control": CACHED},
            {"role": "user", "content": "Summarize it."},
        ]
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<a long document>", "cache_control": CACHED},
                {"type": "text", "text": "Summarize it."},
            ],
        }
    ]


def test_cache_control_on_a_message_marks_the_last_block_it_became():
    content = [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    blocks = upstream_body(messages=[{"role": "user", "content": content, "cache_control": CACHED}])["messages"][0]["content"]
    assert [block.get("cache_control") for block in blocks] == [None, CACHED]


def test_a_parts_own_cache_control_stands_over_its_messages():
    content = [{"type": "text", "text": "<doc>", "cache_control": CACHED_5M}]
    body = upstream_body(messages=[{"role": "user", "content": content, "cache_control": CACHED}])
    assert body["messages"][0]["content"] == [{"type": "text", "text": "<doc>", "cache_control": CACHED_5M}]


def test_cache_control_on_an_assistant_tool_call_message_marks_its_last_tool_use_block():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [weather_call("toolu_1"), weather_call("toolu_2", "Rome")],
                "cache_control": CACHED,
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "24°C"},
        ]
    )
    assert [block.get("cache_control") for block in body["messages"][1]["content"]] == [None, None, CACHED]
    assert body["messages"][1]["content"][2]["id"] == "toolu_2"


@pytest.mark.parametrize(
    "tool_message",
    [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C", "cache_control": CACHED},
        {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": "18°C", "cache_control": CACHED}]},
    ],
)
def test_cache_control_on_a_tool_answer_or_its_part_marks_its_tool_result_block(tool_message):
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
            tool_message,
        ]
    )
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C", "cache_control": CACHED}]


def test_a_system_part_with_cache_control_cuts_the_system_into_blocks_that_read_as_the_same_text():
    messages = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "You analyse legal documents."},
                {"type": "text", "text": "<a 50-page agreement>", "cache_control": CACHED},
            ],
        },
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Key terms?"},
    ]
    system = upstream_body(messages=messages)["system"]
    assert system == [
        {"type": "text", "text": "You analyse legal documents.\n<a 50-page agreement>", "cache_control": CACHED},
        {"type": "text", "text": "\n\nAnswer in French."},
    ]
    # Claude reads the very text it would without the breakpoint.
    messages[0]["content"][1].pop("cache_control")
    assert "".join(block["text"] for block in system) == upstream_body(messages=messages)["system"]


def test_cache_control_on_system_and_developer_messages_marks_the_end_of_each():
    body = upstream_body(
        messages=[
            {"role": "system", "content": "Be brief.", "cache_control": CACHED_5M},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}], "cache_control": CACHED},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": CACHED_5M},
        {"type": "text", "text": "\n\nAnswer in French.", "cache_control": CACHED},
    ]


def test_without_cache_control_on_it_the_system_stays_one_string():
    body = upstream_body(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi", "cache_control": CACHED}],
        tools=[{**TOOL, "cache_control": CACHED}],
    )
    assert body["system"] == "Be brief."


def test_cache_control_on_a_tool_definition_reaches_the_anthropic_tool():
    tools = [TOOL, {"type": "function", "function": {"name": "now"}, "cache_control": CACHED_5M}]
    assert upstream_body(tools=tools)["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": TOOL["function"]["parameters"]},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}, "cache_control": CACHED_5M},
    ]


def test_a_null_cache_control_is_no_breakpoint():
    body = upstream_body(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": None}], "cache_control": None}])
    assert body["messages"][0]["content"] == [{"type": "text", "text": "Hi"}]


def refusal(**body) -> GatewayError:
    with pytest.raises(GatewayError) as refused:
        upstream_body(**body)
    assert (refused.value.status, refused.value.code) == (400, "invalid_request_error")
    assert refused.value.message.startswith(f"Invalid '{refused.value.param}': ")
    return refused.value


@pytest.mark.parametrize(
    "cache_control, param",
    [
        ("ephemeral", "messages[0].content[0].cache_control"),
        ({"type": "persistent"}, "messages[0].content[0].cache_control"),
        ({"ttl": "5m"}, "messages[0].content[0].cache_control"),
        ({"type": "ephemeral", "ttl": "24h"}, "messages[0].content[0].cache_control.ttl"),
        ({"type": "ephemeral", "ttl": "1h"}, "messages[0].content[0].cache_control.ttl"),  # not priced yet
        ({"type": "ephemeral", "ttl": 300}, "messages[0].content[0].cache_control.ttl"),
    ],
)
def test_a_cache_control_anthropic_would_refuse_is_a_400_naming_it(cache_control, param):
    content = [{"type": "text", "text": "Hi", "cache_control": cache_control}]
    assert refusal(messages=[{"role": "user", "content": content}]).param == param


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "Hi", "cache_control": True}]}, "messages[0].cache_control"),
        ({"messages": [{"role": "system", "content": "Be brief.", "cache_control": "yes"}, {"role": "user", "content": "Hi"}]},
         "messages[0].cache_control"),
        ({"messages": [{"role": "developer", "content": [{"type": "text", "text": "Be brief.", "cache_control": {}}]},
                       {"role": "user", "content": "Hi"}]}, "messages[0].content[0].cache_control"),
        ({"tools": [TOOL, {**TOOL, "cache_control": {"type": "ephemeral", "ttl": "1d"}}]}, "tools[1].cache_control.ttl"),
        # Refused even where the part itself would have been left out (an empty text).
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "", "cache_control": []}]}]}, "messages[0].content[0].cache_control"),
    ],
)
def test_a_bad_cache_control_is_refused_wherever_it_is(body, param):
    assert refusal(**body).param == param


def four_breakpoints() -> dict:
    """A tool, the system, a user part and an assistant message: Anthropic's limit, exactly."""
    return {
        "tools": [{**TOOL, "cache_control": CACHED}],
        "messages": [
            {"role": "system", "content": "Be brief.", "cache_control": CACHED},
            {"role": "user", "content": [{"type": "text", "text": "<doc>", "cache_control": CACHED}]},
            {"role": "assistant", "content": "Read it.", "cache_control": CACHED},
            {"role": "user", "content": "Summarize it."},
        ],
    }


def test_four_cache_breakpoints_are_sent():
    body = upstream_body(**four_breakpoints())
    marked = body["tools"] + body["system"] + [block for turn in body["messages"] for block in turn["content"]]
    assert sum("cache_control" in block for block in marked) == 4


def test_a_fifth_cache_breakpoint_is_a_400_naming_the_first_one_too_many_in_anthropics_order():
    request = four_breakpoints()
    # The fifth comes last in the request, but Anthropic reads tools, then system, then
    # messages: the first one past the limit is the last message breakpoint.
    request["messages"].append({"role": "developer", "content": "Be kind.", "cache_control": CACHED})
    refused = refusal(**request)
    assert refused.param == "messages[2].cache_control"
    assert "at most 4" in refused.message


# --- parse_response --------------------------------------------------------------------------


def anthropic_message(content, stop_reason="end_turn", usage=None) -> dict:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": content,
        "stop_reason": stop_reason,
        "usage": usage if usage is not None else {"input_tokens": 12, "output_tokens": 7},
    }


def test_a_text_answer_becomes_a_chat_completion_with_our_id_and_model():
    data = anthropic_message([{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}])
    completion, usage, reason = FORMAT.parse_response(data, **IDS)
    assert completion == {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "anthropic/claude-sonnet-4",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
    }
    assert (usage, reason) == (Usage(12, 7), "stop")


def test_tool_use_blocks_become_tool_calls_with_json_string_arguments():
    content = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    completion, _, reason = FORMAT.parse_response(anthropic_message(content, "tool_use"), **IDS)
    message = completion["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert reason == "tool_calls"


def test_an_answer_with_only_tool_calls_has_null_content():
    content = [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]
    completion, _, _ = FORMAT.parse_response(anthropic_message(content, "tool_use"), **IDS)
    assert completion["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    "stop_reason, finish_reason",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reasons_map_to_openai_finish_reasons(stop_reason, finish_reason):
    completion, _, reason = FORMAT.parse_response(anthropic_message([{"type": "text", "text": "x"}], stop_reason), **IDS)
    assert reason == completion["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(
    "anthropic_usage, expected",
    [
        ({"input_tokens": 10, "output_tokens": 5}, Usage(10, 5)),
        ({"input_tokens": 10, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 5}, Usage(1110, 5, cached_tokens=1000, cache_write_tokens=100)),
        ({"input_tokens": 10, "cache_creation_input_tokens": None, "output_tokens": 5}, Usage(10, 5)),
        ({"input_tokens": -3, "output_tokens": "many"}, Usage(0, 0)),
        ({}, Usage(0, 0)),
    ],
)
def test_usage_counts_cached_prompt_tokens_and_makes_bad_counts_safe(anthropic_usage, expected):
    _, usage, _ = FORMAT.parse_response(anthropic_message([{"type": "text", "text": "x"}], usage=anthropic_usage), **IDS)
    assert usage == expected


@pytest.mark.parametrize("data", [None, [], "text", {"type": "message"}, {"content": "Hello"}])
def test_an_answer_without_content_blocks_is_a_format_error(data):
    with pytest.raises(UpstreamFormatError):
        FORMAT.parse_response(data, **IDS)


def test_the_providers_error_message_is_read_from_its_error_shape():
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    assert FORMAT.error_message(400, error) == "max_tokens: too large"
    assert FORMAT.error_message(502, None) == "the provider answered HTTP 502"


# --- streaming -------------------------------------------------------------------------------


def event(kind: str, **fields) -> tuple[str, str]:
    return kind, orjson.dumps({"type": kind, **fields}).decode()


def message_start(input_tokens=25, **usage) -> tuple[str, str]:
    message = {"id": "msg_01", "type": "message", "role": "assistant", "content": [], "stop_reason": None}
    return event("message_start", message={**message, "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}})


TEXT_STREAM = [
    message_start(),
    event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    event("ping"),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "!"}),
    event("content_block_stop", index=0),
    event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 15}),
    event("message_stop"),
]

TOOL_STREAM = [
    message_start(),
    event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Let me check."}),
    event("content_block_stop", index=0),
    event("content_block_start", index=1, content_block={"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
    event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}),
    event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"city": '}),
    event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '"Paris"}'}),
    event("content_block_stop", index=1),
    event("content_block_start", index=2, content_block={"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}),
    event("content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": "{}"}),
    event("content_block_stop", index=2),
    event("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 40}),
    event("message_stop"),
]


def translate(events, include_usage=True):
    translator = FORMAT.stream_translator(include_usage=include_usage, **IDS)
    chunks = [chunk for kind, data in events for chunk in translator.feed(kind, data)]
    return translator, chunks, translator.finish()


def deltas(chunks) -> list[dict]:
    return [chunk["choices"][0]["delta"] for chunk in chunks]


def test_a_text_stream_opens_with_the_role_then_sends_each_text_delta_and_the_finish_reason():
    translator, chunks, _ = translate(TEXT_STREAM)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": "!"}, {}]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, "stop"]
    assert translator.state.finish_reason == "stop"
    assert translator.state.chunks == 4


def test_every_chunk_carries_our_id_model_and_creation_time():
    _, chunks, _ = translate(TEXT_STREAM)
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == (
            "chatcmpl-123",
            "chat.completion.chunk",
            1700000000,
            "anthropic/claude-sonnet-4",
        )


def test_a_tool_stream_sends_each_call_start_then_its_argument_pieces_by_openai_index():
    translator, chunks, _ = translate(TOOL_STREAM)
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "Let me check."},
        {"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == translator.state.finish_reason == "tool_calls"


def test_stream_usage_takes_input_from_message_start_and_output_from_message_delta():
    translator, _, _ = translate(TEXT_STREAM)
    assert translator.state.usage == Usage(25, 15)


def test_stream_usage_counts_cached_input_and_takes_cumulative_counts_from_message_delta():
    events = [
        message_start(input_tokens=5, cache_read_input_tokens=1000),
        event("message_delta", delta={"stop_reason": "end_turn"}, usage={"input_tokens": 6, "output_tokens": 3}),
    ]
    translator, _, _ = translate(events)
    assert translator.state.usage == Usage(1006, 3, cached_tokens=1000)


def test_with_include_usage_the_stream_ends_with_a_usage_chunk_without_choices():
    _, _, tail = translate(TEXT_STREAM, include_usage=True)
    assert tail == [
        {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "anthropic/claude-sonnet-4",
            "choices": [],
            "usage": {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
        }
    ]


def test_without_include_usage_the_stream_ends_with_nothing_more_but_usage_is_still_known():
    translator, _, tail = translate(TEXT_STREAM, include_usage=False)
    assert tail == []
    assert translator.state.usage == Usage(25, 15)


def test_negative_stream_counts_are_made_safe():
    events = [message_start(input_tokens=-10), event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": -2})]
    translator, _, _ = translate(events)
    assert translator.state.usage == Usage(0, 0)


def test_an_error_event_is_recorded_and_sends_nothing_and_no_finish_reason_is_made_up():
    events = TEXT_STREAM[:4] + [event("error", error={"type": "overloaded_error", "message": "Overloaded"})]
    translator, chunks, _ = translate(events)
    assert translator.state.error == "Overloaded"
    assert translator.state.finish_reason is None
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hello"}]


@pytest.mark.parametrize("data", ["not json", "{truncated", "[1, 2]", '"text"'])
def test_a_garbage_event_is_a_format_error(data):
    translator = FORMAT.stream_translator(include_usage=True, **IDS)
    with pytest.raises(UpstreamFormatError):
        translator.feed("content_block_delta", data)


def test_unknown_events_and_server_tool_blocks_are_ignored():
    events = [
        event("content_block_start", index=0, content_block={"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
        event("content_block_stop", index=0),
        event("something_new", data={}),
    ]
    _, chunks, _ = translate(events, include_usage=False)
    assert chunks == []


# --- 1. tool calls without argument deltas -------------------------------------------------------
# A tool without parameters streams no (or only empty) input_json_delta, and some hosts give the
# whole input in content_block_start: the client must still get JSON arguments, the same the
# whole answer would carry.


def assembled_calls(chunks) -> dict[int, dict]:
    """The tool calls a client assembles from the deltas, as the OpenAI SDKs do."""
    calls: dict[int, dict] = {}
    for delta in deltas(chunks):
        for piece in delta.get("tool_calls", []):
            call = calls.setdefault(piece["index"], {"id": None, "name": None, "arguments": ""})
            call["id"] = piece.get("id") or call["id"]
            call["name"] = piece.get("function", {}).get("name") or call["name"]
            call["arguments"] += piece.get("function", {}).get("arguments") or ""
    return calls


def tool_block_events(index, call_id, name, start_input, pieces):
    return [
        event("content_block_start", index=index, content_block={"type": "tool_use", "id": call_id, "name": name, "input": start_input}),
        *[event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": p}) for p in pieces],
        event("content_block_stop", index=index),
    ]


@pytest.mark.parametrize(
    "start_input, pieces, arguments",
    [
        ({}, [], "{}"),  # no deltas at all
        ({}, [""], "{}"),  # Anthropic's own: one empty partial_json
        ({"city": "Paris"}, [], '{"city":"Paris"}'),  # the whole input in content_block_start
        ({}, ['{"ci', 'ty": "Par', 'is"}'], '{"city": "Paris"}'),  # split mid-token: the deltas, untouched
    ],
)
def test_a_streamed_tool_call_always_reaches_the_client_with_json_arguments(start_input, pieces, arguments):
    events = [message_start(), *tool_block_events(0, "toolu_1", "now", start_input, pieces),
              event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9})]
    _, chunks, _ = translate(events)
    [call] = assembled_calls(chunks).values()
    assert call == {"id": "toolu_1", "name": "now", "arguments": arguments}
    orjson.loads(call["arguments"])
    # The same arguments as the whole answer gives.
    whole = anthropic_message([{"type": "tool_use", "id": "toolu_1", "name": "now", "input": orjson.loads(arguments)}], "tool_use")
    completion, _, _ = FORMAT.parse_response(whole, **IDS)
    assert orjson.loads(completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == orjson.loads(arguments)


def test_parallel_calls_without_parameters_each_get_their_arguments_before_the_finish_chunk():
    events = [message_start(), *tool_block_events(0, "toolu_1", "now", {}, [""]), *tool_block_events(1, "toolu_2", "today", {}, []),
              event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9})]
    _, chunks, _ = translate(events)
    assert {i: c["arguments"] for i, c in assembled_calls(chunks).items()} == {0: "{}", 1: "{}"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_block_that_never_stops_still_gets_its_arguments_before_the_finish():
    events = [message_start(), tool_block_events(0, "toolu_1", "now", {}, [])[0],
              event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9})]
    _, chunks, _ = translate(events)
    assert deltas(chunks)[-2] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_whole_answer_with_a_tool_use_without_input_has_empty_json_arguments():
    completion, _, _ = FORMAT.parse_response(anthropic_message([{"type": "tool_use", "id": "toolu_1", "name": "now"}], "tool_use"), **IDS)
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


# --- 2. content never dropped silently ----------------------------------------------------------

PDF = "JVBERi0xLjQK"
PDF_PART = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "terms.pdf"}}
PDF_BLOCK = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}, "title": "terms.pdf"}


def test_a_pdf_file_part_becomes_a_document_block_with_a_base64_source():
    content = [PDF_PART, {"type": "text", "text": "Summarize it."}]
    assert upstream_body(messages=[{"role": "user", "content": content}])["messages"][0]["content"] == [
        PDF_BLOCK, {"type": "text", "text": "Summarize it."}]


def test_a_plain_text_file_becomes_a_document_with_a_text_source():
    part = {"type": "file", "file": {"file_data": "data:text/plain;base64,SGVsbG8gd29ybGQ="}}
    [block] = upstream_body(messages=[{"role": "user", "content": [part]}])["messages"][0]["content"]
    assert block == {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Hello world"}}


def test_cache_control_on_a_file_part_reaches_its_document_block():
    content = [{**PDF_PART, "cache_control": CACHED}, {"type": "text", "text": "Summarize it."}]
    blocks = upstream_body(messages=[{"role": "user", "content": content}])["messages"][0]["content"]
    assert blocks[0] == {**PDF_BLOCK, "cache_control": CACHED}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"file_data": "JVBERi0xLjQK"}},  # not a data: URL
        {"type": "file", "file": {"file_data": "data:application/zip;base64,UEsDBA=="}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,//79"}},  # not UTF-8
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ],
    ids=["file_id", "not-a-data-url", "zip", "text-not-utf8", "audio"],
)
def test_a_part_claude_cannot_take_is_a_400_naming_it_in_user_and_tool_messages(part):
    content = [{"type": "text", "text": "Here."}, part]
    assert refusal(messages=[{"role": "user", "content": content}]).param == "messages[0].content[1]"
    tool_round = [
        {"role": "user", "content": "Fetch it."},
        {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": content},
    ]
    assert refusal(messages=tool_round).param == "messages[2].content[1]"


def test_audio_refusal_says_claude_takes_no_audio():
    part = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    assert "no audio" in refusal(messages=[{"role": "user", "content": [part]}]).message


def test_a_tool_answer_with_pictures_and_documents_sends_them_inside_its_tool_result():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Screenshot the page and fetch its PDF."},
            {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": [
                {"type": "text", "text": "Done:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                PDF_PART,
            ]},
        ]
    )
    assert body["messages"][2]["content"] == [{
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {"type": "text", "text": "Done:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            PDF_BLOCK,
        ],
    }]


def test_a_picture_in_a_system_message_is_a_400_not_left_out():
    messages = [{"role": "system", "content": [{"type": "text", "text": "Be brief."},
                                               {"type": "image_url", "image_url": {"url": "https://example.com/logo.png"}}]},
                {"role": "user", "content": "Hi"}]
    assert refusal(messages=messages).param == "messages[0].content[1]"


def test_a_picture_in_an_assistant_message_is_a_400():
    messages = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
                {"role": "user", "content": "And?"}]
    assert refusal(messages=messages).param == "messages[1].content[0]"


def test_legacy_function_messages_are_refused_not_left_out():
    messages = [{"role": "user", "content": "Hi"}, {"role": "function", "name": "now", "content": "noon"}]
    assert refusal(messages=messages).param == "messages[1].role"
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "function_call": {"name": "now", "arguments": "{}"}}]
    assert refusal(messages=messages).param == "messages[1].function_call"


# --- 3. provider rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["\n", ["END", " "], ["\n\n", "\t"]])
def test_whitespace_only_stop_sequences_are_a_400_naming_stop(stop):
    refused = refusal(stop=stop)
    assert refused.param == "stop" and "whitespace-only" in refused.message


def test_an_empty_stop_string_is_left_out_and_stops_with_visible_text_kept():
    assert upstream_body(stop=["", "\nEND"])["stop_sequences"] == ["\nEND"]
    assert "stop_sequences" not in upstream_body(stop="")


def test_whitespace_only_text_parts_and_messages_are_left_out():
    body = upstream_body(
        messages=[
            {"role": "system", "content": "  \n"},
            {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": " \n\t"}]},
            {"role": "assistant", "content": "   "},
            {"role": "user", "content": "Two"},
        ]
    )
    assert "system" not in body
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]}]


def test_a_final_assistant_prefill_loses_its_trailing_whitespace_and_earlier_ones_keep_it():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!  \n"},
            {"role": "user", "content": "A JSON list, please"},
            {"role": "assistant", "content": "Here it is: \n"},
        ]
    )
    assert body["messages"][1]["content"] == [{"type": "text", "text": "Hello!  \n"}]
    assert body["messages"][3]["content"] == [{"type": "text", "text": "Here it is:"}]


def test_a_tool_result_after_a_user_message_goes_first_in_the_user_turn():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1"), weather_call("toolu_2", "Rome")]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
            {"role": "user", "content": "Also, hurry."},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "24°C"},
        ]
    )
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24°C"},
            {"type": "text", "text": "Also, hurry."},
        ],
    }


def test_a_tool_result_sent_after_a_later_turn_is_moved_next_to_its_call():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
            {"role": "user", "content": "Still there?"},
            {"role": "assistant", "content": "Waiting for the tool."},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
            {"role": "user", "content": "So?"},
        ]
    )
    assert [turn["role"] for turn in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
        {"type": "text", "text": "Still there?"},
    ]


@pytest.mark.parametrize(
    "messages, param",
    [
        # The answer to a call nobody made.
        ([{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "toolu_9", "content": "?"}], "messages[1].tool_call_id"),
        # Answered twice.
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
          {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"}, {"role": "tool", "tool_call_id": "toolu_1", "content": "19°C"}],
         "messages[3].tool_call_id"),
        # A call left without its answer.
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1"), weather_call("toolu_2")]},
          {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"}], "messages[1].tool_calls[1]"),
        # Moved next to its call, the answer would leave the assistant's later message last.
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
          {"role": "user", "content": "?"}, {"role": "assistant", "content": "Waiting."},
          {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"}], "messages[4]"),
    ],
    ids=["unknown-call", "answered-twice", "unanswered", "answer-last-after-a-later-turn"],
)
def test_tool_results_anthropic_could_not_place_are_a_400_naming_the_message(messages, param):
    assert refusal(messages=messages).param == param


def test_a_whitespace_only_tool_answer_becomes_a_result_without_content():
    body = upstream_body(messages=[{"role": "user", "content": "Go"},
                                   {"role": "assistant", "content": None, "tool_calls": [weather_call("toolu_1")]},
                                   {"role": "tool", "tool_call_id": "toolu_1", "content": "  "}])
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1"}]


# --- 4. thinking blocks round-trip --------------------------------------------------------------

THINKING = {"type": "thinking", "thinking": "Paris is in France.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxB"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}
THINKING_DETAILS = [
    {"type": "anthropic.thinking", "thinking": "Paris is in France.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxB"},
    {"type": "anthropic.redacted_thinking", "data": REDACTED["data"]},
]


def test_an_answers_thinking_reaches_the_client_as_reasoning_and_reasoning_details():
    content = [THINKING, REDACTED, {"type": "text", "text": "Sunny."}]
    completion, usage, _ = FORMAT.parse_response(anthropic_message(content), **IDS)
    message = completion["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Sunny.", "reasoning": "Paris is in France.", "reasoning_details": THINKING_DETAILS}
    assert usage.reasoning_tokens == 0  # inside output_tokens; Anthropic does not count it apart


def test_an_answer_without_thinking_has_no_reasoning_fields():
    completion, _, _ = FORMAT.parse_response(anthropic_message([{"type": "text", "text": "Hi"}]), **IDS)
    assert set(completion["choices"][0]["message"]) == {"role", "content"}


def test_reasoning_details_go_back_first_in_their_assistant_turn():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "reasoning": "Paris is in France.", "reasoning_details": THINKING_DETAILS,
             "tool_calls": [weather_call("toolu_1")]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
        ],
        reasoning_effort="low",
    )
    assert body["messages"][1]["content"] == [
        THINKING,
        REDACTED,
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]


def test_other_providers_reasoning_details_are_not_sent_to_claude():
    details = [{"type": "reasoning.encrypted", "data": "gAAAA"}, THINKING_DETAILS[0]]
    body = upstream_body(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "reasoning_details": details},
                                   {"role": "user", "content": "Bye"}])
    assert body["messages"][1]["content"] == [THINKING, {"type": "text", "text": "Hello"}]


@pytest.mark.parametrize(
    "details, param",
    [
        ({"type": "anthropic.thinking"}, "messages[1].reasoning_details"),
        ([{"type": "anthropic.thinking", "thinking": "x"}], "messages[1].reasoning_details[0]"),
        ([{"type": "anthropic.redacted_thinking", "data": ""}], "messages[1].reasoning_details[0]"),
    ],
)
def test_anthropic_reasoning_details_without_their_signature_or_data_are_a_400(details, param):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "reasoning_details": details},
                {"role": "user", "content": "Bye"}]
    assert refusal(messages=messages).param == param


THINKING_STREAM = [
    message_start(),
    event("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
    event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Paris is "}),
    event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "in France."}),
    event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": THINKING["signature"]}),
    event("content_block_stop", index=0),
    event("content_block_start", index=1, content_block=REDACTED),
    event("content_block_stop", index=1),
    event("content_block_start", index=2, content_block={"type": "text", "text": ""}),
    event("content_block_delta", index=2, delta={"type": "text_delta", "text": "Sunny."}),
    event("content_block_stop", index=2),
    event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 30}),
]


def test_a_streams_thinking_goes_out_as_reasoning_deltas_then_its_signed_block():
    _, chunks, _ = translate(THINKING_STREAM)
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"reasoning": "Paris is "},
        {"reasoning": "in France."},
        {"reasoning_details": [THINKING_DETAILS[0]]},
        {"reasoning_details": [THINKING_DETAILS[1]]},
        {"content": "Sunny."},
        {},
    ]


def test_a_thinking_block_signed_in_its_start_is_sent_when_it_stops():
    events = [message_start(), event("content_block_start", index=0, content_block=THINKING), event("content_block_stop", index=0)]
    _, chunks, _ = translate(events)
    assert deltas(chunks)[1:] == [{"reasoning": "Paris is in France."}, {"reasoning_details": [THINKING_DETAILS[0]]}]


# --- 5, 6. nothing to send; n ------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Be brief."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ""}, {"role": "assistant", "content": " \n"}],
        [{"role": "user", "content": [{"type": "text", "text": "  "}]}],
    ],
)
def test_a_conversation_that_translates_to_nothing_is_a_400_naming_messages(messages):
    assert refusal(messages=messages).param == "messages"


def test_more_than_one_choice_is_a_400_naming_n():
    assert refusal(n=3).param == "n"
    assert "n" not in upstream_body(n=1)


# --- 7. reasoning_effort → extended thinking --------------------------------------------------


@pytest.mark.parametrize(
    "request_fields, max_tokens, budget",
    [
        ({"reasoning_effort": "minimal"}, 1024 + 4096, 1024),
        ({"reasoning_effort": "low"}, 2048 + 4096, 2048),
        ({"reasoning_effort": "medium"}, 8192 + 4096, 8192),
        ({"reasoning_effort": "high"}, 24576 + 4096, 24576),
        ({"reasoning_effort": "high", "max_tokens": 30000}, 30000, 24576),
        ({"reasoning_effort": "high", "max_tokens": 4000}, 4000, 3999),  # kept below max_tokens
        ({"reasoning_effort": "medium", "max_completion_tokens": 1025}, 1025, 1024),
    ],
)
def test_reasoning_effort_turns_on_thinking_with_a_budget_below_max_tokens(request_fields, max_tokens, budget):
    body = upstream_body(**request_fields)
    assert (body["max_tokens"], body["thinking"]) == (max_tokens, {"type": "enabled", "budget_tokens": budget})


def test_reasoning_effort_none_or_absent_leaves_thinking_off():
    assert "thinking" not in upstream_body(reasoning_effort="none")
    assert "thinking" not in upstream_body()


@pytest.mark.parametrize(
    "request_fields, param",
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "low", "max_tokens": 1024}, "max_tokens"),
        ({"reasoning_effort": "low", "max_completion_tokens": 500}, "max_completion_tokens"),
        ({"reasoning_effort": "low", "temperature": 0.2}, "temperature"),
        ({"reasoning_effort": "low", "top_k": 40}, "top_k"),
        ({"reasoning_effort": "low", "top_p": 0.5}, "top_p"),
        ({"reasoning_effort": "low", "tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
        ({"reasoning_effort": "low", "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
        ({"reasoning_effort": "low", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well,"}]},
         "messages[1]"),
    ],
)
def test_what_thinking_cannot_go_with_is_a_400_naming_the_parameter(request_fields, param):
    assert refusal(**request_fields).param == param


def test_what_thinking_can_go_with_is_sent():
    body = upstream_body(reasoning_effort="low", temperature=1, top_p=0.95, tools=[TOOL], tool_choice="auto")
    assert (body["temperature"], body["top_p"], body["tool_choice"]) == (1, 0.95, {"type": "auto"})


def test_top_k_goes_up_without_thinking():
    assert upstream_body(top_k=40)["top_k"] == 40


def test_a_tool_call_id_used_twice_is_a_400_naming_the_second_one():
    messages = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": None, "tool_calls": [weather_call("call_0")]},
        {"role": "tool", "tool_call_id": "call_0", "content": "one"},
        {"role": "assistant", "content": None, "tool_calls": [weather_call("call_0", "Rome")]},
        {"role": "tool", "tool_call_id": "call_0", "content": "two"},
    ]
    assert refusal(messages=messages).param == "messages[3].tool_calls[0].id"


def test_tool_calls_without_an_id_or_name_are_left_out_and_need_no_answer():
    calls = [{"id": ["odd"], "type": "function", "function": {"name": "x", "arguments": "{}"}},
             {"id": "toolu_2", "type": "function", "function": {"arguments": "{}"}}, weather_call("toolu_3")]
    body = upstream_body(messages=[{"role": "user", "content": "Go"}, {"role": "assistant", "content": "Ok", "tool_calls": calls},
                                   {"role": "tool", "tool_call_id": "toolu_3", "content": "18°C"}])
    assert [b.get("id") for b in body["messages"][1]["content"]] == [None, "toolu_3"]
