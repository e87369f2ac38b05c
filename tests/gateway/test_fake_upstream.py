"""The fake upstream itself: its three wire formats, its faults, its records and its gate.

Plain `requests` over loopback, no database.
"""

import asyncio
import json
import threading
import time

import aiohttp
import pytest
import requests

from tests.fake_upstream import DEFAULT_REPLY, FakeUpstream, fake_upstream, free_port  # noqa: F401

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "input_schema": {"type": "object"}}]
TOOLS_GOOGLE = [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}]


# --- helpers --------------------------------------------------------------------------------


def openai_chat(fake, provider="openai", stream=False, timeout=5, **extra):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    if stream:
        body["stream"] = True
    return requests.post(
        f"{fake.base_url(provider)}/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-test"},
        timeout=timeout,
        stream=stream,
    )


def anthropic_messages(fake, stream=False, timeout=5, **extra):
    body = {"model": "claude-3-5-haiku-20241022", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}], **extra}
    if stream:
        body["stream"] = True
    return requests.post(f"{fake.base_url('anthropic')}/v1/messages", json=body, headers=ANTHROPIC_HEADERS,
                         timeout=timeout, stream=stream)


def google_generate(fake, stream=False, timeout=5, model="gemini-2.0-flash", **extra):
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **extra}
    return requests.post(f"{fake.base_url('google')}/v1beta/models/{model}:{method}", json=body,
                         headers={"x-goog-api-key": "AIza-test"}, timeout=timeout, stream=stream)


def sse_events(text):
    """[(event name or None, data string)] of an SSE body, whatever its line endings."""
    text = text.replace("\r\n", "\n")
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        events.append((name, "\n".join(data)))
    return events


def sse_json(text):
    return [json.loads(data) for _, data in sse_events(text) if data != "[DONE]"]


# --- the OpenAI format ----------------------------------------------------------------------


def test_an_openai_chat_completion_carries_the_reply_the_model_and_the_usage(fake_upstream):
    response = openai_chat(fake_upstream)

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": DEFAULT_REPLY, "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_an_openai_stream_sends_a_role_chunk_content_chunks_a_finish_chunk_and_done(fake_upstream):
    response = openai_chat(fake_upstream, stream=True)

    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert len(content) == 5 and "".join(content) == DEFAULT_REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)


def test_an_openai_stream_asked_for_usage_ends_with_a_usage_chunk_without_choices(fake_upstream):
    response = openai_chat(fake_upstream, stream=True, stream_options={"include_usage": True})

    chunks = sse_json(response.text)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_any_path_ending_in_chat_completions_speaks_openai_under_its_provider_name(fake_upstream):
    assert openai_chat(fake_upstream, provider="mistral").json()["object"] == "chat.completion"
    assert openai_chat(fake_upstream, provider="custom").status_code == 200

    assert [c.provider for c in fake_upstream.calls] == ["mistral", "custom"]
    assert fake_upstream.calls[0].path == "/mistral/v1/chat/completions"
    assert fake_upstream.base_url("mistral").endswith("/mistral/v1")


# --- the Anthropic format -------------------------------------------------------------------


def test_an_anthropic_message_carries_a_text_block_and_the_usage(fake_upstream):
    response = anthropic_messages(fake_upstream)

    body = response.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["id"].startswith("msg_")
    assert body["model"] == "claude-3-5-haiku-20241022"
    assert body["content"] == [{"type": "text", "text": DEFAULT_REPLY}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] == 10 and body["usage"]["output_tokens"] == 5


def test_an_anthropic_stream_sends_the_documented_event_sequence(fake_upstream):
    response = anthropic_messages(fake_upstream, stream=True)

    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 5 + [
        "content_block_stop", "message_delta", "message_stop"]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == name for d, name in zip(data, names, strict=True))
    assert data[0]["message"]["model"] == "claude-3-5-haiku-20241022"
    assert data[0]["message"]["usage"]["input_tokens"] == 10
    assert "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta") == DEFAULT_REPLY
    assert {d["delta"]["type"] for d in data if d["type"] == "content_block_delta"} == {"text_delta"}
    assert data[-2]["delta"]["stop_reason"] == "end_turn"
    assert data[-2]["usage"] == {"output_tokens": 5}


# --- the Google format ----------------------------------------------------------------------


def test_a_google_generate_content_carries_candidates_and_usage_metadata(fake_upstream):
    response = google_generate(fake_upstream, model="gemini-2.5-pro")

    body = response.json()
    candidate = body["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": DEFAULT_REPLY}], "role": "model"}
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
    assert body["modelVersion"] == "gemini-2.5-pro"


