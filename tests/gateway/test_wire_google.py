"""The Google AI Studio wire format: OpenAI requests become generateContent requests, and
Gemini's answers and stream events come back as OpenAI completions and chunks with real usage."""

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.tokens import Usage
from gateway.wire.base import UpstreamFormatError
from gateway.wire.google import FORMAT

CALL = {"upstream_model": "gemini-2.5-flash", "base_url": "https://generativelanguage.googleapis.com", "token": "AIza-test"}
IDS = {"model": "google-ai-studio/gemini-2.5-flash", "completion_id": "chatcmpl-456", "created": 1700000000}
PNG = "iVBORw0KGgo="


def upstream_body(stream=False, **body) -> dict:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return orjson.loads(FORMAT.build_call(body=body, stream=stream, **CALL).body)


def weather_call(call_id="call_1", city="Paris") -> dict:
    arguments = orjson.dumps({"city": city}).decode()
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


# --- build_call ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream, url",
    [
        (False, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"),
        (True, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
    ],
)
def test_the_call_goes_to_generate_content_or_its_sse_stream_with_the_key(stream, url):
    call = FORMAT.build_call(body={"messages": [{"role": "user", "content": "Hi"}]}, stream=stream, **CALL)
    assert call.url == url
    assert call.headers == {"x-goog-api-key": "AIza-test", "content-type": "application/json"}
    assert orjson.loads(call.body) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_system_messages_become_the_system_instruction_and_the_assistant_is_the_model():
    body = upstream_body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
        ]
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nAnswer in French."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}, {"role": "model", "parts": [{"text": "Salut"}]}]


@pytest.mark.parametrize(
    "url, part",
    [
        (f"data:image/png;base64,{PNG}", {"inlineData": {"mimeType": "image/png", "data": PNG}}),
        ("https://example.com/cat.jpg", {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}}),
        (
            "https://generativelanguage.googleapis.com/v1beta/files/abc",
            {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
        ),
    ],
)
def test_image_parts_become_inline_data_or_file_data(url, part):
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    body = upstream_body(messages=[{"role": "user", "content": content}])
    assert body["contents"][0]["parts"] == [{"text": "What is this?"}, part]


def test_a_tool_round_becomes_function_calls_then_merged_function_responses_named_after_the_calls():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [weather_call("call_1"), weather_call("call_2", "Rome")]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "24°C and sunny"},
        ]
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"content": {"celsius": 18}}}},
                {"functionResponse": {"name": "get_weather", "response": {"content": "24°C and sunny"}}},
            ],
        },
    ]


def test_a_tool_answer_is_named_after_the_latest_call_with_its_id():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Go"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "first", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "one"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "second", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "two"},
        ]
    )
    names = [part["functionResponse"]["name"] for content in body["contents"] for part in content["parts"] if "functionResponse" in part]
    assert names == ["first", "second"]


def test_consecutive_messages_of_one_role_are_merged_and_empty_ones_dropped():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "One"},
            {"role": "user", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "Two"}]},
        ]
    )
    assert body["contents"] == [{"role": "user", "parts": [{"text": "One"}, {"text": "Two"}]}]


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": False}


@pytest.mark.parametrize(
    "request_fields, config",
    [
        ({"temperature": 0.2, "top_p": 0.9, "seed": 7}, {"temperature": 0.2, "topP": 0.9, "seed": 7}),
        ({"max_completion_tokens": 50, "max_tokens": 10}, {"maxOutputTokens": 50}),
        ({"max_tokens": 10}, {"maxOutputTokens": 10}),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stopSequences": ["a", "b"]}),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": SCHEMA}}},
            {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA},
        ),
        ({"response_format": {"type": "text"}}, None),
    ],
)
def test_generation_settings_are_translated(request_fields, config):
    assert upstream_body(**request_fields).get("generationConfig") == config


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False},
    },
}


def test_function_tools_become_function_declarations_with_their_json_schema():
    assert upstream_body(tools=[TOOL, {"type": "function", "function": {"name": "now"}}])["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "Weather for a city", "parametersJsonSchema": TOOL["function"]["parameters"]},
                {"name": "now", "description": ""},
            ]
        }
    ]


