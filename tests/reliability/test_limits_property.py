"""Limits that stay hard on every input: no request makes an API key or an organization
spend past its limit.

The bound: before calling upstream the gateway reserves `pricing.worst_case` of a request
(one token per body byte not media, each picture at the provider's per-item maximum,
TOOLS_OVERHEAD with tools, the cache-write price with any `cache_control`, `n` × the
output cap; module docstring of gateway/pricing.py), and settles at most that. So a key
or an organization never goes past its limit if, for every request, what the provider can
bill is at most that worst case. The fake upstream's bill-most mode
(tests/fake_upstream.most_billed) bills the most a real provider could for what it
received, and hypothesis generates the requests: text in many scripts, 1–6 messages,
pictures, tools, `n`, output caps or none, prompt-caching marks, streamed or not, on the
three wire formats.

- Pure: for every offer of a few models, the provider's most (read back from the fake's
  own answer by the gateway's wire format) costs no more than `worst_case`, also for the
  lowered `max_tokens` the gateway sends when the request set none; and `fitting_output`
  is the largest output count whose worst case fits a budget.
- The fake's answers in bill-most mode, streamed or not, report that most in each
  provider's wire shape.
- Live: concurrent bursts on a fresh key with a small usage limit and a fresh credits
  organization with a small balance: Σ billed ≤ the key's limit, credits never below 0,
  Σ log cost == key usage == ledger debits, each admitted request billed within its worst
  case, and every refusal one of the documented codes, stating the worst case and what
  remains.
- Two inputs found by this test and since bounded: a PDF, video or audio clip behind an
  image_url on Gemini, and tool-call JSON whose numbers the translating wire formats write
  out longer than the client did.
"""

import asyncio
import base64
import math
import re
import time
from collections import Counter
from decimal import Decimal
from itertools import count
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings, target
from hypothesis import strategies as st

from apikeys import services as key_services
from apikeys.models import ApiKey
from core.hashing import sha256_hex
from gateway import catalog
from gateway.chat import _capped
from gateway.pricing import (
    MIN_OUTPUT,
    choices,
    cost_of,
    fitting_output,
    from_nanos,
    output_cap,
    requested_output,
    to_nanos,
    worst_case,
)
from gateway.providers import PROVIDERS
from gateway.routing import Candidate
from gateway.tokens import Usage
from gateway.wire import for_format
from gateway.wire.base import SSEDecoder
from projects import services
from projects.models import Organization
from tests.fake_upstream import answer_reporting, most_billed
from tests.reliability.conftest import eventually, send_all
from usage.models import CreditTransaction, RejectedUsageRecord, UsageLog
from usage.services import credits_add

# --- requests --------------------------------------------------------------------------------------

# Pieces of text a byte-counting bound could get wrong: multi-byte scripts, emoji with ZWJ
# sequences, skin tones and flags, stacked combining marks, RTL and bidi controls, JSON escapes.
SCRIPTS = [
    "Hello, world. ", "你好，世界。", "こんにちは、世界", "안녕하세요 세계 ", "Привет, мир ", "مرحبا بالعالم ",
    "שָׁלוֹם עוֹלָם ", "नमस्ते दुनिया ", "สวัสดีชาวโลก ", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "🇫🇷🇯🇵",
    "e\u0301\u0327\u0308", "Z\u0335\u0321\u031b\u0353a\u0337\u0328", "\u202eevil\u202c", "\u200f\u200d\u2060",
    "𝕳𝖊𝖑𝖑𝖔 ", "ﷺ", "\t\n\u0000\u001f", '"\\/', "\U0010fffd",
]
fragments = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.lists(st.sampled_from(SCRIPTS), max_size=12).map("".join),
)
# Now and then a long one, so the prompt weighs in the cost.
texts = st.one_of(fragments, st.builds(lambda text, times: text * times, fragments, st.integers(1, 300)))
filled = texts.map(lambda text: text if text.strip() else "Hi")  # blank texts are left out upstream
cache_marks = st.sampled_from([None, None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "5m"}])
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,30}", fullmatch=True)