def test_a_google_stream_sends_data_events_with_usage_metadata_in_the_last_one(fake_upstream):
    response = google_generate(fake_upstream, stream=True)

    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert "\r\n\r\n" in response.text
    chunks = sse_json(response.text)
    assert len(chunks) == 5
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == DEFAULT_REPLY
    assert all("usageMetadata" not in c and "finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 5
    assert fake_upstream.calls[0].stream and fake_upstream.calls[0].model == "gemini-2.0-flash"


def test_a_google_stream_without_alt_sse_is_a_json_array(fake_upstream):
    url = f"{fake_upstream.base_url('google')}/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    response = requests.post(url, json={"contents": [{"parts": [{"text": "hi"}]}]}, timeout=5)

    chunks = response.json()
    assert isinstance(chunks, list) and chunks[-1]["usageMetadata"]["totalTokenCount"] == 15


# --- tools, ids and settings ----------------------------------------------------------------


def test_a_request_with_tools_is_answered_with_one_call_of_the_first_tool_in_every_format(fake_upstream):
    openai = openai_chat(fake_upstream, tools=TOOLS_OPENAI).json()["choices"][0]
    assert openai["finish_reason"] == "tool_calls"
    call = openai["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    anthropic = anthropic_messages(fake_upstream, tools=TOOLS_ANTHROPIC).json()
    assert anthropic["stop_reason"] == "tool_use"
    assert anthropic["content"][0]["type"] == "tool_use"
    assert anthropic["content"][0]["name"] == "get_weather"
    assert anthropic["content"][0]["input"] == {"city": "Paris"}

    google = google_generate(fake_upstream, tools=TOOLS_GOOGLE).json()["candidates"][0]
    assert google["finishReason"] == "STOP"
    assert google["content"]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]


def test_streamed_tool_calls_arrive_as_argument_fragments(fake_upstream):
    chunks = sse_json(openai_chat(fake_upstream, stream=True, tools=TOOLS_OPENAI).text)
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"]["name"] == "get_weather" and first["id"].startswith("call_")
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1])
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    events = sse_json(anthropic_messages(fake_upstream, stream=True, tools=TOOLS_ANTHROPIC).text)
    assert events[1]["content_block"]["type"] == "tool_use"
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"

    google = sse_json(google_generate(fake_upstream, stream=True, tools=TOOLS_GOOGLE).text)
    assert google[-1]["candidates"][0]["content"]["parts"][0]["functionCall"]["args"] == {"city": "Paris"}


def test_completion_ids_are_unique_per_request_unless_a_fixed_id_is_set(fake_upstream):
    ids = {openai_chat(fake_upstream).json()["id"] for _ in range(3)}
    assert len(ids) == 3

    fake_upstream.fixed_completion_id = "chatcmpl-fixed"
    assert openai_chat(fake_upstream).json()["id"] == "chatcmpl-fixed"
    assert anthropic_messages(fake_upstream).json()["id"] == "chatcmpl-fixed"