@pytest.mark.parametrize(
    "tool_choice, calling",
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice_becomes_a_function_calling_mode(tool_choice, calling):
    assert upstream_body(tools=[TOOL], tool_choice=tool_choice)["toolConfig"] == {"functionCallingConfig": calling}


def test_no_tool_config_is_sent_without_tools():
    assert "toolConfig" not in upstream_body(tool_choice="required")


# --- parse_response --------------------------------------------------------------------------


def gemini_answer(parts, finish="STOP", usage=None) -> dict:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage if usage is not None else {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13},
        "modelVersion": "gemini-2.5-flash",
    }


def test_a_text_answer_becomes_a_chat_completion_with_our_id_and_model():
    completion, usage, reason = FORMAT.parse_response(gemini_answer([{"text": "Hello"}, {"text": " there"}]), **IDS)
    assert completion == {
        "id": "chatcmpl-456",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "google-ai-studio/gemini-2.5-flash",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
    }
    assert (usage, reason) == (Usage(9, 4), "stop")


def test_thought_parts_stay_out_of_the_answer():
    completion, _, _ = FORMAT.parse_response(gemini_answer([{"text": "Thinking...", "thought": True}, {"text": "42"}]), **IDS)
    assert completion["choices"][0]["message"]["content"] == "42"


def test_function_calls_become_tool_calls_with_unique_ids_and_json_string_arguments():
    parts = [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]
    completion, _, reason = FORMAT.parse_response(gemini_answer(parts), **IDS)
    message = completion["choices"][0]["message"]
    assert message["content"] is None
    assert [call["function"] for call in message["tool_calls"]] == [
        {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"name": "get_weather", "arguments": '{"city":"Rome"}'},
    ]
    ids = [call["id"] for call in message["tool_calls"]]
    assert all(call_id.startswith("call_") for call_id in ids) and len(set(ids)) == 2
    assert {call["type"] for call in message["tool_calls"]} == {"function"}
    assert reason == "tool_calls"


@pytest.mark.parametrize(
    "finish, finish_reason",
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons_map_to_openai_finish_reasons(finish, finish_reason):
    completion, _, reason = FORMAT.parse_response(gemini_answer([{"text": "x"}], finish), **IDS)
    assert reason == completion["choices"][0]["finish_reason"] == finish_reason


def test_a_candidate_stopped_for_safety_without_content_has_null_content():
    data = {"candidates": [{"finishReason": "SAFETY", "safetyRatings": []}], "usageMetadata": {"promptTokenCount": 5}}
    completion, usage, reason = FORMAT.parse_response(data, **IDS)
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": None}
    assert (usage, reason) == (Usage(5, 0), "content_filter")


def test_a_blocked_prompt_without_candidates_is_a_content_filtered_completion():
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    completion, usage, reason = FORMAT.parse_response(data, **IDS)
    assert completion["object"] == "chat.completion"
    assert completion["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter", "logprobs": None}
    ]
    assert (usage, reason) == (Usage(8, 0), "content_filter")


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"promptTokenCount": 10, "candidatesTokenCount": 5}, Usage(10, 5)),
        ({"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 30}, Usage(10, 35, reasoning_tokens=30)),
        ({"promptTokenCount": -4, "candidatesTokenCount": None}, Usage(0, 0)),
        ({}, Usage(0, 0)),
    ],
)
def test_usage_counts_thoughts_as_completion_and_makes_bad_counts_safe(metadata, expected):
    _, usage, _ = FORMAT.parse_response(gemini_answer([{"text": "x"}], usage=metadata), **IDS)
    assert usage == expected


@pytest.mark.parametrize("data", [None, [], "text", {}, {"candidates": "none"}, {"usageMetadata": {"promptTokenCount": 1}}])
def test_an_answer_without_candidates_or_prompt_feedback_is_a_format_error(data):
    with pytest.raises(UpstreamFormatError):
        FORMAT.parse_response(data, **IDS)


@pytest.mark.parametrize(
    "data",
    [
        {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}},
        [{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}],
    ],
)
def test_the_providers_error_message_is_read_from_its_error_shape(data):
    assert FORMAT.error_message(400, data) == "API key not valid."


# --- streaming -------------------------------------------------------------------------------