PICTURE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"]
data_urls = st.builds(lambda mime, raw: f"data:{mime};base64,{base64.b64encode(raw).decode()}",
                      st.sampled_from(PICTURE_TYPES), st.binary(max_size=3000))
# Gemini fetches a linked file by the type its extension names (no extension: a 400).
https_urls = st.builds(lambda name, ext: f"https://example.com/{name}{ext}",
                       st.text(st.characters(codec="utf-8", exclude_characters="?#/\\."), max_size=30),
                       st.sampled_from([".png", ".jpg", ".jpeg", ".webp", ".png?size=large"]))


def _marked(part: dict, mark: dict | None) -> dict:
    return {**part, "cache_control": mark} if mark else part


text_parts = st.builds(lambda text, mark: _marked({"type": "text", "text": text}, mark), texts, cache_marks)
image_parts = st.builds(
    lambda url, detail, mark: _marked({"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}}, mark),
    st.one_of(data_urls, https_urls), st.sampled_from([None, "low", "high", "auto"]), cache_marks)


# Tool calls and their results: JSON as a client writes it (orjson's, which the translating
# formats write back the same; numbers written shorter are test_..._numbers_written_short).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False) | fragments,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
as_json = json_values.map(lambda value: orjson.dumps(value).decode())


@st.composite
def tool_round(draw) -> list[dict]:
    """An assistant turn calling 1–2 tools, and each tool's answer."""
    calls = [{"id": f"call_{i}_{draw(names)}", "type": "function",
              "function": {"name": draw(names), "arguments": orjson.dumps(draw(st.dictionaries(names, json_values, max_size=4))).decode()}}
             for i in range(draw(st.integers(1, 2)))]
    answers = [{"role": "tool", "tool_call_id": call["id"], "content": draw(st.one_of(texts, as_json))} for call in calls]
    return [{"role": "assistant", "content": draw(st.one_of(st.none(), texts)), "tool_calls": calls}, *answers]


@st.composite
def messages(draw) -> list[dict]:
    """1–6 messages, maybe a system one first, maybe a round of tool calls, ending with a user
    turn that has text (so every wire format has a turn to send); 0–3 pictures in the user
    turns."""
    total = draw(st.integers(1, 6))
    roles = [draw(st.sampled_from(["system", "developer", "user"]))] if total > 1 else []
    roles += [draw(st.sampled_from(["user", "assistant", "system"])) for _ in range(total - len(roles) - 1)] + ["user"]
    result = []
    for role in roles:
        if draw(st.booleans()):
            content: Any = draw(texts)
        else:
            content = draw(st.lists(text_parts, min_size=1, max_size=3))
        result.append(_marked({"role": role, "content": content}, draw(cache_marks)))
    last = result[-1]
    if isinstance(last["content"], str):
        last["content"] = last["content"] or draw(filled)
    else:
        last["content"].append({"type": "text", "text": draw(filled)})
    if draw(st.booleans()):
        result[-1:-1] = draw(tool_round())
    users = [m for m in result if m["role"] == "user"]
    for image in draw(st.lists(image_parts, max_size=3)):
        holder = draw(st.sampled_from(users))
        if isinstance(holder["content"], str):
            holder["content"] = [{"type": "text", "text": holder["content"]}] if holder["content"] else []
        holder["content"].append(image)
    return result


leaf_schemas = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean"])},
    optional={"description": texts, "enum": st.lists(fragments, min_size=1, max_size=4)})
schemas = st.recursive(
    leaf_schemas,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("array"), "items": inner}),
        st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(names, inner, max_size=4)}),
    ),
    max_leaves=8,
)


@st.composite
def tools(draw) -> list[dict]:
    result = []
    for _ in range(draw(st.integers(1, 3))):
        function: dict[str, Any] = {"name": draw(names)}
        if draw(st.booleans()):
            function["description"] = draw(texts)
        function["parameters"] = {"type": "object", "properties": draw(st.dictionaries(names, schemas, max_size=4))}
        result.append(_marked({"type": "function", "function": function}, draw(cache_marks)))
    return result


