"""The eight inputs of the translation issue, each sent with the official openai SDK through the
live gateway to the fake upstream (its own answers, or a provider's bytes replayed), each checked
for the answer a client must get and what the provider must receive:

1. an Anthropic stream whose tool_use gets no partial_json: the streamed arguments are JSON,
   the same as the whole answer's;
2. a picture inside a tool message reaches Claude (an image block in the tool_result) and
   Gemini (inlineData), and audio to Claude is a 400 naming the part;
3. a whitespace stop sequence to Claude is a 400 naming `stop`; a final assistant turn ending in
   whitespace goes up stripped;
4. provider state round-trips as the client got it: Gemini's thoughtSignature (extra_content on
   the tool call) and Claude's signed thinking blocks (reasoning_details);
5. a request of only a system message is a 400 naming `messages`, for Claude and Gemini;
6. an OpenAI-compatible host that puts usage on its finish chunk: the SDK's last chunk has
   `choices: []` and the usage;
7. n=2: Claude refuses naming `n`, Gemini 2.5 answers two choices;
8. reasoning_effort: Claude gets `thinking` with a budget, Gemini a thinkingConfig, and the
   reasoning text comes back as `message.reasoning`.
"""

import json
from typing import Any

import httpx
import openai
import pytest

from apikeys import services as key_services
from tests.gateway.conftest import eventually
from usage.models import UsageLog

CLAUDE = "anthropic/claude-sonnet-4-5"
GEMINI_25 = "google-ai-studio/gemini-2.5-flash"
GEMINI_3 = "google-ai-studio/gemini-3-flash-preview"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ASK = {"role": "user", "content": "What is the weather in Paris?"}


def own_key(org, provider: str) -> None:
    key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)


def _sse(*events: dict[str, Any], named: bool = True) -> bytes:
    """Server-sent events as a provider writes them (Anthropic names each event by its type)."""
    out = ""
    for event in events:
        data = json.dumps(event, ensure_ascii=False)
        out += f"event: {event['type']}\ndata: {data}\n\n" if named else f"data: {data}\n\n"
    return out.encode()


def _generate_calls(fake):
    return [c for c in fake.calls if c.endpoint == "generate"]


def _refused(client, **kwargs) -> openai.APIStatusError:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**kwargs)
    return raised.value


def _logs(project):
    return list(UsageLog.objects.filter(project=project))


# --- 1. an Anthropic tool_use without partial_json ----------------------------------------------------