def sse(parts=None, finish=None, usage=None, **extra) -> tuple[str, str]:
    candidate = {"content": {"role": "model", "parts": parts or []}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    payload = {"candidates": [candidate], **extra}
    if usage:
        payload["usageMetadata"] = usage
    return "", orjson.dumps(payload).decode()


TEXT_STREAM = [
    sse([{"text": "Hel"}], usage={"promptTokenCount": 9, "totalTokenCount": 9}),
    sse([{"text": "lo"}], usage={"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11}),
    sse([{"text": "!"}], finish="STOP", usage={"promptTokenCount": 9, "candidatesTokenCount": 3, "thoughtsTokenCount": 4}),
]

TOOL_STREAM = [
    sse([{"text": "Checking."}]),
    sse([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}, {"functionCall": {"name": "now", "args": {}}}]),
    sse([{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]),
    sse([{"text": ""}], finish="STOP", usage={"promptTokenCount": 20, "candidatesTokenCount": 12}),
]


def translate(events, include_usage=True):
    translator = FORMAT.stream_translator(include_usage=include_usage, **IDS)
    chunks = [chunk for kind, data in events for chunk in translator.feed(kind, data)]
    return translator, chunks, translator.finish()


def deltas(chunks) -> list[dict]:
    return [chunk["choices"][0]["delta"] for chunk in chunks]


def test_a_text_stream_opens_with_the_role_then_sends_each_text_and_the_finish_reason():
    translator, chunks, _ = translate(TEXT_STREAM)
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {"content": "!"}, {}]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, None, "stop"]
    assert translator.state.finish_reason == "stop"
    assert translator.state.chunks == 5


def test_every_chunk_carries_our_id_model_and_creation_time():
    _, chunks, _ = translate(TEXT_STREAM)
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == (
            "chatcmpl-456",
            "chat.completion.chunk",
            1700000000,
            "google-ai-studio/gemini-2.5-flash",
        )


def test_a_tool_stream_numbers_calls_across_events_and_finishes_with_tool_calls():
    translator, chunks, _ = translate(TOOL_STREAM)
    assert deltas(chunks)[:2] == [{"role": "assistant", "content": ""}, {"content": "Checking."}]
    calls = [call for delta in deltas(chunks) for call in delta.get("tool_calls", [])]
    assert [(call["index"], call["function"]["name"], call["function"]["arguments"]) for call in calls] == [
        (0, "get_weather", '{"city":"Paris"}'),
        (1, "now", "{}"),
        (2, "get_weather", '{"city":"Rome"}'),
    ]
    assert all(call["id"].startswith("call_") and call["type"] == "function" for call in calls)
    assert len({call["id"] for call in calls}) == 3
    assert chunks[-1]["choices"][0]["finish_reason"] == translator.state.finish_reason == "tool_calls"


def test_stream_usage_is_the_last_reported_with_thoughts_counted_as_completion():
    translator, _, _ = translate(TEXT_STREAM)
    assert translator.state.usage == Usage(9, 7, reasoning_tokens=4)


def test_with_include_usage_the_stream_ends_with_a_usage_chunk_without_choices():
    _, _, tail = translate(TEXT_STREAM, include_usage=True)
    assert tail == [
        {
            "id": "chatcmpl-456",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "google-ai-studio/gemini-2.5-flash",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 4}},
        }
    ]


def test_without_include_usage_the_stream_ends_with_nothing_more_but_usage_is_still_known():
    translator, _, tail = translate(TEXT_STREAM, include_usage=False)
    assert tail == []
    assert translator.state.usage == Usage(9, 7, reasoning_tokens=4)


def test_a_stream_cut_by_the_safety_filter_finishes_with_content_filter():
    translator, chunks, _ = translate([sse([{"text": "Once"}]), sse(finish="SAFETY")])
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Once"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == translator.state.finish_reason == "content_filter"


def test_a_blocked_prompt_in_a_stream_finishes_with_content_filter():
    blocked = orjson.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 6}}).decode()
    translator, chunks, _ = translate([("", blocked)])
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {}]
    assert translator.state.finish_reason == "content_filter"
    assert translator.state.usage == Usage(6, 0)