def _keep_four_marks(node: Any, left: list[int]) -> None:
    """Anthropic refuses a fifth cache_control breakpoint (a 400, not a limit): keep four."""
    if isinstance(node, list):
        for item in node:
            _keep_four_marks(item, left)
    elif isinstance(node, dict):
        if "cache_control" in node:
            if left[0] > 0:
                left[0] -= 1
            else:
                del node["cache_control"]
        for value in node.values():
            _keep_four_marks(value, left)


def _offers(model: str) -> list[catalog.Offer]:
    """The offers a model id routes to: the pinned provider's, or every provider's."""
    provider, slash, name = model.partition("/")
    if slash and provider in PROVIDERS:
        return [offer] if (offer := catalog.resolve(provider, name)) else []
    return list(catalog.offers_of(model))


def _serving(body: dict) -> list[catalog.Offer]:
    """The offers that may serve the request: those whose provider answers its `n` choices."""
    return [o for o in _offers(body["model"]) if choices(body) <= PROVIDERS[o.provider].max_choices]


@st.composite
def chat_requests(draw, model_ids: list[str]) -> dict:
    """An OpenAI chat completion request for one of the models, with or without tools, `n`,
    a JSON answer format, an output cap (max_tokens or max_completion_tokens, 1..the
    model's maximum), streaming."""
    model = draw(st.sampled_from(model_ids))
    body: dict[str, Any] = {"model": model, "messages": draw(messages())}
    if draw(st.booleans()):
        body["tools"] = draw(tools())
    if draw(st.booleans()) and all(o.provider != "anthropic" for o in _offers(model)):  # Claude refuses JSON mode
        body["response_format"] = draw(st.one_of(
            st.just({"type": "json_object"}),
            st.builds(lambda name, schema: {"type": "json_schema", "json_schema": {"name": name, "schema": schema}},
                      names, schemas)))
    if draw(st.booleans()):  # as many choices as the model's providers answer (more is a 400 naming n)
        body["n"] = draw(st.integers(1, min(4, max(PROVIDERS[o.provider].max_choices for o in _offers(model)))))
    if draw(st.booleans()):
        maximum = catalog.max_output_of(model)
        # Small caps as often as any: requests a small limit admits, several at once.
        cap = draw(st.one_of(st.integers(1, 1_000), st.integers(1, maximum)))
        body[draw(st.sampled_from(["max_tokens", "max_completion_tokens"]))] = cap
    if draw(st.booleans()):
        body["stream"] = True
        if draw(st.booleans()):
            body["stream_options"] = {"include_usage": True}
    _keep_four_marks([body.get("tools"), body["messages"]], [4])
    return body


# --- what the provider bills, read back as the gateway reads it ------------------------------------


def wire_of(offer: catalog.Offer):
    return for_format(PROVIDERS[offer.provider].wire_format)


def upstream_body(offer: catalog.Offer, body: dict, stream: bool) -> dict:
    """The request the provider gets for `body` (gateway.wire's translation)."""
    call = wire_of(offer).build_call(body=body, upstream_model=offer.upstream_model, base_url="http://fake",
                                     token="t", stream=stream)
    return orjson.loads(call.body)


def billed_usage(offer: catalog.Offer, body: dict, stream: bool = False) -> Usage:
    """The usage the gateway reads from the fake's bill-most answer to this request."""
    wire = wire_of(offer)
    most = most_billed(wire.name, offer.provider, offer.upstream_model, upstream_body(offer, body, stream))
    answer = answer_reporting(wire.name, offer.upstream_model, most)
    return wire.parse_response(answer, model=offer.model, completion_id="x", created=0)[1]


