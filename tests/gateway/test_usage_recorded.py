"""Usage figures of each wire format, read from provider answers recorded as the providers
document them, with their prompt-cache and reasoning fields.

Each answer (whole, or as the SSE bytes of a stream) goes through the format's own parsing
entry point, and two things are checked: the `Usage` the gateway records and bills
(`prompt_tokens` is every input token, cache reads and cache writes included;
`completion_tokens` every output token, reasoning included) and the OpenAI usage object the
client receives."""

import orjson
import pytest

from gateway.tokens import Usage
from gateway.wire import anthropic, google, openai
from gateway.wire.base import SSEDecoder, StreamTranslator, WireFormat

IDS = {"model": "recorded/model", "completion_id": "chatcmpl-recorded", "created": 1750000000}


def parsed(wire: WireFormat, answer: dict) -> tuple[dict, Usage]:
    """The completion the client receives and the usage the gateway records, for a whole answer."""
    completion, usage, _ = wire.parse_response(orjson.loads(orjson.dumps(answer)), **IDS)  # a fresh copy: parsing may edit it
    return completion, usage


def streamed(wire: WireFormat, raw: str, include_usage: bool = True) -> tuple[StreamTranslator, list, list]:
    """A recorded stream, fed as the gateway reads it (bytes → SSE events → the translator)."""
    decoder = SSEDecoder()
    events = decoder.feed(raw.encode()) + decoder.close()
    translator = wire.stream_translator(include_usage=include_usage, **IDS)
    items = [item for event, data in events for item in translator.feed(event, data)]
    return translator, items, translator.finish()


def sse(*payloads: dict, named: bool = False) -> str:
    """SSE text as a provider sends it: one `data:` line per event (after an `event:` line
    naming its type, the way Anthropic does, when `named`)."""
    lines = []
    for payload in payloads:
        if named:
            lines.append(f"event: {payload['type']}")
        lines.append(f"data: {orjson.dumps(payload).decode()}")
        lines.append("")
    return "\n".join(lines) + "\n"