def test_an_error_event_is_recorded_and_sends_nothing_and_no_finish_reason_is_made_up():
    error = orjson.dumps({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}).decode()
    translator, chunks, _ = translate([TEXT_STREAM[0], ("", error)])
    assert translator.state.error == "The model is overloaded."
    assert translator.state.finish_reason is None
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hel"}]


@pytest.mark.parametrize("data", ["not json", "{truncated", "[1, 2]", "42"])
def test_a_garbage_event_is_a_format_error(data):
    translator = FORMAT.stream_translator(include_usage=True, **IDS)
    with pytest.raises(UpstreamFormatError):
        translator.feed("", data)


# --- content is never dropped silently -----------------------------------------------------------

GEMINI_3 = {**CALL, "upstream_model": "gemini-3-flash-preview"}
PDF = "JVBERi0xLjcK"
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEA"


def upstream_body_for(call: dict, **body) -> dict:
    return orjson.loads(FORMAT.build_call(body=body, stream=False, **call).body)


def refusal(call=CALL, **body) -> GatewayError:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    with pytest.raises(GatewayError) as refused:
        FORMAT.build_call(body=body, stream=False, **call)
    assert refused.value.status == 400 and refused.value.code == "invalid_request_error"
    assert refused.value.message.startswith(f"Invalid '{refused.value.param}': ")
    return refused.value


def user_parts(*content) -> list[dict]:
    return upstream_body(messages=[{"role": "user", "content": list(content)}])["contents"][0]["parts"]


@pytest.mark.parametrize(
    "part, translated",
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/a/chart.PNG?v=2"}},
         {"fileData": {"fileUri": "https://example.com/a/chart.PNG?v=2", "mimeType": "image/png"}}),
        ({"type": "image_url", "image_url": "https://example.com/photo.webp"},
         {"fileData": {"fileUri": "https://example.com/photo.webp", "mimeType": "image/webp"}}),
        ({"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"}},
         {"inlineData": {"mimeType": "application/pdf", "data": PDF}}),
        ({"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}}, {"inlineData": {"mimeType": "application/pdf", "data": PDF}}),
        ({"type": "file", "file": {"file_data": PDF}}, {"inlineData": {"mimeType": "application/pdf", "data": PDF}}),
        ({"type": "file", "file": {"file_data": "aGk=", "filename": "notes.txt"}}, {"inlineData": {"mimeType": "text/plain", "data": "aGk="}}),
        ({"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}, {"inlineData": {"mimeType": "audio/wav", "data": WAV}}),
        ({"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}}, {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}}),
    ],
)
def test_pictures_documents_and_audio_become_gemini_parts(part, translated):
    assert user_parts({"type": "text", "text": "Look"}, part) == [{"text": "Look"}, translated]


@pytest.mark.parametrize(
    "part, says",
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/render?id=7"}}, "MIME type"),
        ({"type": "image_url", "image_url": {"url": "https://example.com/anim.gif"}}, "MIME type"),
        ({"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}, "base64"),
        ({"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}, "https URL"),
        ({"type": "file", "file": {"file_id": "file-abc123"}}, "file_id"),
        ({"type": "file", "file": {"file_data": "data:application/pdf,%25PDF"}}, "base64"),
        ({"type": "file", "file": {"file_data": "AAAA", "filename": "sheet.xlsx"}}, "extension"),
        ({"type": "file", "file": {}}, "file_data"),
        ({"type": "input_audio", "input_audio": {"data": WAV, "format": "m4a"}}, "format"),
        ({"type": "input_audio", "input_audio": {"format": "wav"}}, "data"),
    ],
)
def test_a_part_gemini_cannot_be_given_is_refused_by_name(part, says):
    error = refusal(messages=[
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "See"}, part]},
    ])
    assert error.param == "messages[2].content[1]"
    assert says in error.message


def test_a_picture_in_a_system_message_is_refused_by_name():
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    error = refusal(messages=[{"role": "system", "content": [{"type": "text", "text": "Be brief."}, image]}, {"role": "user", "content": "Hi"}])
    assert error.param == "messages[0].content[1]"


PICTURE_RESULT = [
    {"role": "user", "content": "What is on the screen?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_s", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_s", "content": [
        {"type": "text", "text": "Captured."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]},
]


def test_a_tool_result_with_a_picture_sends_it_beside_the_function_response_before_gemini_3():
    body = upstream_body(messages=PICTURE_RESULT)
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "screenshot", "response": {"content": "Captured."}}},
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
        ],
    }


