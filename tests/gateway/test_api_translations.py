"""The translations of /v1/messages and /v1/responses, without a server: a Messages or Responses
request as a chat completion request, and chat completion chunks written back as Anthropic's or
OpenAI's typed events. The streams are checked by the official SDKs' own accumulators (the code
`messages.stream()` and `responses.stream()` run), on any interleaving of text, reasoning and
tool calls hypothesis finds."""

import json

import anthropic
import openai
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.responses._responses import ResponseStreamState
from pydantic import TypeAdapter

from gateway import chat, messages, responses
from gateway.errors import GatewayError
from gateway.tokens import Usage


def exchange(model: str = "some-model") -> chat.Exchange:
    e = chat.Exchange(snapshot=None, request_id="req_1")  # type: ignore[arg-type]  # the writers never read it
    e.requested_model, e.usage = model, Usage(120, 30, cached_tokens=20)
    return e


def parse_frames(frames: list[bytes]) -> list[tuple[str, dict]]:
    events = []
    for frame in b"".join(frames).decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n", 1)
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# --- Messages → chat completions -------------------------------------------------------------------


def translate_messages(body: dict) -> chat.Parsed:
    return messages.MessagesApi().parse(orjson.dumps({"model": "m", "max_tokens": 100, **body}))


def test_tool_results_become_tool_messages_before_the_users_other_blocks():
    parsed = translate_messages({"system": [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral"}}],
                                 "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                          {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}},
                                          {"type": "tool_use", "id": "t2", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "text", "text": "and?"},
                                     {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"},
                                     {"type": "tool_result", "tool_use_id": "t2", "content": "Rain", "is_error": True}]},
    ]})
    assert parsed.untranslatable is None
    assert parsed.body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
            {"id": "t2", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: Rain"},
        {"role": "user", "content": [{"type": "text", "text": "and?"}]},
    ]


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (2048, "low"), (8000, "medium"), (30000, "high")])
def test_a_thinking_budget_asks_a_translated_model_for_an_effort(budget, effort):
    parsed = translate_messages({"messages": [{"role": "user", "content": "Hi"}],
                                 "thinking": {"type": "enabled", "budget_tokens": budget}})
    assert parsed.body["reasoning_effort"] == effort


def test_tools_choice_stops_metadata_and_images_translate():
    parsed = translate_messages({
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}, "title": "a.txt"}]}],
        "tools": [{"name": "w", "description": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "w", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "temperature": 0.2, "stream": True,
    })
    body = parsed.body
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGVsbG8=", "filename": "a.txt"}}]
    assert body["tools"] == [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"},
                                                               "description": "weather"}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "w"}} and body["parallel_tool_calls"] is False
    assert (body["stop"], body["user"], body["temperature"]) == (["END"], "u-1", 0.2)
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, "tools[0]"),
    ({"top_k": 5}, "top_k"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]},
     "messages[0].content[0].source"),
    ({"messages": [{"role": "user", "content": [{"type": "search_result", "source": "x", "title": "t", "content": []}]}]},
     "messages[0].content[0]"),
])
def test_what_only_claude_takes_is_noted_by_name_and_weighs_in_the_bound(extra, param):
    parsed = translate_messages({"messages": [{"role": "user", "content": "Hi"}], **extra})
    assert isinstance(parsed.untranslatable, GatewayError) and parsed.untranslatable.param == param
    assert parsed.native is not None and parsed.native.get("top_k") == extra.get("top_k")


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "Hi"}]}, "messages[0].role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0].type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "system": 3}, "system"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
     "messages[0].content[0].source"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]},
     "tools[0].input_schema"),
])
def test_a_malformed_messages_request_is_a_400_naming_the_field(body, param):
    with pytest.raises(GatewayError) as refused:
        messages.MessagesApi().parse(orjson.dumps(body))
    assert refused.value.status == 400 and refused.value.param == param
    assert messages.error_body(refused.value)["error"]["type"] == "invalid_request_error"


# --- Responses → chat completions ------------------------------------------------------------------


def translate_responses(body: dict) -> chat.Parsed:
    return responses.RESPONSES.parse(orjson.dumps({"model": "m", **body}))


def test_an_agents_history_becomes_one_assistant_turn_per_model_turn():
    parsed = translate_responses({"instructions": "Be brief", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                     {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "w", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "w", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "Rain"}]},
    ], "max_output_tokens": 50, "reasoning": {"effort": "high"}, "text": {"format": {"type": "json_object"}}})
    assert parsed.untranslatable is None
    assert parsed.body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "Rain"}]},
    ]
    assert (parsed.body["max_tokens"], parsed.body["reasoning_effort"]) == (50, "high")
    assert parsed.body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(("extra", "param"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"tools": [{"type": "function", "name": "w"}, {"type": "mcp", "server_label": "docs", "server_url": "https://x"}]},
     "tools[1]"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "input[0].content[0]"),
])
def test_what_needs_openais_state_or_tools_is_noted_by_name(extra, param):
    parsed = translate_responses({"input": "Hi", **extra})
    assert isinstance(parsed.untranslatable, GatewayError) and parsed.untranslatable.param == param