def test_the_reply_the_chunk_count_the_delay_and_the_usage_can_be_changed(fake_upstream):
    fake_upstream.reply = "abcdefgh"
    fake_upstream.stream_chunks = 4
    fake_upstream.chunk_delay = 0.05
    fake_upstream.usage = (7, 3)

    started = time.monotonic()
    chunks = sse_json(openai_chat(fake_upstream, stream=True, stream_options={"include_usage": True}).text)
    elapsed = time.monotonic() - started

    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]] == ["ab", "cd", "ef", "gh"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert elapsed >= 0.15


def test_a_request_a_real_provider_would_refuse_gets_that_providers_400(fake_upstream):
    body = {"model": "claude-3-5-haiku-20241022", "messages": []}
    response = requests.post(f"{fake_upstream.base_url('anthropic')}/v1/messages", json=body,
                             headers=ANTHROPIC_HEADERS, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}

    fake_upstream.strict = False
    response = requests.post(f"{fake_upstream.base_url('anthropic')}/v1/messages", json=body,
                             headers=ANTHROPIC_HEADERS, timeout=5)
    assert response.status_code == 200


def test_an_unknown_path_is_a_404(fake_upstream):
    response = requests.post(f"{fake_upstream.url}/openai/v1/embeddings", json={}, timeout=5)
    assert response.status_code == 404
    assert fake_upstream.calls[0].wire is None


# --- key validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "path", "headers", "listing"),
    [
        ("openai", "/models", {"Authorization": "Bearer good"}, "data"),
        ("anthropic", "/v1/models", {"x-api-key": "good", "anthropic-version": "2023-06-01"}, "data"),
        ("google", "/v1beta/models", {"x-goog-api-key": "good"}, "models"),
    ],
)
def test_the_model_listing_accepts_any_key_by_default_and_only_valid_keys_when_told(
    fake_upstream, provider, path, headers, listing
):
    url = fake_upstream.base_url(provider) + path
    assert requests.get(url, headers=headers, timeout=5).json()[listing]

    fake_upstream.valid_tokens = {"good"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    bad = {k: v.replace("good", "bad") for k, v in headers.items()}
    refused = requests.get(url, headers=bad, timeout=5)
    assert refused.status_code in (400, 401)
    assert refused.json()["error"]["message"]
    assert [c.endpoint for c in fake_upstream.calls_for(provider)] == ["models"] * 3


def test_an_openai_key_outside_the_valid_tokens_gets_the_openai_401(fake_upstream):
    fake_upstream.valid_tokens = {"sk-good"}

    response = requests.get(f"{fake_upstream.base_url('openai')}/models",
                            headers={"Authorization": "Bearer sk-bad"}, timeout=5)

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Incorrect API key provided"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert openai_chat(fake_upstream).status_code == 401  # completions check the key too


# --- faults ---------------------------------------------------------------------------------


def test_a_status_fault_answers_once_with_its_status_body_and_headers(fake_upstream):
    fake_upstream.fail("status", status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "3"})

    failed = openai_chat(fake_upstream)
    assert failed.status_code == 429
    assert failed.headers["Retry-After"] == "3"
    assert failed.json() == {"error": {"message": "slow down"}}
    assert openai_chat(fake_upstream).status_code == 200
    assert [c.fault for c in fake_upstream.calls] == ["status", None]