def test_a_tool_result_with_a_picture_nests_it_in_the_function_response_on_gemini_3():
    result = {**PICTURE_RESULT[2], "content": [*PICTURE_RESULT[2]["content"], {"type": "image_url", "image_url": {"url": "https://example.com/full.jpg"}}]}
    body = upstream_body_for(GEMINI_3, messages=[*PICTURE_RESULT[:2], result])
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "screenshot", "response": {"content": "Captured."},
                                  "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}},
            # fileData has no place in a functionResponse on the Gemini API: it follows it
            {"fileData": {"fileUri": "https://example.com/full.jpg", "mimeType": "image/jpeg"}},
        ],
    }


def test_a_refused_part_of_a_tool_result_is_named():
    result = {**PICTURE_RESULT[2], "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
    assert refusal(messages=[*PICTURE_RESULT[:2], result]).param == "messages[2].content[0]"


# --- Gemini's rules for a conversation --------------------------------------------------------------


def test_blank_texts_and_turns_left_empty_are_dropped():
    body = upstream_body(
        messages=[
            {"role": "system", "content": "  \n"},
            {"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "One"}, {"type": "text", "text": ""}]},
            {"role": "assistant", "content": "   "},
            {"role": "assistant", "content": [{"type": "text", "text": "\n"}]},
            {"role": "user", "content": "Two "},
        ]
    )
    assert "systemInstruction" not in body
    assert body["contents"] == [{"role": "user", "parts": [{"text": "One"}, {"text": "Two "}]}]


def test_a_tool_result_is_moved_to_the_user_turn_right_after_its_call():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [weather_call("call_1")]},
            {"role": "user", "content": "Quickly please."},
            {"role": "assistant", "content": "Sure."},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 18}'},
            {"role": "user", "content": "Well?"},
        ]
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"text": "Let me check."}, {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": {"celsius": 18}}}}, {"text": "Quickly please."}]},
        {"role": "model", "parts": [{"text": "Sure."}]},
        {"role": "user", "parts": [{"text": "Well?"}]},
    ]


def test_the_legacy_function_call_and_function_message_become_a_call_and_its_answer():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Time?"},
            {"role": "assistant", "content": None, "function_call": {"name": "now", "arguments": "{}"}},
            {"role": "function", "name": "now", "content": "12:00"},
        ]
    )
    assert body["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "now", "response": {"content": "12:00"}}}]},
    ]


@pytest.mark.parametrize(
    "messages, param",
    [
        ([{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}], "messages[1].tool_call_id"),
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [weather_call("call_1")]},
                {"role": "tool", "tool_call_id": "call_1", "content": "1"},
                {"role": "tool", "tool_call_id": "call_1", "content": "2"},
            ],
            "messages[3].tool_call_id",
        ),
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [weather_call("call_1"), weather_call("call_2", "Rome")]},
                {"role": "tool", "tool_call_id": "call_1", "content": "1"},
                {"role": "user", "content": "And?"},
            ],
            "messages[1].tool_calls[1]",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"arguments": "{}"}}]}],
            "messages[1].tool_calls[0].function.name",
        ),
        ([{"role": "user", "content": "Hi"}, {"role": "function", "name": "now", "content": "12:00"}], "messages[1].name"),
    ],
)
def test_a_tool_result_without_its_call_or_a_call_without_its_result_is_refused_by_name(messages, param):
    assert refusal(messages=messages).param == param


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Be brief."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " "}, {"role": "assistant", "content": ""}],
        [{"role": "developer", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": ""}]}],
    ],
)
def test_a_conversation_that_translates_to_nothing_is_refused_naming_messages(messages):
    assert refusal(messages=messages).param == "messages"


# --- thought signatures and thoughts ---------------------------------------------------------------


SIGNED_CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQBjz1rX3Sig=="}