PURE_MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "claude-3-5-haiku", "gemini-2.5-flash", "deepseek-chat"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=chat_requests(PURE_MODELS), lowered=st.integers(0, 2**32))
def test_no_offer_bills_more_than_the_worst_case_the_gateway_reserves(body, lowered):
    raw = orjson.dumps(body)
    stream = bool(body.get("stream"))
    for offer in _serving(body):
        for credits in (False, True):
            bound = worst_case(offer, body, len(raw), paid_with_credits=credits)
            usage = billed_usage(offer, body, stream)
            billed = cost_of(offer, usage, paid_with_credits=credits)
            if not credits and bound.prompt_tokens < (offer.context_length * 11 // 10 or math.inf):
                # Steers the search towards prompts the bound fits most tightly (below the
                # context length, where both are cut to the same figure).
                target(usage.prompt_tokens - bound.prompt_tokens, label=f"prompt over its bound on {offer.provider}")
            assert billed.nanos <= bound.cost.nanos, (
                f"{offer.provider}/{offer.model}: billed {usage} = ${billed.total} > worst case "
                f"${from_nanos(bound.cost.nanos)} ({bound.prompt_tokens} prompt, {bound.choices} × {bound.output_tokens})")
            if requested_output(body) is not None or bound.output_tokens < MIN_OUTPUT:
                continue
            # No cap asked: the gateway may send the most that fits, reserving that much output.
            fit = MIN_OUTPUT + lowered % (bound.output_tokens - MIN_OUTPUT + 1)
            candidate = Candidate(offer, "t", "http://fake", paid_with_credits=credits)
            sent = _capped(body, candidate, fit)
            lowered_bound = worst_case(offer, body, len(raw), paid_with_credits=credits, output_tokens=fit)
            usage = billed_usage(offer, sent, stream)
            billed = cost_of(offer, usage, paid_with_credits=credits)
            assert billed.nanos <= lowered_bound.cost.nanos, (
                f"{offer.provider}/{offer.model} lowered to {fit}: billed {usage} = ${billed.total} > "
                f"${from_nanos(lowered_bound.cost.nanos)}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=chat_requests(PURE_MODELS), share=st.fractions(0, 2), credits=st.booleans())
def test_fitting_output_is_the_largest_output_whose_worst_case_fits_the_budget(body, share, credits):
    raw = orjson.dumps(body)
    for offer in _serving(body):
        def cost(tokens: int, offer: catalog.Offer = offer) -> int:
            return worst_case(offer, body, len(raw), paid_with_credits=credits, output_tokens=tokens).cost.nanos

        cap = output_cap(offer, body)
        budget = int(cost(cap) * share)
        fit = fitting_output(offer, body, len(raw), budget, paid_with_credits=credits)
        assert 0 <= fit <= cap
        if cost(0) > budget:
            assert fit == 0
            continue
        assert cost(fit) <= budget, (offer.provider, fit, cost(fit), budget)
        assert fit == cap or cost(fit + 1) > budget, (offer.provider, fit, cap, cost(fit + 1), budget)


# Gemini reads what an image_url links to by its type: a PDF or a video bills per page or
# second, up to the whole context, where the bound counts one picture. A known gap: the
# property fails here (hypothesis' smallest case: one https URL ending in .pdf).
NOT_PICTURES = ["application/pdf", "video/mp4", "audio/mpeg"]
non_picture_urls = st.one_of(
    st.builds(lambda ext: f"https://example.com/file{ext}", st.sampled_from([".pdf", ".mp4", ".mov", ".mp3", ".wav"])),
    st.builds(lambda mime, raw: f"data:{mime};base64,{base64.b64encode(raw).decode()}",
              st.sampled_from(NOT_PICTURES), st.binary(max_size=300)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(url=non_picture_urls, text=filled)
def test_a_document_or_video_behind_an_image_url_stays_within_the_worst_case_on_gemini(url, text):
    body = {"model": "gemini-2.5-flash", "max_tokens": 16,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]}
    offer = catalog.resolve("google-ai-studio", "gemini-2.5-flash")
    bound = worst_case(offer, body, len(orjson.dumps(body)), paid_with_credits=False)
    usage = billed_usage(offer, body)
    assert cost_of(offer, usage, paid_with_credits=False).nanos <= bound.cost.nanos, (usage, bound)


# Anthropic and Gemini take tool arguments and results as JSON objects, which the gateway
# parses and writes again: a number the client wrote short ("1e15", 4 bytes) goes up as
# "1000000000000000.0" (18), which Gemini's tokenizer reads digit by digit: the prompt
# outgrows one token per byte of the client's body (pricing counts the rewritten length).
short_numbers = st.lists(st.sampled_from(["1", "-7", "2.5", "1E9", "1e15"]), min_size=1, max_size=300)
repeated_numbers = st.builds(lambda number, times: [number] * times, st.sampled_from(["1", "2.5", "1E9", "1e15"]),
                             st.integers(1, 300))


@pytest.mark.parametrize("offer", [catalog.resolve("anthropic", "claude-sonnet-4-5"),
                                   catalog.resolve("google-ai-studio", "gemini-2.5-flash")], ids=lambda o: o.provider)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numbers=st.one_of(short_numbers, repeated_numbers))
def test_tool_calls_stay_within_the_worst_case_with_numbers_written_short(offer, numbers):
    values = "[" + ",".join(numbers) + "]"
    body = {"model": offer.model, "max_tokens": 16, "messages": [
        {"role": "user", "content": "Add these up."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": f'{{"values":{values}}}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": values},
    ]}
    bound = worst_case(offer, body, len(orjson.dumps(body)), paid_with_credits=False)
    usage = billed_usage(offer, body)
    assert cost_of(offer, usage, paid_with_credits=False).nanos <= bound.cost.nanos, (usage, bound)


# --- the fake's answers in bill-most mode --------------------------------------------------------

SHAPE_OFFERS = [catalog.resolve("openai", "gpt-4o-mini"), catalog.resolve("anthropic", "claude-sonnet-4-5"),
                catalog.resolve("google-ai-studio", "gemini-2.5-flash")]
SHAPE_BODY = {
    "model": "any", "n": 2, "max_tokens": 321,
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief. 你好", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "What is in this picture? 👩🏽‍💻"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
    ],
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}],
}


