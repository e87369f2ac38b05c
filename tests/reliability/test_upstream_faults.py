"""Faults from upstream (issue 7, items 9–11): providers that hang, go silent, rate-limit,
reset connections, or answer with broken or enormous bodies. The gateway answers each with a
well-formed error or a capped answer on time, calls each provider at most once per attempt,
and its process stays up with its sockets and memory bounded.

Timeouts are the live gateway's (tests/gateway/conftest.py): first byte 3 s, idle 2 s.
"""

import asyncio
import time
from collections import Counter

import orjson
import pytest

from apikeys import services as key_services
from apikeys.models import ApiKey
from core.hashing import sha256_hex
from projects import services
from tests.reliability.conftest import Answer, eventually, send, send_all, wait_for_rows
from usage.models import UsageLog
from usage.services import credits_add

FIRST_BYTE_TIMEOUT, IDLE_TIMEOUT = 3, 2
SLACK = 5.0  # seconds: 200 requests scheduled on a busy two-core machine (a stuck call would take the full test timeout)
HI = [{"role": "user", "content": "Hi"}]


def raw(model: str = "gpt-4o-mini", stream: bool = False, **extra) -> bytes:
    return orjson.dumps({"model": model, "messages": HI, **({"stream": True} if stream else {}), **extra})


def well_formed_error(answer: Answer) -> dict:
    """The OpenAI error object of a JSON error answer."""
    assert answer.headers["content-type"].startswith("application/json"), answer.text[:300]
    body = answer.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"] and body["error"]["code"]
    return body["error"]


def well_formed_stream(answer: Answer) -> dict | None:
    """Every event of a stream is JSON; it ends with [DONE] (returns None) or with one error
    event and no [DONE] (returns the error); no chunk claims a finish before an error."""
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream")
    events = answer.events()
    assert events, answer.text[:300]
    if events[-1] == "[DONE]":
        chunks = [orjson.loads(e) for e in events[:-1]]
        assert all("error" not in c for c in chunks)
        return None
    chunks = [orjson.loads(e) for e in events]
    error = chunks[-1].get("error")
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, events[-1][:300]
    assert all(not c.get("choices") or not c["choices"][0].get("finish_reason") for c in chunks[:-1])
    return error


@pytest.fixture
def own_key_token(project, own_openai_key, key_for):
    services.project_update(project=project, mode="api-keys")
    return key_for(project)


@pytest.fixture
def credits_token(org, project, key_for):
    services.project_update(project=project, mode="credits")
    credits_add(organization=org, amount="50")
    return key_for(project)


# --- 9. hangs and silences: on time, and nothing left open ------------------------------------------------


def test_200_hung_and_200_silenced_upstream_calls_end_within_their_timeouts_and_leave_no_socket_open(
    gateway, processes, live_gateway, own_key_token, fake_upstream
):
    """A gateway process of its own, so that its /proc shows only this test's sockets."""
    gw = processes.gateway({**live_gateway.env})
    warm = asyncio.run(send_all([(gw.url, own_key_token, f"warm-{i}", raw()) for i in range(5)]))
    assert {a.status for a in warm} == {200}
    time.sleep(0.5)
    before = gw.open_sockets()

    fake_upstream.fail("hang", provider="openai", times=200)
    hung = asyncio.run(send_all([(gw.url, own_key_token, f"hung-{i}", raw(stream=i % 2 == 1)) for i in range(200)]))
    fake_upstream.fail("hang_mid_stream", provider="openai", after=1, times=200)
    silent = asyncio.run(send_all([(gw.url, own_key_token, f"silent-{i}", raw(stream=True)) for i in range(200)]))

    # Never sent headers: a 504 after the first-byte timeout, not before and not much later.
    assert Counter((a.status, a.code) for a in hung) == {(504, "upstream_timeout"): 200}
    for answer in hung:
        well_formed_error(answer)
    assert FIRST_BYTE_TIMEOUT - 0.5 <= min(a.seconds for a in hung)
    assert max(a.seconds for a in hung) < FIRST_BYTE_TIMEOUT + SLACK
    # Went silent after the first chunk: an SSE error event after the idle timeout.
    assert all(well_formed_stream(a)["code"] == "upstream_timeout" for a in silent)
    assert IDLE_TIMEOUT - 0.5 <= min(a.seconds for a in silent)
    assert max(a.seconds for a in silent) < IDLE_TIMEOUT + SLACK

    # The gateway hung up on every one of the 400 upstream calls...
    assert len(fake_upstream.calls) == 405
    assert eventually(lambda: fake_upstream.in_flight == 0, timeout=5), f"{fake_upstream.in_flight} upstream calls still open"
    assert all(c.disconnected for c in fake_upstream.calls[5:])
    # ...and holds no more sockets than before them (a few of slack for pooled connections).
    assert eventually(lambda: gw.open_sockets() <= before + 5, timeout=5), (before, gw.open_sockets())
    assert gw.alive
    ids = [a.request_id for a in hung + silent]
    assert wait_for_rows(ids) == Counter({rid: 1 for rid in ids})