def _anthropic_message(content: list[dict[str, Any]], stop_reason: str, output: int = 20) -> dict[str, Any]:
    return {"id": "msg_01Tr4nslat10n", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 50, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": output}}


def _anthropic_tool_stream(start_input: dict[str, Any], partials: list[str]) -> bytes:
    start = _anthropic_message([], None, 1)
    start["stop_reason"] = None
    block = {"type": "tool_use", "id": "toolu_01NoPartial", "name": "get_weather", "input": start_input}
    deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}}
              for p in partials]
    return _sse({"type": "message_start", "message": start},
                {"type": "content_block_start", "index": 0, "content_block": block},
                {"type": "ping"},
                *deltas,
                {"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                 "usage": {"output_tokens": 20}},
                {"type": "message_stop"})


@pytest.mark.parametrize(("start_input", "partials", "arguments"), [
    ({"city": "Paris", "unit": "°C"}, [], {"city": "Paris", "unit": "°C"}),  # the whole input in its start
    ({}, [], {}),  # a tool without parameters
    ({}, [""], {}),  # only an empty partial_json
    ({}, ['{"city": "Pa', 'ris", "unit": "°', 'C"}'], {"city": "Paris", "unit": "°C"}),  # the usual deltas
], ids=["input-in-start", "no-parameters", "empty-partial", "deltas"])
def test_1_an_anthropic_tool_use_without_partial_json_streams_the_same_arguments_as_the_whole_answer(
        gateway, org, project, key_for, fake_upstream, start_input, partials, arguments):
    own_key(org, "anthropic")
    client = gateway.client(key_for(project))
    fake_upstream.replay(_anthropic_tool_stream(start_input, partials), split=5)
    streamed: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model=CLAUDE, messages=[ASK], tools=[WEATHER_TOOL], stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = streamed.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    whole = _anthropic_message([{"type": "tool_use", "id": "toolu_01NoPartial", "name": "get_weather", "input": arguments}],
                               "tool_use")
    fake_upstream.replay(json.dumps(whole, ensure_ascii=False).encode())
    completion = client.chat.completions.create(model=CLAUDE, messages=[ASK], tools=[WEATHER_TOOL])
    [call] = completion.choices[0].message.tool_calls
    assert list(streamed) == [0] and finish == completion.choices[0].finish_reason == "tool_calls"
    assert (streamed[0]["id"], streamed[0]["name"]) == (call.id, call.function.name) == ("toolu_01NoPartial", "get_weather")
    assert json.loads(streamed[0]["arguments"]) == json.loads(call.function.arguments) == arguments


# --- 2. a picture in a tool message; audio to Claude ------------------------------------------------


def _tool_answer(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    call = {"id": "call_chart_1", "type": "function", "function": {"name": "get_chart", "arguments": "{}"}}
    return [{"role": "user", "content": "Show me the chart."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_chart_1", "content": [{"type": "text", "text": "Here it is."}, *parts]}]


CHART_TOOL = {"type": "function", "function": {"name": "get_chart", "parameters": {"type": "object", "properties": {}}}}
PICTURE = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


def test_2_a_picture_in_a_tool_message_reaches_claude_inside_the_tool_result(gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    completion = gateway.client(key_for(project)).chat.completions.create(
        model=CLAUDE, messages=_tool_answer(PICTURE), tools=[CHART_TOOL])
    assert completion.choices[0].message.tool_calls  # the fake's answer to a request with tools
    [call] = _generate_calls(fake_upstream)
    assert call.body["messages"][-1] == {"role": "user", "content": [{
        "type": "tool_result", "tool_use_id": "call_chart_1",
        "content": [{"type": "text", "text": "Here it is."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}


@pytest.mark.parametrize("model", [GEMINI_25, GEMINI_3])
def test_2_a_picture_in_a_tool_message_reaches_gemini_as_inline_data(gateway, org, project, key_for, fake_upstream, model):
    own_key(org, "google-ai-studio")
    gateway.client(key_for(project)).chat.completions.create(model=model, messages=_tool_answer(PICTURE), tools=[CHART_TOOL])
    [call] = _generate_calls(fake_upstream)
    inline = {"inlineData": {"mimeType": "image/png", "data": PNG}}
    answer = {"functionResponse": {"name": "get_chart", "response": {"content": "Here it is."}}}
    if model == GEMINI_3:  # multimodal function responses: the picture inside the functionResponse
        answer["functionResponse"]["parts"] = [inline]
        assert call.body["contents"][-1] == {"role": "user", "parts": [answer]}
    else:  # earlier models: beside it, in the same user turn
        assert call.body["contents"][-1] == {"role": "user", "parts": [answer, inline]}


AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=",
                                                "format": "wav"}}


@pytest.mark.parametrize(("messages", "param"), [
    (_tool_answer(AUDIO), "messages[2].content[1]"),
    ([{"role": "user", "content": [{"type": "text", "text": "What is said?"}, AUDIO]}], "messages[0].content[1]"),
], ids=["in-a-tool-message", "in-a-user-message"])
def test_2_audio_to_claude_is_a_400_naming_the_part(gateway, org, project, key_for, fake_upstream, messages, param):
    own_key(org, "anthropic")
    refused = _refused(gateway.client(key_for(project)), model=CLAUDE, messages=messages, tools=[CHART_TOOL])
    assert refused.param == param and "audio" in refused.message
    assert _generate_calls(fake_upstream) == []


# --- 3. whitespace: a stop sequence, a prefill ----------------------------------------------------------


def test_3_a_line_break_stop_sequence_to_claude_is_a_400_naming_stop(gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    refused = _refused(gateway.client(key_for(project)), model=CLAUDE, messages=[ASK], stop=["\n"])
    assert (refused.status_code, refused.code, refused.param) == (400, "invalid_request_error", "stop")
    assert _generate_calls(fake_upstream) == []


def test_3_a_final_assistant_turn_ending_in_whitespace_goes_to_claude_stripped(gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    completion = gateway.client(key_for(project)).chat.completions.create(
        model=CLAUDE, messages=[ASK, {"role": "assistant", "content": "The weather in Paris is \n "}], stop=["."])
    assert completion.choices[0].message.content
    [call] = _generate_calls(fake_upstream)
    assert call.body["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "The weather in Paris is"}]}
    assert call.body["stop_sequences"] == ["."]


# --- 4. provider state handed back by the client ------------------------------------------------------

SIGNATURE = "CiQBR0FJTE5vdGhpbmdUb1NlZUhlcmVCdXRJdElzU2lnbmVkAQ=="


def _gemini_answer(candidates: list[dict[str, Any]], usage: dict[str, int] | None = None,
                   model: str = "gemini-3-flash-preview") -> dict[str, Any]:
    return {"candidates": candidates,
            "usageMetadata": usage or {"promptTokenCount": 30, "candidatesTokenCount": 10, "totalTokenCount": 40},
            "modelVersion": model, "responseId": "r-translation"}


def _signed_call(args: dict[str, Any]) -> dict[str, Any]:
    return {"functionCall": {"name": "get_weather", "args": args}, "thoughtSignature": SIGNATURE}


def _tool_result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": '{"temperature": 21}'}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_4_a_gemini_thought_signature_goes_back_on_its_function_call(
        gateway, org, project, key_for, fake_upstream, stream):
    own_key(org, "google-ai-studio")
    client = gateway.client(key_for(project))
    candidate = {"content": {"role": "model", "parts": [_signed_call({"city": "Paris"})]}, "finishReason": "STOP", "index": 0}
    if stream:
        fake_upstream.replay(_sse(_gemini_answer([candidate]), named=False))
        calls: dict[int, dict[str, Any]] = {}
        for chunk in client.chat.completions.create(model=GEMINI_3, messages=[ASK], tools=[WEATHER_TOOL], stream=True):
            for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = calls.setdefault(delta_call.index, {"type": "function", "function": {"name": "", "arguments": ""}})
                entry["id"] = delta_call.id or entry.get("id")
                entry["function"]["name"] += delta_call.function.name or ""
                entry["function"]["arguments"] += delta_call.function.arguments or ""
                if (delta_call.model_extra or {}).get("extra_content"):
                    entry["extra_content"] = delta_call.model_extra["extra_content"]
        assistant = {"role": "assistant", "content": None, "tool_calls": [calls[k] for k in sorted(calls)]}
    else:
        fake_upstream.replay(json.dumps(_gemini_answer([candidate])).encode())
        message = client.chat.completions.create(model=GEMINI_3, messages=[ASK], tools=[WEATHER_TOOL]).choices[0].message
        assistant = message.to_dict()  # as the client got it, extra fields included
    [tool_call] = assistant["tool_calls"]
    assert tool_call["extra_content"] == {"google": {"thought_signature": SIGNATURE}}

    client.chat.completions.create(model=GEMINI_3, messages=[ASK, assistant, _tool_result(tool_call["id"])], tools=[WEATHER_TOOL])
    sent = _generate_calls(fake_upstream)[-1].body["contents"]
    assert sent[1] == {"role": "model", "parts": [_signed_call({"city": "Paris"})]}
    assert sent[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                         "response": {"content": {"temperature": 21}}}}]}


def test_4_claudes_signed_thinking_blocks_go_back_through_reasoning_details(gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    client = gateway.client(key_for(project))
    thinking = {"type": "thinking", "thinking": "The user wants Paris's weather: call the tool.", "signature": "EqQBCgIYAhIM1gbcDa9G=="}
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}
    tool_use = {"type": "tool_use", "id": "toolu_01Thinks", "name": "get_weather", "input": {"city": "Paris"}}
    fake_upstream.replay(json.dumps(_anthropic_message([thinking, redacted, tool_use], "tool_use")).encode())
    message = client.chat.completions.create(model=CLAUDE, messages=[ASK], tools=[WEATHER_TOOL],
                                             reasoning_effort="low").choices[0].message
    assert message.model_extra["reasoning"] == thinking["thinking"]
    assert message.model_extra["reasoning_details"] == [
        {"type": "anthropic.thinking", "thinking": thinking["thinking"], "signature": thinking["signature"]},
        {"type": "anthropic.redacted_thinking", "data": redacted["data"]}]

    client.chat.completions.create(model=CLAUDE, messages=[ASK, message.to_dict(), _tool_result("toolu_01Thinks")],
                                   tools=[WEATHER_TOOL], reasoning_effort="low")
    sent = _generate_calls(fake_upstream)[-1].body
    assert sent["messages"][1] == {"role": "assistant", "content": [thinking, redacted, tool_use]}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01Thinks", "content": '{"temperature": 21}'}]}
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}


# --- 5. only a system message ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "provider"), [(CLAUDE, "anthropic"), (GEMINI_25, "google-ai-studio")])
def test_5_a_request_of_only_a_system_message_is_a_400_naming_messages(
        gateway, org, project, key_for, fake_upstream, model, provider):
    own_key(org, provider)
    refused = _refused(gateway.client(key_for(project)), model=model,
                       messages=[{"role": "system", "content": "You are a weather bot."}])
    assert (refused.status_code, refused.param) == (400, "messages")
    assert _generate_calls(fake_upstream) == []


# --- 6. usage on an OpenAI-compatible host's finish chunk ---------------------------------------------


def _host_stream(model: str, usage_on_finish: dict[str, int]) -> bytes:
    base = {"id": "chatcmpl-host1", "object": "chat.completion.chunk", "created": 1741570283, "model": model}

    def chunk(delta, finish=None, **extra):
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi "}), chunk({"content": "thére!"}),
              chunk({}, "stop", usage=usage_on_finish)]
    return b"".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize(("provider", "model", "upstream"), [
    ("groq", "groq/llama-3.3-70b-instruct", "llama-3.3-70b-versatile"),
    ("mistral", "mistral/mistral-small", "mistral-small-latest"),
])
def test_6_usage_on_a_hosts_finish_chunk_reaches_the_sdk_in_a_last_chunk_without_choices(
        gateway, org, project, key_for, fake_upstream, provider, model, upstream):
    own_key(org, provider)
    client = gateway.client(key_for(project))
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    fake_upstream.replay(_host_stream(upstream, usage), split=3)
    chunks = list(client.chat.completions.create(model=model, messages=[ASK], stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi thére!"
    *content, last = chunks
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (9, 3, 12)
    assert last.usage.model_extra["cost"] > 0
    assert all(c.usage is None for c in content) and content[-1].choices[0].finish_reason == "stop"

    fake_upstream.replay(_host_stream(upstream, usage), split=3)  # a client that did not ask gets no usage
    chunks = list(client.chat.completions.create(model=model, messages=[ASK], stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert [c.body["stream_options"] for c in _generate_calls(fake_upstream)] == [{"include_usage": True}] * 2
    logs = eventually(lambda: len(_logs(project)) == 2 and _logs(project))
    assert [(log.prompt_tokens, log.completion_tokens) for log in logs] == [(9, 3), (9, 3)]


# --- 7. n = 2 -------------------------------------------------------------------------------------------


def test_7_n_2_to_claude_is_a_400_naming_n(gateway, org, project, key_for, fake_upstream):
    own_key(org, "anthropic")
    refused = _refused(gateway.client(key_for(project)), model=CLAUDE, messages=[ASK], n=2)
    assert (refused.status_code, refused.param) == (400, "n")
    assert _generate_calls(fake_upstream) == []


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_7_n_2_to_gemini_2_5_answers_two_choices(gateway, org, project, key_for, fake_upstream, stream):
    own_key(org, "google-ai-studio")
    candidates = [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": i}
                  for i, text in enumerate(["Sunny, 21 °C.", "Clear skies in Paris."])]
    answer = _gemini_answer(candidates, {"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20},
                            model="gemini-2.5-flash")
    client = gateway.client(key_for(project))
    if stream:
        fake_upstream.replay(_sse(answer, named=False))
        texts = ["", ""]
        reasons = [None, None]
        for chunk in client.chat.completions.create(model=GEMINI_25, messages=[ASK], n=2, stream=True):
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
                reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    else:
        fake_upstream.replay(json.dumps(answer, ensure_ascii=False).encode())
        completion = client.chat.completions.create(model=GEMINI_25, messages=[ASK], n=2)
        assert [c.index for c in completion.choices] == [0, 1]
        texts = [c.message.content for c in completion.choices]
        reasons = [c.finish_reason for c in completion.choices]
    assert texts == ["Sunny, 21 °C.", "Clear skies in Paris."] and reasons == ["stop", "stop"]
    [call] = _generate_calls(fake_upstream)
    assert call.body["generationConfig"]["candidateCount"] == 2


# --- 8. reasoning_effort --------------------------------------------------------------------------------

THOUGHT = "Paris in June: mild. Check the forecast first."
REPLY = "It is sunny in Paris."


def _claude_thinking_answer(stream: bool) -> bytes:
    blocks = [{"type": "thinking", "thinking": THOUGHT, "signature": "EqQBCgIYAhIMsig=="}, {"type": "text", "text": REPLY}]
    if not stream:
        return json.dumps(_anthropic_message(blocks, "end_turn", 120)).encode()
    start = _anthropic_message([], None, 1)
    return _sse({"type": "message_start", "message": start},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THOUGHT[:20]}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THOUGHT[20:]}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIMsig=="}},
                {"type": "content_block_stop", "index": 0},
                {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
                {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": REPLY}},
                {"type": "content_block_stop", "index": 1},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 120}},
                {"type": "message_stop"})


def _gemini_thinking_answer(stream: bool) -> bytes:
    usage = {"promptTokenCount": 8, "candidatesTokenCount": 6, "thoughtsTokenCount": 40, "totalTokenCount": 54}
    if not stream:
        parts = [{"text": THOUGHT, "thought": True}, {"text": REPLY}]
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        return json.dumps(_gemini_answer([candidate], usage, model="gemini-2.5-flash")).encode()
    first = {"content": {"role": "model", "parts": [{"text": THOUGHT, "thought": True}]}, "index": 0}
    last = {"content": {"role": "model", "parts": [{"text": REPLY}]}, "finishReason": "STOP", "index": 0}
    return _sse(_gemini_answer([first], usage, "gemini-2.5-flash"), _gemini_answer([last], usage, "gemini-2.5-flash"), named=False)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("model", "provider"), [(CLAUDE, "anthropic"), (GEMINI_25, "google-ai-studio")])
def test_8_reasoning_effort_asks_the_provider_to_think_and_the_reasoning_comes_back(
        gateway, org, project, key_for, fake_upstream, model, provider, stream):
    own_key(org, provider)
    client = gateway.client(key_for(project))
    recorded = _claude_thinking_answer(stream) if provider == "anthropic" else _gemini_thinking_answer(stream)
    fake_upstream.replay(recorded)
    if stream:
        reasoning, content = "", ""
        for chunk in client.chat.completions.create(model=model, messages=[ASK], reasoning_effort="medium", stream=True):
            for choice in chunk.choices:
                reasoning += (choice.delta.model_extra or {}).get("reasoning") or ""
                content += choice.delta.content or ""
    else:
        message = client.chat.completions.create(model=model, messages=[ASK], reasoning_effort="medium").choices[0].message
        reasoning, content = message.model_extra["reasoning"], message.content
    assert (reasoning, content) == (THOUGHT, REPLY)
    [call] = _generate_calls(fake_upstream)
    if provider == "anthropic":
        assert call.body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
        assert call.body["max_tokens"] > 8192
    else:
        assert call.body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192, "includeThoughts": True}
        log = eventually(lambda: _logs(project))[0]
        assert (log.reasoning_tokens, log.completion_tokens) == (40, 46)


def test_the_http_refusals_name_their_parameter_in_openais_error_shape(gateway, org, project, key_for, fake_upstream):
    """The same refusals as a plain HTTP client sees them (no SDK in between)."""
    own_key(org, "anthropic")
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key_for(project)}"},
                          json={"model": CLAUDE, "messages": [ASK], "stop": "\n"}, timeout=20)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stop" and response.json()["error"]["type"] == "invalid_request_error"