def test_a_status_fault_without_a_body_uses_the_formats_error_shape(fake_upstream):
    fake_upstream.fail("status", times=3, status=529)

    assert openai_chat(fake_upstream).json()["error"]["type"] == "server_error"
    assert anthropic_messages(fake_upstream).json() == {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert google_generate(fake_upstream).json()["error"]["code"] == 529


def test_a_status_fault_can_send_a_plain_text_body(fake_upstream):
    fake_upstream.fail("status", status=502, body="<html>Bad Gateway</html>", content_type="text/html")

    response = openai_chat(fake_upstream)

    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html>Bad Gateway</html>"


def test_a_fault_for_one_provider_leaves_the_others_alone_and_times_counts_requests(fake_upstream):
    fake_upstream.fail("status", provider="mistral", times=2, status=503)

    assert openai_chat(fake_upstream, provider="openai").status_code == 200
    assert openai_chat(fake_upstream, provider="mistral").status_code == 503
    assert openai_chat(fake_upstream, provider="mistral").status_code == 503
    assert openai_chat(fake_upstream, provider="mistral").status_code == 200


def test_a_fault_with_times_none_lasts_until_reset(fake_upstream):
    fake_upstream.fail("status", times=None, status=500)
    assert [openai_chat(fake_upstream).status_code for _ in range(3)] == [500, 500, 500]

    fake_upstream.reset()
    assert openai_chat(fake_upstream).status_code == 200


def test_faults_hit_completions_unless_aimed_at_the_model_listing(fake_upstream):
    fake_upstream.fail("status", status=500, on="models")
    listing = f"{fake_upstream.base_url('openai')}/models"

    assert openai_chat(fake_upstream).status_code == 200
    assert requests.get(listing, timeout=5).status_code == 500
    assert requests.get(listing, timeout=5).status_code == 200


def test_an_unknown_fault_kind_or_option_is_refused():
    fake = FakeUpstream()
    with pytest.raises(ValueError):
        fake.fail("explode")
    with pytest.raises(TypeError):
        fake.fail("slow", secs=1)


def test_a_hang_never_answers_and_notices_when_the_client_gives_up(fake_upstream):
    fake_upstream.fail("hang")

    with pytest.raises(requests.ReadTimeout):
        openai_chat(fake_upstream, timeout=0.3)

    assert fake_upstream.wait_for(lambda: fake_upstream.calls[0].disconnected, timeout=2)
    assert fake_upstream.calls[0].status is None
    assert fake_upstream.wait_for(lambda: fake_upstream.in_flight == 0, timeout=2)


def test_stopping_the_fake_drops_the_connections_that_hang():
    outcome = {}
    with FakeUpstream() as fake:
        fake.fail("hang", times=None)

        def call():
            try:
                openai_chat(fake, timeout=30)
            except requests.RequestException as e:
                outcome["error"] = e

        thread = threading.Thread(target=call)
        thread.start()
        fake.wait_for_calls(1)
        started = time.monotonic()
    thread.join(5)

    assert not thread.is_alive()
    assert isinstance(outcome["error"], requests.ConnectionError)
    assert time.monotonic() - started < 3


def test_reset_drops_the_connections_that_hang(fake_upstream):
    fake_upstream.fail("hang")
    outcome = {}

    def call():
        try:
            openai_chat(fake_upstream, timeout=30)
        except requests.RequestException as e:
            outcome["error"] = e

    thread = threading.Thread(target=call)
    thread.start()
    fake_upstream.wait_for_calls(1)
    fake_upstream.reset()
    thread.join(5)

    assert isinstance(outcome.get("error"), requests.ConnectionError)


def test_a_hang_mid_stream_sends_headers_and_some_chunks_then_nothing(fake_upstream):
    fake_upstream.fail("hang_mid_stream", after=2)
    response = openai_chat(fake_upstream, stream=True, timeout=0.5)
    assert response.status_code == 200

    received = b""
    with pytest.raises(requests.ConnectionError):  # urllib3's read timeout mid-body
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
    chunks = sse_json(received.decode())
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hello ", "from t"]


def test_a_cut_mid_stream_sends_some_chunks_then_drops_the_connection(fake_upstream):
    fake_upstream.fail("cut_mid_stream", after=1)
    response = anthropic_messages(fake_upstream, stream=True)

    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
    names = [name for name, _ in sse_events(received.decode())]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta"]


def test_a_cut_mid_stream_can_reset_the_connection(fake_upstream):
    fake_upstream.fail("cut_mid_stream", after=0, rst=True)

    with pytest.raises(requests.RequestException):
        response = google_generate(fake_upstream, stream=True)
        response.content  # noqa: B018 - reading the body is the point


def test_invalid_json_is_a_200_whose_body_does_not_parse(fake_upstream):
    fake_upstream.fail("invalid_json")

    response = openai_chat(fake_upstream)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        response.json()


def test_garbage_sse_is_a_streaming_200_whose_events_are_not_json(fake_upstream):
    fake_upstream.fail("garbage_sse")

    response = openai_chat(fake_upstream, stream=True)

    assert response.status_code == 200
    events = sse_events(response.text)
    assert events
    for _, data in events:
        with pytest.raises(ValueError):
            json.loads(data)


def test_an_error_in_a_200_uses_each_formats_error_shape(fake_upstream):
    fake_upstream.fail("error_in_200", times=3)

    openai = openai_chat(fake_upstream)
    assert openai.status_code == 200 and openai.json()["error"]["message"]
    anthropic = anthropic_messages(fake_upstream)
    assert anthropic.status_code == 200 and anthropic.json()["type"] == "error"
    google = google_generate(fake_upstream)
    assert google.status_code == 200 and google.json()["error"]["status"] == "INTERNAL"


def test_an_error_in_a_stream_follows_the_chunks_already_sent(fake_upstream):
    fake_upstream.fail("error_in_200", after=2, error={"message": "boom", "type": "server_error"})
    chunks = sse_json(openai_chat(fake_upstream, stream=True).text)
    assert chunks[-1] == {"error": {"message": "boom", "type": "server_error"}}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:-1]] == ["", "Hello ", "from t"]

    fake_upstream.fail("error_in_200")
    events = sse_events(anthropic_messages(fake_upstream, stream=True).text)
    assert events == [("error", json.dumps({"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}, separators=(",", ":")))]


def test_bad_usage_sends_negative_counts(fake_upstream):
    fake_upstream.fail("bad_usage", times=3, mode="negative")

    assert openai_chat(fake_upstream).json()["usage"]["prompt_tokens"] < 0
    usage = anthropic_messages(fake_upstream).json()["usage"]
    assert usage["input_tokens"] < 0 and usage["output_tokens"] < 0
    chunks = sse_json(google_generate(fake_upstream, stream=True).text)
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] < 0


def test_bad_usage_can_leave_the_counts_or_the_whole_usage_out(fake_upstream):
    fake_upstream.fail("bad_usage", mode="missing")
    chunks = sse_json(openai_chat(fake_upstream, stream=True).text)  # even without include_usage
    assert chunks[-1]["usage"] == {}

    fake_upstream.fail("bad_usage", mode="missing")
    events = sse_json(anthropic_messages(fake_upstream, stream=True).text)
    assert events[-2]["usage"] == {}

    fake_upstream.fail("bad_usage", mode="absent")
    assert "usage" not in openai_chat(fake_upstream).json()


def test_a_huge_stream_sends_about_the_asked_megabytes(fake_upstream):
    fake_upstream.fail("huge_stream", size_mb=2, chunk_kb=32)

    response = openai_chat(fake_upstream, stream=True, stream_options={"include_usage": True})

    chunks = sse_json(response.text)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(content) == 2 * 1024 * 1024
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_a_slow_answer_waits_then_answers_normally(fake_upstream):
    fake_upstream.fail("slow", seconds=0.3)

    started = time.monotonic()
    response = openai_chat(fake_upstream)

    assert time.monotonic() - started >= 0.3
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY


def test_a_reset_after_request_reads_the_request_then_resets_the_connection(fake_upstream):
    fake_upstream.fail("reset_after_request")

    with pytest.raises(requests.ConnectionError):
        openai_chat(fake_upstream)

    call = fake_upstream.calls[0]
    assert call.body["model"] == "gpt-4o-mini" and call.status is None


def test_free_port_gives_a_port_that_refuses_connections():
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{free_port()}/openai/v1/models", timeout=2)


# --- records and the gate -------------------------------------------------------------------


def test_calls_record_provider_path_headers_body_and_time(fake_upstream):
    before = time.time()
    anthropic_messages(fake_upstream)
    openai_chat(fake_upstream)

    call = fake_upstream.calls_for("anthropic")[0]
    assert call.method == "POST" and call.path == "/anthropic/v1/messages"
    assert call.headers["x-api-key"] == "sk-ant-test"
    assert call.body["max_tokens"] == 100
    assert call.wire == "anthropic" and call.endpoint == "generate" and not call.stream
    assert call.status == 200 and call.finished
    assert before <= call.time <= time.time()
    assert [c.provider for c in fake_upstream.calls] == ["anthropic", "openai"]


def test_reset_clears_calls_faults_and_settings(fake_upstream):
    fake_upstream.reply = "changed"
    fake_upstream.valid_tokens = {"x"}
    fake_upstream.fail("status")
    openai_chat(fake_upstream)

    fake_upstream.reset()

    assert fake_upstream.calls == [] and fake_upstream.pending_faults == 0
    assert fake_upstream.reply == DEFAULT_REPLY and fake_upstream.valid_tokens is None


def test_the_gate_holds_answers_until_released(fake_upstream):
    fake_upstream.gate(3)
    results = []

    def call():
        results.append(openai_chat(fake_upstream, timeout=5).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()

    fake_upstream.wait_held(3)
    assert fake_upstream.wait_for(lambda: results == [200])  # the fourth is past the gate's count
    time.sleep(0.1)
    assert fake_upstream.held == 3 and len(results) == 1

    fake_upstream.release()
    for thread in threads:
        thread.join(5)
    assert results == [200] * 4 and fake_upstream.held == 0


def test_hundreds_of_concurrent_streams_are_served_at_once(fake_upstream):
    fake_upstream.chunk_delay = 0.05
    count = 300

    async def one(session):
        body = {"model": "gpt-4o-mini", "messages": [], "stream": True}
        async with session.post(f"{fake_upstream.base_url('openai')}/chat/completions", json=body) as response:
            return (await response.read()).endswith(b"data: [DONE]\n\n")

    async def many():
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
            return await asyncio.gather(*(one(session) for _ in range(count)))

    assert all(asyncio.run(many()))
    assert fake_upstream.max_in_flight >= count * 0.9
    assert len(fake_upstream.calls) == count


# --- the OpenAI Responses API ---------------------------------------------------------------

TOOLS_RESPONSES = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added"] + ["response.output_text.delta"] * 5 + [
    "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
CALL_EVENTS = ["response.created", "response.in_progress", "response.output_item.added"] + [
    "response.function_call_arguments.delta"] * 5 + [
    "response.function_call_arguments.done", "response.output_item.done", "response.completed"]


def openai_responses(fake, provider="openai", stream=False, timeout=5, **extra):
    body = {"model": "gpt-4o-mini", "input": "hi", **extra}
    if stream:
        body["stream"] = True
    return requests.post(f"{fake.base_url(provider)}/responses", json=body,
                         headers={"Authorization": "Bearer sk-test"}, timeout=timeout, stream=stream)


def openai_client(fake):
    import openai

    return openai.OpenAI(base_url=fake.base_url("openai"), api_key="x", max_retries=0)


def test_a_response_carries_a_message_item_the_model_the_usage_and_openais_other_fields(fake_upstream):
    response = openai_responses(fake_upstream)

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "response" and body["id"].startswith("resp_")
    assert body["status"] == "completed" and body["model"] == "gpt-4o-mini"
    assert isinstance(body["created_at"], int) and body["completed_at"] >= body["created_at"]
    [item] = body["output"]
    assert item["id"].startswith("msg_")
    assert item == {"id": item["id"], "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": DEFAULT_REPLY}]}
    assert body["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    assert body["error"] is None and body["incomplete_details"] is None
    # What a real Response carries when the request sets none of it.
    assert {k: body[k] for k in ("instructions", "max_output_tokens", "parallel_tool_calls", "previous_response_id",
                                 "reasoning", "store", "temperature", "text", "tool_choice", "tools", "top_p",
                                 "truncation", "user", "metadata")} == {
        "instructions": None, "max_output_tokens": None, "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {}}
    call = fake_upstream.calls[0]
    assert (call.wire, call.endpoint, call.path, call.stream) == ("openai", "responses", "/openai/v1/responses", False)
    assert call.status == 200 and call.finished


def test_a_response_echoes_the_requests_settings(fake_upstream):
    body = openai_responses(fake_upstream, instructions="Be brief.", max_output_tokens=64, temperature=0.2,
                            top_p=0.5, store=False, metadata={"k": "v"}, user="u1", previous_response_id="resp_prev",
                            reasoning={"effort": "low"}, parallel_tool_calls=False, truncation="auto").json()

    assert body["instructions"] == "Be brief." and body["max_output_tokens"] == 64
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5 and body["store"] is False
    assert body["metadata"] == {"k": "v"} and body["user"] == "u1" and body["previous_response_id"] == "resp_prev"
    assert body["reasoning"] == {"effort": "low", "summary": None}
    assert body["parallel_tool_calls"] is False and body["truncation"] == "auto"


def test_a_streamed_response_sends_openais_events_in_order_numbered_from_zero(fake_upstream):
    response = openai_responses(fake_upstream, stream=True)

    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == TEXT_EVENTS
    data = [json.loads(d) for _, d in events]
    assert [d["type"] for d in data] == names
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    created, in_progress = data[0]["response"], data[1]["response"]
    assert created["status"] == in_progress["status"] == "in_progress"
    assert created["output"] == [] and created["usage"] is None and created["completed_at"] is None
    item_id = data[2]["item"]["id"]
    assert data[2]["item"] == {"id": item_id, "type": "message", "status": "in_progress", "content": [],
                               "role": "assistant"}
    assert data[3]["part"] == {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    deltas = [d for d in data if d["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == DEFAULT_REPLY
    assert {(d["item_id"], d["output_index"], d["content_index"]) for d in deltas} == {(item_id, 0, 0)}
    assert all(d["obfuscation"] for d in deltas)
    assert data[-4]["text"] == DEFAULT_REPLY and data[-3]["part"]["text"] == DEFAULT_REPLY
    done_item = data[-2]["item"]
    assert done_item["status"] == "completed" and done_item["content"][0]["text"] == DEFAULT_REPLY
    completed = data[-1]["response"]
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    assert completed["output"] == [done_item]
    assert completed["usage"]["input_tokens"] == 10 and completed["usage"]["total_tokens"] == 15
    assert fake_upstream.calls[0].stream and fake_upstream.calls[0].endpoint == "responses"


def test_a_stream_asked_without_obfuscation_leaves_it_out(fake_upstream):
    data = sse_json(openai_responses(fake_upstream, stream=True, stream_options={"include_obfuscation": False}).text)

    assert all("obfuscation" not in d for d in data)


def test_a_response_to_a_request_with_a_function_tool_is_a_function_call_item(fake_upstream):
    body = openai_responses(fake_upstream, tools=[{"type": "web_search"}, *TOOLS_RESPONSES]).json()

    [item] = body["output"]
    assert item["type"] == "function_call" and item["status"] == "completed"
    assert item["id"].startswith("fc_") and item["call_id"].startswith("call_")
    assert item["name"] == "get_weather" and json.loads(item["arguments"]) == {"city": "Paris"}
    assert body["tools"] == [{"type": "web_search"}, *TOOLS_RESPONSES]

    events = sse_events(openai_responses(fake_upstream, stream=True, tools=TOOLS_RESPONSES).text)
    assert [name for name, _ in events] == CALL_EVENTS
    data = [json.loads(d) for _, d in events]
    assert data[2]["item"]["arguments"] == "" and data[2]["item"]["status"] == "in_progress"
    arguments = "".join(d["delta"] for d in data if d["type"] == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"city": "Paris"}
    assert data[-3]["arguments"] == arguments and data[-2]["item"]["arguments"] == arguments
    assert data[-1]["response"]["output"] == [data[-2]["item"]]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))


def test_a_response_reports_the_cached_and_reasoning_tokens_set(fake_upstream):
    fake_upstream.usage = (100, 40)
    fake_upstream.cached_tokens = 60
    fake_upstream.reasoning_tokens = 25

    usage = openai_responses(fake_upstream).json()["usage"]
    streamed = sse_json(openai_responses(fake_upstream, stream=True).text)[-1]["response"]["usage"]

    assert usage == streamed == {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60},
                                 "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 25},
                                 "total_tokens": 140}
    assert "prompt_tokens_details" not in openai_chat(fake_upstream).json()["usage"]  # chat reports none


def test_a_response_without_model_or_input_gets_openais_400_naming_the_param(fake_upstream):
    url = f"{fake_upstream.base_url('openai')}/responses"

    missing_model = requests.post(url, json={"input": "hi"}, timeout=5)
    missing_input = requests.post(url, json={"model": "gpt-4o-mini"}, timeout=5)

    assert missing_model.status_code == missing_input.status_code == 400
    assert missing_model.json() == {"error": {"message": "Missing required parameter: 'model'.",
                                              "type": "invalid_request_error", "param": "model",
                                              "code": "missing_required_parameter"}}
    assert missing_input.json()["error"]["param"] == "input"
    assert requests.post(url, json={"model": "gpt-4o-mini", "input": 7}, timeout=5).json()["error"]["code"] == (
        "invalid_type")

    fake_upstream.strict = False
    assert requests.post(url, json={"input": "hi"}, timeout=5).status_code == 200


def test_faults_on_generate_hit_responses_and_faults_on_responses_hit_only_them(fake_upstream):
    fake_upstream.fail("status", status=429)  # on="generate", the default
    failed = openai_responses(fake_upstream)
    assert failed.status_code == 429
    assert failed.json()["error"]["code"] == "rate_limit_exceeded"

    fake_upstream.fail("status", status=503, on="responses")
    assert openai_chat(fake_upstream).status_code == 200
    assert openai_responses(fake_upstream).status_code == 503
    assert fake_upstream.pending_faults == 0

    fake_upstream.fail("status", status=500, on="models")
    assert openai_responses(fake_upstream).status_code == 200
    assert [c.fault for c in fake_upstream.calls] == ["status", None, "status", None]


def test_an_error_in_a_responses_stream_is_an_error_event_numbered_after_the_deltas_sent(fake_upstream):
    fake_upstream.fail("error_in_200", after=2, error={"code": "rate_limit_exceeded", "message": "slow down"})

    events = sse_events(openai_responses(fake_upstream, stream=True).text)

    assert [name for name, _ in events] == TEXT_EVENTS[:6] + ["error"]
    assert json.loads(events[-1][1]) == {"type": "error", "code": "rate_limit_exceeded", "message": "slow down",
                                         "param": None, "sequence_number": 6}


def test_an_error_in_a_responses_stream_can_be_a_response_failed(fake_upstream):
    fake_upstream.fail("error_in_200", after=1, failed=True)

    data = sse_json(openai_responses(fake_upstream, stream=True).text)

    assert [d["type"] for d in data] == TEXT_EVENTS[:5] + ["response.failed"]
    failed = data[-1]
    assert failed["sequence_number"] == 5
    assert failed["response"]["status"] == "failed" and failed["response"]["id"] == data[0]["response"]["id"]
    assert failed["response"]["error"] == {"code": "server_error",
                                           "message": "The server had an error while processing your request."}


def test_a_cut_responses_stream_ends_after_the_asked_deltas(fake_upstream):
    fake_upstream.fail("cut_mid_stream", after=1, on="responses")
    response = openai_responses(fake_upstream, stream=True)

    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
    assert [name for name, _ in sse_events(received.decode())] == TEXT_EVENTS[:5]


def test_replays_for_responses_are_aimed_with_on_responses(fake_upstream):
    fake_upstream.replay('{"chat": "bytes"}', on="generate")
    fake_upstream.replay('{"responses": "bytes"}', on="responses")

    assert openai_responses(fake_upstream).json() == {"responses": "bytes"}
    assert openai_chat(fake_upstream).json() == {"chat": "bytes"}
    assert [c.replayed for c in fake_upstream.calls] == [True, True]


def test_bill_most_makes_a_response_report_the_most_openai_could_bill(fake_upstream):
    from tests.fake_upstream import answer_reporting, most_billed

    fake_upstream.bill_most = True
    fake_upstream.cached_tokens = 5
    extra = {"instructions": "Be brief.", "max_output_tokens": 321, "tools": TOOLS_RESPONSES,
             "input": [{"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                                    {"type": "input_image", "image_url": "https://x/y.png"}]}]}

    body = openai_responses(fake_upstream, **extra).json()
    streamed = sse_json(openai_responses(fake_upstream, stream=True, **extra).text)[-1]["response"]

    most = most_billed("responses", "openai", "gpt-4o-mini", fake_upstream.calls[0].body)
    assert most.completion_tokens == 321 and most.prompt_tokens > 1_000  # the picture at its maximum
    for usage in (body["usage"], streamed["usage"]):
        assert (usage["input_tokens"], usage["output_tokens"]) == (most.prompt_tokens, most.completion_tokens)
        assert usage["input_tokens_details"] == {"cached_tokens": 0}
    reported = answer_reporting("responses", "gpt-4o-mini", most)
    assert reported["object"] == "response" and reported["usage"]["input_tokens"] == most.prompt_tokens


def test_the_gate_holds_responses_calls(fake_upstream):
    fake_upstream.gate(1)
    results = []
    thread = threading.Thread(target=lambda: results.append(openai_responses(fake_upstream).status_code))
    thread.start()

    fake_upstream.wait_held(1)
    assert results == []
    fake_upstream.release()
    thread.join(5)
    assert results == [200]


def test_the_openai_sdk_reads_the_fakes_responses(fake_upstream):
    client = openai_client(fake_upstream)
    fake_upstream.cached_tokens = 4
    fake_upstream.reasoning_tokens = 2

    response = client.responses.create(model="gpt-4o-mini", input="hi", instructions="Be brief.")
    assert response.output_text == DEFAULT_REPLY
    assert response.status == "completed" and response.instructions == "Be brief."
    assert response.usage.input_tokens == 10 and response.usage.output_tokens == 5
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2

    called = client.responses.create(model="gpt-4o-mini", input="weather?", tools=TOOLS_RESPONSES)
    [item] = called.output
    assert item.type == "function_call" and item.name == "get_weather"
    assert json.loads(item.arguments) == {"city": "Paris"}


def test_the_openai_sdk_streams_the_fakes_responses(fake_upstream):
    client = openai_client(fake_upstream)

    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))

    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == DEFAULT_REPLY
    assert events[-1].response.output_text == DEFAULT_REPLY
    assert events[-1].response.usage.total_tokens == 15

    with client.responses.stream(model="gpt-4o-mini", input="hi", tools=TOOLS_RESPONSES) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds == CALL_EVENTS
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {"city": "Paris"}


def test_the_openai_sdk_sees_the_fakes_errors_on_responses(fake_upstream):
    import openai

    client = openai_client(fake_upstream)
    fake_upstream.fail("status", status=429, on="responses")
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model="gpt-4o-mini", input="hi")
    assert refused.value.code == "rate_limit_exceeded"

    fake_upstream.fail("error_in_200", after=1)
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert events[-1].type == "error" and events[-1].code == "server_error"


def test_bad_usage_applies_to_responses_whole_and_streamed(fake_upstream):
    fake_upstream.fail("bad_usage", mode="missing")
    assert openai_responses(fake_upstream).json()["usage"] == {}

    fake_upstream.fail("bad_usage", mode="absent")
    assert "usage" not in sse_json(openai_responses(fake_upstream, stream=True).text)[-1]["response"]

    fake_upstream.fail("bad_usage", mode="negative")
    usage = openai_responses(fake_upstream).json()["usage"]
    assert usage["input_tokens"] < 0 and usage["output_tokens"] < 0