def test_a_signed_function_call_hands_its_signature_to_the_client_on_the_tool_call():
    parts = [{"text": "Let me think about that.", "thought": True}, SIGNED_CALL, {"functionCall": {"name": "now", "args": {}}}]
    completion, _, reason = FORMAT.parse_response(gemini_answer(parts), **IDS)
    message = completion["choices"][0]["message"]
    assert message["reasoning"] == "Let me think about that."
    assert message["content"] is None
    assert message["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "CiQBjz1rX3Sig=="}}
    assert "extra_content" not in message["tool_calls"][1] and "extra_content" not in message
    assert reason == "tool_calls"


def test_a_signed_text_part_hands_its_signature_to_the_client_on_the_message():
    parts = [{"text": "Paris is ", "thoughtSignature": "EjQKMgEM"}, {"text": "lovely."}]
    completion, _, _ = FORMAT.parse_response(gemini_answer(parts), **IDS)
    assert completion["choices"][0]["message"] == {
        "role": "assistant", "content": "Paris is lovely.", "extra_content": {"google": {"thought_signature": "EjQKMgEM"}},
    }


def test_signatures_sent_back_go_onto_the_parts_they_came_from():
    signed = {**weather_call("call_1"), "extra_content": {"google": {"thought_signature": "SIG_CALL"}}}
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [signed, weather_call("call_2", "Rome")],
             "extra_content": {"google": {"thought_signature": "SIG_TEXT"}}, "reasoning": "thoughts stay with the client"},
            {"role": "tool", "tool_call_id": "call_1", "content": "18"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24"},
        ]
    )
    assert body["contents"][1]["parts"] == [
        {"text": "Checking both.", "thoughtSignature": "SIG_TEXT"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG_CALL"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]


def test_gemini_3_gets_the_documented_placeholder_for_a_function_call_it_did_not_sign():
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [weather_call("call_1"), weather_call("call_2", "Rome")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18"},
        {"role": "tool", "tool_call_id": "call_2", "content": "24"},
    ]
    assert upstream_body_for(GEMINI_3, messages=messages)["contents"][1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "skip_thought_signature_validator"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]
    assert "thoughtSignature" not in str(upstream_body(messages=messages))  # Gemini 2.5 does not ask for one


def test_a_stream_sends_thoughts_as_reasoning_and_signatures_where_the_client_keeps_them():
    translator, chunks, _ = translate([
        sse([{"text": "Thinking about Paris.", "thought": True}]),
        sse([SIGNED_CALL]),
        sse([{"text": "", "thoughtSignature": "TAIL"}], finish="STOP", usage={"promptTokenCount": 9, "candidatesTokenCount": 5, "thoughtsTokenCount": 12}),
    ])
    assert deltas(chunks)[:2] == [{"role": "assistant", "content": ""}, {"reasoning": "Thinking about Paris."}]
    assert deltas(chunks)[2]["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "CiQBjz1rX3Sig=="}}
    assert deltas(chunks)[3:] == [{"extra_content": {"google": {"thought_signature": "TAIL"}}}, {}]
    assert translator.state.finish_reason == "tool_calls"
    assert translator.state.usage == Usage(9, 17, reasoning_tokens=12)


# --- n → candidateCount ---------------------------------------------------------------------------


def test_n_becomes_the_candidate_count():
    assert upstream_body(n=3)["generationConfig"] == {"candidateCount": 3}
    assert "generationConfig" not in upstream_body(n=1)


def test_n_is_refused_by_name_on_gemini_3_which_returns_one_candidate():
    assert refusal(GEMINI_3, n=2).param == "n"


def test_two_candidates_become_two_choices():
    data = gemini_answer([{"text": "Blue."}])
    data["candidates"].append({"content": {"role": "model", "parts": [{"text": "Azure"}]}, "finishReason": "MAX_TOKENS", "index": 1})
    completion, _, reason = FORMAT.parse_response(data, **IDS)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in completion["choices"]] == [(0, "Blue.", "stop"), (1, "Azure", "length")]
    assert reason == "stop"


def test_a_stream_of_two_candidates_keeps_each_choice_apart_and_finishes_when_both_have():
    def event(*candidates):
        return "", orjson.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, "index": i, **({"finishReason": f} if f else {})}
                                                for i, t, f in candidates]}).decode()

    translator = FORMAT.stream_translator(include_usage=False, **IDS)
    first = translator.feed(*event((0, "Blue", None), (1, "Azure", None)))
    second = translator.feed(*event((0, ".", "STOP")))
    assert translator.state.finish_reason is None  # the second choice is still going
    third = translator.feed(*event((1, " sky.", "STOP")))
    assert [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in first + second + third] == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {"content": "Blue"}, None),
        (1, {"role": "assistant", "content": ""}, None),
        (1, {"content": "Azure"}, None),
        (0, {"content": "."}, None),
        (0, {}, "stop"),
        (1, {"content": " sky."}, None),
        (1, {}, "stop"),
    ]
    assert translator.state.finish_reason == "stop"