def _read_stream(wire, raw: bytes) -> Usage | None:
    translator = wire.stream_translator(model="m", completion_id="x", created=0, include_usage=True)
    decoder = SSEDecoder()
    for event, data in decoder.feed(raw) + decoder.close():
        translator.feed(event, data)
    assert translator.state.finish_reason is not None
    return translator.state.usage


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("offer", SHAPE_OFFERS, ids=lambda o: o.provider)
def test_the_fakes_bill_most_answers_report_the_most_in_each_providers_wire_shape(offer, stream, fake_upstream):
    fake_upstream.bill_most = True
    wire = wire_of(offer)
    body = {**SHAPE_BODY, "stream": stream}
    if PROVIDERS[offer.provider].max_choices < 2:
        del body["n"]  # Claude answers one choice: n=2 is a 400
    call = wire.build_call(body=body, upstream_model=offer.upstream_model,
                           base_url=fake_upstream.base_url(offer.provider, wire.name), token="t", stream=stream)
    response = httpx.post(call.url, content=call.body, headers=call.headers, timeout=10)
    assert response.status_code == 200, response.text
    received = fake_upstream.calls[-1]
    most = most_billed(wire.name, offer.provider, offer.upstream_model, received.body)
    if stream:
        usage = _read_stream(wire, response.content)
    else:
        usage = wire.parse_response(response.json(), model="m", completion_id="x", created=0)[1]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cache_write_tokens) == (
        most.prompt_tokens, most.completion_tokens, most.cache_write_tokens)
    # What the request carries: a picture at the provider's maximum, its tool, its output cap.
    assert most.prompt_tokens > 1_000
    config = received.body.get("generationConfig") or {}
    asked = {"openai": 2, "google": config.get("candidateCount", 1)}.get(wire.name, 1)  # n as the provider got it
    assert most.completion_tokens == 321 * asked
    assert most.cache_write_tokens == (most.prompt_tokens if wire.name == "anthropic" else 0)
    assert usage == billed_usage(offer, body, stream)