# --- 10. rate limits and resets --------------------------------------------------------------------------

LLAMA = "llama-3.3-70b-instruct"  # groq first (cheaper), then together-ai


def test_a_429_with_retry_after_falls_back_to_the_next_allowed_provider(gateway, credits_token, fake_upstream):
    fake_upstream.fail("status", provider="groq", status=429, headers={"Retry-After": "7"}, times=2)

    plain = send(gateway.url, credits_token, "rate-limited-plain", raw(LLAMA))
    streamed = send(gateway.url, credits_token, "rate-limited-stream", raw(LLAMA, stream=True))

    assert plain.completed and streamed.completed
    assert plain.headers["x-gateway-provider"] == streamed.headers["x-gateway-provider"] == "together-ai"
    assert [c.provider for c in fake_upstream.calls] == ["groq", "together-ai"] * 2
    assert [c.status for c in fake_upstream.calls] == [429, 200] * 2


def test_a_429_with_no_other_allowed_provider_is_passed_on_with_its_retry_after(
    gateway, project, credits_token, fake_upstream
):
    key = ApiKey.objects.get(token_hash=sha256_hex(credits_token))
    key_services.iam_rule_create(api_key=key, rule_type="allow_providers", rule_value={"providers": ["groq"]})
    fake_upstream.fail("status", provider="groq", status=429, headers={"Retry-After": "7"}, times=None)

    answers = [send(gateway.url, credits_token, f"only-groq-{i}", raw(model, stream=stream))
               for i, (model, stream) in enumerate([(LLAMA, False), (LLAMA, True), (f"groq/{LLAMA}", False)])]

    for answer in answers:
        assert answer.status == 429
        assert well_formed_error(answer)["code"] == "rate_limited"
        assert answer.headers["retry-after"] == "7"
    assert [c.provider for c in fake_upstream.calls] == ["groq"] * 3  # never a provider the rules forbid
    logs = wait_for_rows([a.request_id for a in answers])
    assert set(logs.values()) == {1}
    assert all(log.cost == 0 for log in UsageLog.objects.filter(project=project))


def test_a_connection_reset_after_the_request_was_sent_costs_one_upstream_call_per_attempt(
    gateway, project, credits_token, fake_upstream
):
    # Keep-alive connections to both providers first: a reset on a reused connection is
    # where an HTTP client is tempted to send the request again.
    warm = asyncio.run(send_all([(gateway.url, credits_token, f"warm-{i}", raw(f"{p}/{LLAMA}"))
                                 for i, p in enumerate(["groq", "together-ai"] * 3)]))
    assert {a.status for a in warm} == {200}
    fake_upstream.reset()
    fake_upstream.fail("reset_after_request", provider="groq", times=None)

    fallen_back = asyncio.run(send_all([(gateway.url, credits_token, f"reset-one-{i}", raw(LLAMA, stream=i % 2 == 1))
                                        for i in range(20)]))

    assert all(a.completed and a.headers["x-gateway-provider"] == "together-ai" for a in fallen_back)
    assert Counter(c.provider for c in fake_upstream.calls) == {"groq": 20, "together-ai": 20}

    fake_upstream.reset()
    fake_upstream.fail("reset_after_request", times=None)
    failed = asyncio.run(send_all([(gateway.url, credits_token, f"reset-all-{i}", raw(LLAMA, stream=i % 2 == 1))
                                   for i in range(20)]))

    assert Counter((a.status, a.code) for a in failed) == {(502, "upstream_error"): 20}
    assert Counter(c.provider for c in fake_upstream.calls) == {"groq": 20, "together-ai": 20}
    ids = [a.request_id for a in failed]
    assert wait_for_rows(ids) == Counter({rid: 1 for rid in ids})
    assert all(log.cost == 0 for log in UsageLog.objects.filter(request_id__in=ids))


# --- 11. broken and enormous answers -----------------------------------------------------------------------

WIRE_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku", "google-ai-studio": "gemini-2.5-flash"}
BROKEN = [
    ("invalid_json", {}),
    ("garbage_sse", {}),
    ("error_in_200", {}),
    ("error_in_200", {"after": 2}),
    *[("bad_usage", {"mode": mode}) for mode in ("negative", "missing", "absent", "null", "string")],
]