def test_a_stored_conversation_weighs_a_whole_context_in_the_bound():
    parsed = translate_responses({"input": "Go on", "previous_response_id": "resp_1"})
    assert {"type": "file", "file": {}} in parsed.body["messages"][0]["content"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 5}, "input"),
    ({"model": "m", "input": ["x"]}, "input[0]"),
    ({"model": "m", "input": "x", "max_output_tokens": -1}, "max_output_tokens"),
    ({"model": "m", "input": "x", "instructions": ["x"]}, "instructions"),
    ({"input": "x"}, "model"),
    ({"model": "m", "input": "x", "tools": [{"name": "f"}]}, "tools[0].type"),
    ({"model": "m", "input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[0].output"),
])
def test_a_malformed_responses_request_is_a_400_naming_the_field(body, param):
    with pytest.raises(GatewayError) as refused:
        responses.RESPONSES.parse(orjson.dumps(body))
    assert refused.value.status == 400 and refused.value.param == param


# --- chat completion chunks → typed events -----------------------------------------------------------

# A stream's content: runs of text or reasoning, and tool calls (arguments in pieces).
PIECE = st.one_of(
    st.tuples(st.just("text"), st.text(min_size=1, max_size=8)),
    st.tuples(st.just("reasoning"), st.text(min_size=1, max_size=8)),
    st.tuples(st.just("call"), st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=3), st.integers(1, 3)),
)


def chunks_of(pieces: list, finish: str) -> list[dict]:
    chunks, calls = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}], 0
    for piece in pieces:
        if piece[0] == "call":
            arguments = json.dumps(piece[1])
            cut = max(1, len(arguments) // piece[2])
            parts = [arguments[i:i + cut] for i in range(0, len(arguments), cut)]
            first = {"index": calls, "id": f"call_{calls}", "type": "function", "function": {"name": f"f{calls}", "arguments": ""}}
            chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
            chunks += [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": calls, "function": {"arguments": p}}]}}]}
                       for p in parts]
            calls += 1
        else:
            chunks.append({"choices": [{"index": 0, "delta": {"content" if piece[0] == "text" else "reasoning": piece[1]}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 30}})
    return chunks


def expected_blocks(pieces: list) -> list[tuple[str, object]]:
    """(kind, content) per block: neighbouring texts (or reasoning) run into one block."""
    blocks: list[list] = []
    for piece in pieces:
        if piece[0] != "call" and blocks and blocks[-1][0] == piece[0]:
            blocks[-1][1] += piece[1]
        else:
            blocks.append([piece[0], piece[1] if piece[0] != "call" else json.loads(json.dumps(piece[1]))])
    return [tuple(b) for b in blocks]


MESSAGE_EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)
RESPONSE_EVENT = TypeAdapter(openai.types.responses.ResponseStreamEvent)


@settings(max_examples=80, deadline=None)
@given(st.lists(PIECE, max_size=8), st.sampled_from(["stop", "length", "tool_calls"]))
def test_anthropics_sdk_accumulates_the_written_events_into_the_answer(pieces, finish):
    writer = messages.MessagesWriter(exchange())
    frames = [f for chunk in chunks_of(pieces, finish) for f in writer.frames(chunk)] + writer.end()
    events = parse_frames(frames)
    assert events[0][0] == "message_start" and [e[0] for e in events[-2:]] == ["message_delta", "message_stop"]
    snapshot, buffers = None, {}
    for name, data in events:
        assert data["type"] == name
        snapshot = accumulate_event(event=MESSAGE_EVENT.validate_python(data), current_snapshot=snapshot, json_bufs=buffers)
    kinds = {"text": "text", "thinking": "reasoning", "tool_use": "call"}
    got = [(kinds[b.type], b.text if b.type == "text" else b.thinking if b.type == "thinking" else b.input)
           for b in snapshot.content]
    assert got == expected_blocks(pieces)
    assert snapshot.stop_reason == messages.STOP_REASONS[finish]
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens, snapshot.usage.cache_read_input_tokens) == (100, 30, 20)


@settings(max_examples=80, deadline=None)
@given(st.lists(PIECE, max_size=8), st.sampled_from(["stop", "length", "tool_calls"]))
def test_openais_sdk_accumulates_the_written_responses_events_into_the_answer(pieces, finish):
    request = {"model": "some-model", "input": "Hi", "tools": []}
    writer = responses.ResponsesWriter(exchange(), request)
    frames = [f for chunk in chunks_of(pieces, finish) for f in writer.frames(chunk)] + writer.end()
    events = parse_frames(frames)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [name for name, _ in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1][0] == ("response.incomplete" if finish == "length" else "response.completed")
    state = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    for name, data in events:
        assert data["type"] == name
        state.handle_event(RESPONSE_EVENT.validate_python(data))
    final = events[-1][1]["response"]
    got = []
    for item in final["output"]:
        if item["type"] == "message":
            got.append(("text", item["content"][0]["text"]))
        elif item["type"] == "reasoning":
            got.append(("reasoning", item["content"][0]["text"]))
        else:
            got.append(("call", json.loads(item["arguments"])))
    assert got == expected_blocks(pieces)
    assert final["usage"] == {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 0},
                              "output_tokens": 30,
                              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 150}


def test_an_error_after_the_stream_started_is_an_error_event_in_each_apis_shape():
    error = GatewayError(502, "The provider failed.", "upstream_error")
    [(name, data)] = parse_frames([messages.MessagesWriter(exchange()).error(error)])
    assert (name, data) == ("error", {"type": "error", "error": {"type": "api_error", "message": "The provider failed."}})
    [(name, data)] = parse_frames([responses.ResponsesWriter(exchange(), {}).error(error)])
    assert name == "error" and (data["code"], data["message"]) == ("upstream_error", "The provider failed.")