# --- live: bursts on small limits ------------------------------------------------------------------

LIVE_MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-sonnet-4-5", "google-ai-studio/gemini-2.5-flash"]
# Amounts as the gateway writes them: str(Decimal), so below $0.000001 in exponent form ("3.25E-7").
AMOUNT = r"[0-9.]+(?:E-?[0-9]+)?"
REFUSAL = re.compile(
    rf"This request could cost up to \$(?P<worst>{AMOUNT}) \((?P<prompt>\d+) prompt tokens and (?P<choices>\d+) × "
    rf"(?P<output>\d+) output tokens at most\); (?:the organization's credits have|this API key has) "
    rf"\$(?P<left>{AMOUNT}) left")
LIMIT_REACHED = "This API key has reached its usage limit."
_serial = count()


def _offer(model: str) -> catalog.Offer:
    (offer,) = _offers(model)  # pinned: one provider
    return offer


def _bound(raw: bytes, credits: bool, output: int | None = None):
    body = orjson.loads(raw)
    return worst_case(_offer(body["model"]), body, len(raw), paid_with_credits=credits, output_tokens=output)


def _check_refusal(answer, raw: bytes, credits: bool, limit_nanos: int) -> None:
    """A refusal is one of the documented ones; a 402 states the worst case (the request's
    own, as gateway.pricing computes it) and what remains, which is less."""
    error = answer.json()["error"]
    documented = {(402, "insufficient_credits")} if credits else {(402, "usage_limit_insufficient"), (401, "usage_limit_reached")}
    assert (answer.status, error["code"]) in documented, (answer.status, error)
    if answer.status == 401:
        assert error["message"] == LIMIT_REACHED
        return
    stated = REFUSAL.search(error["message"])
    assert stated, error["message"]
    bound = _bound(raw, credits)
    assert Decimal(stated["worst"]) == from_nanos(bound.cost.nanos), (error["message"], bound)
    assert (int(stated["prompt"]), int(stated["choices"]), int(stated["output"])) == (
        bound.prompt_tokens, bound.choices, bound.output_tokens)
    left = to_nanos(Decimal(stated["left"]))
    assert 0 <= left <= limit_nanos and left < bound.cost.nanos, error["message"]


class Live:
    """What the burst test takes from its fixtures. Its repr is short: hypothesis prints the
    arguments of a failing case, and the gateway's would be its whole environment."""

    def __init__(self, url: str, owner: Any, project: Any, fake: Any) -> None:
        self.url, self.owner, self.fake = url, owner, fake
        self.project = project  # on its organization's own provider keys: the key-limited keys' project

    def __repr__(self) -> str:
        return "Live(...)"


@pytest.fixture
def live(gateway, owner, org, project, fake_upstream) -> Live:
    for provider in ("openai", "anthropic", "google-ai-studio"):
        key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)
    services.project_update(project=project, mode="api-keys")
    return Live(gateway.url, owner, project, fake_upstream)


def _credits_organization(owner, balance: Decimal) -> tuple[Organization, str]:
    """A fresh organization on credits with `balance`, and a key of its own (no limit)."""
    organization = services.organization_create(user=owner.user, name=f"Credits {next(_serial)}")
    project = services.project_create(organization=organization, name="Credits", mode="credits")
    credits_add(organization=organization, amount=balance)
    token, _ = key_services.api_key_create(project=project)
    return organization, token


def _rows(request_ids: list[str]) -> list[UsageLog]:
    return list(UsageLog.objects.filter(request_id__in=request_ids))