def openai_usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict:
    """What the client must find in the usage object it receives."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def assert_whole(usage: Usage) -> None:
    """The parts are parts of the totals, as gateway/tokens.py defines them."""
    assert usage.cached_tokens + usage.cache_write_tokens <= usage.prompt_tokens
    assert usage.reasoning_tokens <= usage.completion_tokens


# --- OpenAI ------------------------------------------------------------------------------------

# OpenAI's chat completion object (https://platform.openai.com/docs/api-reference/chat/object):
# a reasoning model (https://platform.openai.com/docs/guides/reasoning: reasoning tokens are
# billed as output and counted in completion_tokens) answering a prompt whose first 1,920 tokens
# were a prompt-cache hit (https://platform.openai.com/docs/guides/prompt-caching: cached_tokens
# is part of prompt_tokens).
OPENAI_COMPLETION = {
    "id": "chatcmpl-BfXrS5c0wWm6Mn3Zc1wJ6cnbUq2VY",
    "object": "chat.completion",
    "created": 1749137202,
    "model": "o4-mini-2025-04-16",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The contract renews every year on March 1.", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 192,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": None,
}


def test_an_openai_completion_records_its_cache_hit_and_reasoning_as_parts_of_the_totals():
    completion, usage = parsed(openai.FORMAT, OPENAI_COMPLETION)
    assert usage == Usage(prompt_tokens=2006, completion_tokens=300, cached_tokens=1920, reasoning_tokens=192)
    assert_whole(usage)
    # The client gets OpenAI's own figures back, its audio and prediction counts included.
    assert completion["usage"] == OPENAI_COMPLETION["usage"]


def openai_chunk(choices: list, usage: dict | None = None) -> dict:
    return {
        "id": "chatcmpl-BfXsC1mC8tQkYyNPr5tRxvTUn4Pyb",
        "object": "chat.completion.chunk",
        "created": 1749137250,
        "model": "o4-mini-2025-04-16",
        "service_tier": "default",
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
    }


def delta(content: dict, finish_reason: str | None = None) -> list:
    return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}]


# OpenAI's chat completion chunks (https://platform.openai.com/docs/api-reference/chat-streaming)
# under stream_options.include_usage, which the gateway always asks for
# (https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options): every
# chunk carries "usage": null, then one last chunk with no choices carries the whole request's
# usage, before [DONE].
OPENAI_USAGE_CHUNK = openai_chunk(
    [],
    {
        "prompt_tokens": 1309,
        "completion_tokens": 139,
        "total_tokens": 1448,
        "prompt_tokens_details": {"cached_tokens": 1152, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 128,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
)
OPENAI_STREAM = (
    sse(
        openai_chunk(delta({"role": "assistant", "content": "", "refusal": None})),
        openai_chunk(delta({"content": "March"})),
        openai_chunk(delta({"content": " 1."})),
        openai_chunk(delta({}, "stop")),
        OPENAI_USAGE_CHUNK,
    )
    + "data: [DONE]\n\n"
)


def test_an_openai_stream_records_the_usage_of_its_last_chunk_and_passes_that_chunk_on_untouched():
    translator, items, tail = streamed(openai.FORMAT, OPENAI_STREAM)
    assert translator.state.usage == Usage(prompt_tokens=1309, completion_tokens=139, cached_tokens=1152, reasoning_tokens=128)
    assert_whole(translator.state.usage)
    # The client asked for usage: it gets OpenAI's own usage chunk (parsed, for the gateway to
    # add the request's cost to it).
    assert items[-1] == OPENAI_USAGE_CHUNK
    assert tail == []


def test_an_openai_stream_withholds_the_usage_chunk_the_client_did_not_ask_for_but_still_records_it():
    translator, items, _ = streamed(openai.FORMAT, OPENAI_STREAM, include_usage=False)
    assert all(orjson.loads(item)["choices"] for item in items)
    assert translator.state.usage == Usage(prompt_tokens=1309, completion_tokens=139, cached_tokens=1152, reasoning_tokens=128)


# --- DeepSeek (OpenAI-compatible) ----------------------------------------------------------------

# DeepSeek's chat completion (https://api-docs.deepseek.com/api/create-chat-completion) from
# deepseek-reasoner: context caching reports cache hits as prompt_cache_hit_tokens, with
# prompt_tokens = hit + miss (https://api-docs.deepseek.com/guides/kv_cache); the chain of
# thought is counted in completion_tokens and again in completion_tokens_details.reasoning_tokens
# (https://api-docs.deepseek.com/guides/reasoning_model). The live API also repeats the hits as
# OpenAI's prompt_tokens_details.cached_tokens; its reference leaves that out.
DEEPSEEK_COMPLETION = {
    "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
    "object": "chat.completion",
    "created": 1738218418,
    "model": "deepseek-reasoner",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "9.8 is greater than 9.11.",
                "reasoning_content": "Compare the decimals: 9.80 against 9.11; 80 hundredths is more than 11.",
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1430,
        "completion_tokens": 612,
        "total_tokens": 2042,
        "prompt_tokens_details": {"cached_tokens": 1408},
        "completion_tokens_details": {"reasoning_tokens": 587},
        "prompt_cache_hit_tokens": 1408,
        "prompt_cache_miss_tokens": 22,
    },
    "system_fingerprint": "fp_7e73fd9a08",
}
DEEPSEEK_AS_DOCUMENTED = {
    **DEEPSEEK_COMPLETION,
    "usage": {key: value for key, value in DEEPSEEK_COMPLETION["usage"].items() if key != "prompt_tokens_details"},
}


@pytest.mark.parametrize("answer", [DEEPSEEK_COMPLETION, DEEPSEEK_AS_DOCUMENTED], ids=["as-sent", "as-documented"])
def test_a_deepseek_completion_records_its_cache_hits_from_either_field(answer):
    completion, usage = parsed(openai.FORMAT, answer)
    assert usage == Usage(prompt_tokens=1430, completion_tokens=612, cached_tokens=1408, reasoning_tokens=587)
    assert_whole(usage)
    assert {key: completion["usage"][key] for key in openai_usage(0, 0, 0, 0)} == openai_usage(1430, 612, 1408, 587)
    # DeepSeek's own fields still reach the client next to OpenAI's.
    assert (completion["usage"]["prompt_cache_hit_tokens"], completion["usage"]["prompt_cache_miss_tokens"]) == (1408, 22)


# --- xAI (OpenAI-compatible) ---------------------------------------------------------------------

# xAI's chat completion from a Grok reasoning model, as Google Cloud's Grok reasoning guide
# records it (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/grok/capabilities/reasoning:
# "The reasoning token count is outputted in the reasoning_tokens field, separated from the
# completion_tokens"; xAI's own guide, https://docs.x.ai/docs/guides/reasoning, reports them the
# same way). Unlike OpenAI's, completion_tokens leaves reasoning out:
# total_tokens = 663 + 50 + 124 = 837.
XAI_COMPLETION = {
    "id": "knTMaJC0EJfM5OMP7I3xkAk",
    "object": "chat.completion",
    "created": 1775523905,
    "model": "grok-4-1-fast-reasoning",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "I am Grok, an AI assistant built by xAI..."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 663,
        "completion_tokens": 50,
        "total_tokens": 837,
        "prompt_tokens_details": {"text_tokens": 663, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 654},
        "completion_tokens_details": {
            "reasoning_tokens": 124,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "num_sources_used": 0,
        "cost_in_usd_ticks": 0,
    },
    "system_fingerprint": "fp_39c5j0a324",
}


# xAI counts reasoning apart from completion_tokens (total = prompt + completion + reasoning)
# and bills it as output: it must be in completion_tokens, so in the cost and the limits.
def test_an_xai_reasoning_completion_records_its_reasoning_tokens_as_output():
    completion, usage = parsed(openai.FORMAT, XAI_COMPLETION)
    assert usage == Usage(prompt_tokens=663, completion_tokens=174, cached_tokens=654, reasoning_tokens=124)
    assert completion["usage"]["total_tokens"] == XAI_COMPLETION["usage"]["total_tokens"]


# --- Anthropic ---------------------------------------------------------------------------------

# The usage of a Messages API answer (https://docs.anthropic.com/en/api/messages) whose system
# prompt was read from the prompt cache and whose latest turns were written to it, 100 tokens
# with the 1-hour TTL and 456 with the 5-minute one. As prompt caching documents it
# (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching, "Tracking cache
# performance" and "1-hour cache duration"): input_tokens counts only the tokens neither read
# nor written, and cache_creation_input_tokens is the sum of cache_creation's two figures.
# Extended thinking is billed inside output_tokens, with no figure of its own.
ANTHROPIC_USAGE = {
    "input_tokens": 21,
    "cache_creation_input_tokens": 556,
    "cache_read_input_tokens": 188086,
    "cache_creation": {"ephemeral_5m_input_tokens": 456, "ephemeral_1h_input_tokens": 100},
    "output_tokens": 393,
    "service_tier": "standard",
}
ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants the renewal terms; section 12 covers them.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."},
        {"type": "text", "text": "The agreement renews every year on March 1 unless either party gives notice."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": ANTHROPIC_USAGE,
}
# Every input token: the 21 uncached ones, the 556 written and the 188,086 read.
ANTHROPIC_RECORDED = Usage(prompt_tokens=188663, completion_tokens=393, cached_tokens=188086, cache_write_tokens=556)


def test_an_anthropic_message_records_cache_reads_and_writes_inside_the_prompt_tokens():
    completion, usage = parsed(anthropic.FORMAT, ANTHROPIC_MESSAGE)
    assert usage == ANTHROPIC_RECORDED
    assert_whole(usage)
    # Both TTLs' writes are cache writes. (Anthropic does not count thinking apart, so no
    # reasoning tokens are reported, though output_tokens holds them.)
    assert usage.cache_write_tokens == sum(ANTHROPIC_USAGE["cache_creation"].values())
    assert completion["usage"] == openai_usage(188663, 393, 188086, 0)


def anthropic_stream(final_usage: dict) -> str:
    """An SSE stream as Anthropic's streaming guide shows one
    (https://docs.anthropic.com/en/docs/build-with-claude/streaming): message_start carries the
    input counts (cache fields included) and an output of 1; message_delta the final counts,
    which are cumulative."""
    start = {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None, "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}}
    return sse(
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Section 12 covers renewal."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrk..."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "It renews every year on March 1."}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": final_usage},
        {"type": "message_stop"},
        named=True,
    )


@pytest.mark.parametrize(
    "final_usage",
    [
        # Newer streams repeat the cumulative input counts in message_delta, as the guide's
        # web-search example shows.
        {"input_tokens": 21, "cache_creation_input_tokens": 556, "cache_read_input_tokens": 188086, "output_tokens": 393},
        # The guide's basic example: output only.
        {"output_tokens": 393},
    ],
    ids=["cumulative-input-repeated", "output-only"],
)
def test_an_anthropic_stream_records_the_cache_figures_of_message_start_and_the_output_of_message_delta(final_usage):
    translator, _, tail = streamed(anthropic.FORMAT, anthropic_stream(final_usage))
    assert translator.state.usage == ANTHROPIC_RECORDED
    assert translator.state.finish_reason == "stop"
    [usage_chunk] = tail
    assert (usage_chunk["choices"], usage_chunk["usage"]) == ([], openai_usage(188663, 393, 188086, 0))


# --- Google AI Studio (Gemini) -------------------------------------------------------------------

# Gemini's GenerateContentResponse (https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse)
# from a thinking model (https://ai.google.dev/gemini-api/docs/thinking) whose prompt hit the
# implicit cache (https://ai.google.dev/gemini-api/docs/caching). In UsageMetadata
# (https://ai.google.dev/api/generate-content#UsageMetadata) promptTokenCount includes
# cachedContentTokenCount, and thoughtsTokenCount is apart from candidatesTokenCount:
# totalTokenCount = 10543 + 215 + 1124 = 11882.
GEMINI_USAGE = {
    "promptTokenCount": 10543,
    "candidatesTokenCount": 215,
    "totalTokenCount": 11882,
    "cachedContentTokenCount": 8192,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10543}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 8192}],
    "thoughtsTokenCount": 1124,
}
GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {"parts": [{"text": "The agreement renews every year on March 1."}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": GEMINI_USAGE,
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mW9BaKe0L4-xz7IP3K6ZuQk",
}
GEMINI_RECORDED = Usage(prompt_tokens=10543, completion_tokens=1339, cached_tokens=8192, reasoning_tokens=1124)


def test_a_gemini_answer_records_its_cache_hit_and_counts_its_thoughts_as_output():
    completion, usage = parsed(google.FORMAT, GEMINI_ANSWER)
    assert usage == GEMINI_RECORDED
    assert_whole(usage)
    assert usage.total_tokens == GEMINI_USAGE["totalTokenCount"]
    assert completion["usage"] == openai_usage(10543, 1339, 8192, 1124)


def gemini_event(text: str, usage: dict, finish: str | None = None) -> dict:
    candidate: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "nX9BaLa3Fo-xz7IP3K6ZuQk"}


# streamGenerateContent?alt=sse (https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent):
# each event is a whole GenerateContentResponse holding the next text, and its usageMetadata
# the running totals: the prompt and the thoughts from the first event, the candidates' count
# growing until the last.
PROMPT_AND_THOUGHTS = {key: value for key, value in GEMINI_USAGE.items() if key != "candidatesTokenCount"}
GEMINI_STREAM = sse(
    gemini_event("The agreement renews", {**PROMPT_AND_THOUGHTS, "totalTokenCount": 11667}),
    gemini_event(" every year", {**GEMINI_USAGE, "candidatesTokenCount": 120, "totalTokenCount": 11787}),
    gemini_event(" on March 1.", GEMINI_USAGE, finish="STOP"),
)


def test_a_gemini_stream_records_the_last_running_totals():
    translator, items, tail = streamed(google.FORMAT, GEMINI_STREAM)
    assert translator.state.usage == GEMINI_RECORDED
    assert "".join(item["choices"][0]["delta"].get("content", "") for item in items) == "The agreement renews every year on March 1."
    [usage_chunk] = tail
    assert (usage_chunk["choices"], usage_chunk["usage"]) == ([], openai_usage(10543, 1339, 8192, 1124))