# --- reasoning_effort → thinkingConfig -----------------------------------------------------------------


@pytest.mark.parametrize(
    "model, effort, thinking",
    [
        ("gemini-2.5-flash", "minimal", {"thinkingBudget": 0}),
        ("gemini-2.5-flash-lite", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "minimal", {"thinkingBudget": 128, "includeThoughts": True}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-flash-latest", "minimal", {"thinkingBudget": 128, "includeThoughts": True}),
        ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "MINIMAL", "includeThoughts": True}),
        ("gemini-3.1-pro-preview", "minimal", {"thinkingLevel": "LOW", "includeThoughts": True}),
        ("gemini-3.5-flash", "medium", {"thinkingLevel": "MEDIUM", "includeThoughts": True}),
        ("models/gemini-3.1-pro-preview", "high", {"thinkingLevel": "HIGH", "includeThoughts": True}),
        ("gemini-3-flash-preview", "none", {"thinkingLevel": "MINIMAL"}),
    ],
)
def test_reasoning_effort_becomes_a_thinking_config(model, effort, thinking):
    body = upstream_body_for({**CALL, "upstream_model": model}, messages=[{"role": "user", "content": "Hi"}], reasoning_effort=effort)
    assert body["generationConfig"] == {"thinkingConfig": thinking}


@pytest.mark.parametrize("model, effort", [("gemini-2.5-flash", "extreme"), ("gemini-2.5-flash", 3), ("gemini-2.0-flash", "low"), ("gemma-3-27b-it", "high")])
def test_a_reasoning_effort_the_model_cannot_take_is_refused_by_name(model, effort):
    assert refusal({**CALL, "upstream_model": model}, reasoning_effort=effort).param == "reasoning_effort"


def test_answers_follow_the_order_of_their_calls_whatever_the_order_of_the_tool_messages():
    body = upstream_body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "tool_calls": [weather_call("call_1"), weather_call("call_2", "Rome")]},
            {"role": "tool", "tool_call_id": "call_2", "content": "Rome: 24"},
            {"role": "tool", "tool_call_id": "call_1", "content": "Paris: 18"},
        ]
    )
    assert [p["functionResponse"]["response"]["content"] for p in body["contents"][2]["parts"]] == ["Paris: 18", "Rome: 24"]


def test_the_parts_of_one_system_message_are_joined_by_a_line_break():
    body = upstream_body(messages=[{"role": "system", "content": [{"type": "text", "text": "A."}, {"type": "text", "text": "B."}]},
                                   {"role": "system", "content": "C."}, {"role": "user", "content": "Hi"}])
    assert body["systemInstruction"] == {"parts": [{"text": "A.\nB.\n\nC."}]}


def test_a_call_gets_the_same_id_streamed_or_not_and_another_in_another_completion():
    parts = [{"functionCall": {"name": "now", "args": {}}}]
    completion, _, _ = FORMAT.parse_response(gemini_answer(parts), **IDS)
    _, chunks, _ = translate([sse(parts, finish="STOP")])
    streamed = [call["id"] for delta in deltas(chunks) for call in delta.get("tool_calls", [])]
    assert streamed == [completion["choices"][0]["message"]["tool_calls"][0]["id"]]
    other, _, _ = FORMAT.parse_response(gemini_answer(parts), **{**IDS, "completion_id": "chatcmpl-789"})
    assert other["choices"][0]["message"]["tool_calls"][0]["id"] != streamed[0]


def test_a_call_keeps_the_id_gemini_gave_it():
    completion, _, _ = FORMAT.parse_response(gemini_answer([{"functionCall": {"id": "fc-7", "name": "now", "args": {}}}]), **IDS)
    assert completion["choices"][0]["message"]["tool_calls"][0]["id"] == "fc-7"