def _stored(request_ids: list[str], timeout: float = 30) -> list[UsageLog]:
    """Every request's usage row, once the worker stored them all."""
    found = eventually(lambda: len(_rows(request_ids)) >= len(request_ids), timeout=timeout, interval=0.05)
    rows = _rows(request_ids)
    assert found, (f"{len(rows)} of {len(request_ids)} usage rows stored; "
                   f"{RejectedUsageRecord.objects.count()} set aside")
    assert Counter(r.request_id for r in rows) == Counter(request_ids), "a request has more than one row"
    return rows


def _debits(organization: Organization) -> Decimal:
    entries = CreditTransaction.objects.filter(organization=organization, kind=CreditTransaction.Kind.USAGE)
    return -sum((t.amount for t in entries), Decimal(0))


def _check_admitted(answer, raw: bytes, log: UsageLog, credits: bool) -> None:
    """A whole answer, billed no more than its worst case (at the output the gateway sent)."""
    assert answer.completed, answer.text[-500:]
    lowered = answer.headers.get("x-gateway-max-tokens")
    body = orjson.loads(raw)
    if lowered is not None:  # only a request without its own cap is lowered, and never below 16
        assert requested_output(body) is None and MIN_OUTPUT <= int(lowered) <= _offer(body["model"]).max_output
    bound = _bound(raw, credits, int(lowered) if lowered else None)
    assert to_nanos(log.cost) <= bound.cost.nanos, (log.cost, from_nanos(bound.cost.nanos), log.prompt_tokens,
                                                    log.completion_tokens, bound)


# No explain phase: it replays the failing burst hundreds of times.
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(
    variants=st.lists(chat_requests(LIVE_MODELS), min_size=1, max_size=3),
    copies=st.integers(4, 10),
    key_limit=st.integers(10_000_000, 500_000_000),  # $0.01–$0.50, to the nano-dollar
    balance=st.integers(10_000_000, 500_000_000),
)
def test_no_burst_of_any_requests_spends_past_a_keys_limit_or_an_organizations_credits(
    variants, copies, key_limit, balance, live
):
    fake_upstream = live.fake
    limited, _ = key_services.api_key_create(project=live.project, usage_limit=from_nanos(key_limit))
    organization, on_credits = _credits_organization(live.owner, from_nanos(balance))
    fake_upstream.reset()
    fake_upstream.bill_most = True
    fake_upstream.gate()  # every request reserves before any settles
    example = next(_serial)
    bodies = [orjson.dumps(v) for v in variants]
    note(f"key limit ${from_nanos(key_limit)}, credits ${from_nanos(balance)}, {copies} copies of {bodies}")
    burst = []  # (url, token, request id, raw), copies of each variant for both accounts
    for i in range(copies * len(bodies)):
        for token, name in ((limited, "key"), (on_credits, "org")):
            burst.append((live.url, token, f"prop-{example}-{name}-{i:02d}", bodies[i % len(bodies)]))

    started = time.monotonic()
    answers = asyncio.run(send_all(burst, fake=fake_upstream))
    assert time.monotonic() - started < 25, "the burst took too long"

    rows = {r.request_id: r for r in _stored([r[2] for r in burst])}
    by_account: dict[bool, Decimal] = {False: Decimal(0), True: Decimal(0)}
    for (_, token, request_id, raw), answer in zip(burst, answers, strict=True):
        credits = token == on_credits
        log = rows[request_id]
        if answer.status == 200:
            _check_admitted(answer, raw, log, credits)
        else:
            _check_refusal(answer, raw, credits, balance if credits else key_limit)
            assert log.cost == 0
        by_account[credits] += log.cost
    assert len(fake_upstream.calls) == sum(a.status == 200 for a in answers)

    key = ApiKey.objects.get(token_hash=sha256_hex(limited))
    assert key.usage == by_account[False] <= key.usage_limit == from_nanos(key_limit)
    organization = Organization.objects.get(pk=organization.pk)
    billed = by_account[True]
    assert organization.credits >= 0
    assert organization.credits == from_nanos(balance) - billed
    assert _debits(organization) == billed == organization.credits_spent
    assert ApiKey.objects.get(token_hash=sha256_hex(on_credits)).usage == billed