def test_broken_answers_of_every_wire_format_get_a_well_formed_error_or_a_sane_answer(
    gateway, project, credits_token, fake_upstream
):
    sent: list[Answer] = []
    for provider, model in WIRE_MODELS.items():
        for kind, options in BROKEN:
            for stream in (False, True):
                fake_upstream.fail(kind, provider=provider, **options)
                request_id = f"{provider}-{kind}-{options.get('mode', options.get('after', ''))}-{'s' if stream else 'j'}"
                answer = send(gateway.url, credits_token, request_id, raw(model, stream=stream))
                sent.append(answer)
                case = (provider, kind, options, stream, answer.status, answer.text[:300])
                if kind == "bad_usage":
                    # The answer itself is fine; only its token counts are not.
                    assert answer.completed, case
                    if not stream:
                        usage = answer.json()["usage"]
                        assert all(isinstance(usage[k], int) and usage[k] >= 0
                                   for k in ("prompt_tokens", "completion_tokens", "total_tokens")), case
                elif stream:
                    error = well_formed_stream(answer) if answer.status == 200 else well_formed_error(answer)
                    assert error and error["code"] == "upstream_error", case
                else:
                    assert answer.status == 502, case
                    assert well_formed_error(answer)["code"] == "upstream_error", case
    assert fake_upstream.pending_faults == 0

    ids = [a.request_id for a in sent]
    assert wait_for_rows(ids) == Counter({rid: 1 for rid in ids})  # a bad count never blocks a batch
    for log in UsageLog.objects.filter(request_id__in=ids):
        assert log.prompt_tokens >= 0 and log.completion_tokens >= 0 and log.cost >= 0, log.request_id
    assert eventually(lambda: gateway_healthy(gateway.url))


def gateway_healthy(url: str) -> bool:
    import requests

    return requests.get(f"{url}/healthz", timeout=2).status_code == 200


def test_a_large_answer_under_the_cap_arrives_whole(gateway, credits_token, fake_upstream):
    fake_upstream.fail("huge_stream", provider="openai", size_mb=3, chunk_kb=64, times=2)

    plain = send(gateway.url, credits_token, "large-plain", raw())
    streamed = send(gateway.url, credits_token, "large-stream", raw(stream=True))

    assert plain.completed, plain.text[:300]
    assert len(plain.json()["choices"][0]["message"]["content"]) == 3 * 1024 * 1024
    assert streamed.completed
    content = "".join(c["choices"][0]["delta"].get("content") or ""
                      for c in map(orjson.loads, streamed.events()[:-1]) if c.get("choices"))
    assert len(content) == 3 * 1024 * 1024


CAP = 8 * 1024 * 1024
# Peak memory the gateway process may gain while six 50 MB answers (three whole, three
# streamed) are refused at once. A whole answer is held up to the cap, its pieces and their
# join: 2 × 8 MB each, 48 MB for three (about 47 MB measured). A streamed one is relayed a
# 64 KiB chunk at a time. 100 MB leaves room for the allocator; a gateway that held the
# answers uncapped would need 300 MB for their bodies alone.
MEMORY_BOUND_KB = 100 * 1024


def test_50_mb_answers_are_cut_at_the_cap_with_a_well_formed_error_and_memory_stays_bounded(
    gateway, processes, live_gateway, credits_token, fake_upstream
):
    gw = processes.gateway({**live_gateway.env, "UPSTREAM_MAX_RESPONSE_BYTES": str(CAP)})
    assert send(gw.url, credits_token, "warm", raw()).completed
    rss_before = gw.memory_kb("VmRSS")
    fake_upstream.fail("huge_stream", provider="openai", size_mb=50, chunk_kb=64, times=6)

    answers = asyncio.run(send_all([(gw.url, credits_token, f"huge-{i}", raw(stream=i % 2 == 1)) for i in range(6)],
                                   timeout=60))

    peak = gw.memory_kb("VmHWM")
    streamed = [a for a in answers if a.request_id.endswith(("1", "3", "5"))]
    plain = [a for a in answers if a not in streamed]
    for answer in plain:
        assert answer.status == 502 and "too large" in well_formed_error(answer)["message"]
    for answer in streamed:
        error = well_formed_stream(answer)
        assert error and error["code"] == "upstream_error" and "size limit" in error["message"]
        assert len(answer.text) < CAP * 1.2  # cut near the cap, not relayed whole
    assert gw.alive and gateway_healthy(gw.url)
    assert peak - rss_before < MEMORY_BOUND_KB, f"peak {peak} KiB, {rss_before} KiB before"
    assert send(gw.url, credits_token, "after", raw()).completed
