"""The catalog and its prices: today's models answer to their providers' ids, prices come from
genai-prices (a few pinned here, so that an upgrade that changes them is seen), our arithmetic
agrees with genai-prices' own to the nano-dollar, IAM model rules match any id of a model, and
the worst case is an upper bound of what the provider can bill."""

from decimal import Decimal

import pytest
from genai_prices import data_snapshot
from genai_prices.types import Usage as GenaiUsage
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import catalog, iam
from gateway.pricing import (
    NANO,
    cost_of,
    fitting_output,
    media_of,
    price_usage,
    prompt_cache_savings,
    worst_case,
)
from gateway.tokens import Usage

D = Decimal


@pytest.mark.parametrize(("provider", "model", "upstream"), [
    ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-20250514"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
    ("google-ai-studio", "gemini-2.0-flash", "gemini-2.0-flash"),
    ("openai", "gpt-5", "gpt-5"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-7-sonnet-latest", "claude-3-7-sonnet-latest"),
    ("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514"),  # our alias, sent by Anthropic's id
    ("xai", "grok-4", "grok-4"),
    ("mistral", "mistral-large-latest", "mistral-large-latest"),
])
def test_todays_models_resolve_by_their_providers_ids_and_are_priced(provider, model, upstream):
    offer = catalog.resolve(provider, model)
    assert offer is not None and offer.priced
    assert offer.upstream_model == upstream
    assert offer.max_output > 0  # the context length may be unknown (0) to the price database


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "gpt-5", "claude-sonnet-4-5", "claude-sonnet-4-20250514",
                                   "gpt-4o-mini-2024-07-18"])
def test_a_bare_id_goes_to_the_provider_that_names_it(model):
    assert [o.provider for o in catalog.offers_of(model)] in (["openai"], ["anthropic"], ["google-ai-studio"])


def test_an_aliased_id_goes_only_to_its_hosts_cheapest_first():
    offers = catalog.offers_of("llama-3.3-70b-instruct")
    assert [(o.provider, o.upstream_model) for o in offers] == [
        ("groq", "llama-3.3-70b-versatile"), ("together-ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo")]


def test_google_ai_studio_does_not_serve_claude_though_the_price_database_lists_it_under_google():
    assert catalog.resolve("google-ai-studio", "claude-sonnet-4-5") is None
    assert [o.provider for o in catalog.offers_of("claude-sonnet-4-5")] == ["anthropic"]


def test_an_unknown_id_resolves_to_nothing():
    assert catalog.resolve("openai", "gpt-99") is None
    assert catalog.offers_of("gpt-99") == ()


# Known prices (USD per 1M tokens) from genai-prices 0.2.3: an upgrade that changes one fails
# here, to be looked at, not silently billed.
@pytest.mark.parametrize(("provider", "model", "prices"), [
    ("openai", "gpt-4o-mini", ("0.15", "0.6", "0.075", "0.15")),
    ("openai", "gpt-5", ("1.25", "10", "0.125", "1.25")),
    ("anthropic", "claude-sonnet-4", ("3", "15", "0.3", "3.75")),
    ("anthropic", "claude-sonnet-4-5", ("3", "15", "0.3", "3.75")),
    ("google-ai-studio", "gemini-2.0-flash", ("0.1", "0.4", "0.025", "0.1")),
])
def test_pinned_prices(provider, model, prices):
    price = catalog.resolve(provider, model).price
    assert (price.input.base, price.output.base, price.cache_read.base, price.cache_write.base) == tuple(map(D, prices))


def test_long_context_tiers_apply_to_the_whole_request_above_their_start():
    price = catalog.resolve("anthropic", "claude-sonnet-4-5").price
    assert price.input.at(200_000) == D(3) and price.input.at(200_001) == D(6)
    assert price.output.at(200_001) == D("22.5")


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from([("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku"),
                           ("google-ai-studio", "gemini-2.5-pro"), ("openai", "gpt-5")]),
    uncached=st.integers(0, 400_000), cached=st.integers(0, 200_000), written=st.integers(0, 100_000),
    output=st.integers(0, 100_000),
)
def test_our_price_arithmetic_is_genai_prices_own_to_the_nano_dollar(model, uncached, cached, written, output):
    offer = catalog.resolve(*model)
    usage = Usage(uncached + cached + written, output, cached_tokens=cached, cache_write_tokens=written)
    genai_provider = data_snapshot.get_snapshot().find_provider(None, catalog.GENAI_PROVIDERS[model[0]], None)
    info = genai_provider.find_model(offer.upstream_model)
    expected = info.prices.calc_price(GenaiUsage(input_tokens=usage.prompt_tokens, cache_read_tokens=cached,
                                                 cache_write_tokens=written, output_tokens=output))
    input_usd, output_usd = price_usage(offer.price, usage)
    assert input_usd == expected["input_price"].quantize(NANO)
    assert output_usd == expected["output_price"].quantize(NANO)


def test_a_cached_claude_prompt_is_billed_at_cache_prices_and_its_saving_counted():
    offer = catalog.resolve("anthropic", "claude-sonnet-4")
    usage = Usage(prompt_tokens=10_000 + 2_000 + 21, completion_tokens=100, cached_tokens=10_000, cache_write_tokens=2_000)
    cost = cost_of(offer, usage, paid_with_credits=False)
    # 21 × $3 + 10,000 × $0.30 + 2,000 × $3.75 per 1M; 100 × $15 per 1M
    assert (cost.input, cost.output) == (D("0.010563"), D("0.0015"))
    assert prompt_cache_savings(offer, usage) == D("0.027")  # 10,000 × ($3 − $0.30) per 1M


def test_iam_model_rules_match_a_model_under_any_of_its_ids():
    dated = catalog.resolve("anthropic", "claude-sonnet-4-20250514")
    alias = catalog.resolve("anthropic", "claude-sonnet-4")
    for rule_model in ["claude-sonnet-4", "claude-sonnet-4-0", "claude-sonnet-4-20250514", "anthropic/claude-sonnet-4-0"]:
        rule = iam.Rule("deny_models", {"models": [rule_model]})
        assert not iam.allows((rule,), dated) and not iam.allows((rule,), alias), rule_model
    other = iam.Rule("deny_models", {"models": ["claude-sonnet-4-5"]})
    assert iam.allows((other,), dated)


def test_a_model_of_unknown_price_is_within_no_price_limit():
    unknown = catalog.unknown_offer("openai", "gpt-99")
    assert not iam.allows((iam.Rule("allow_pricing", {"maxInputPrice": "100"}),), unknown)
    assert not iam.allows((iam.Rule("deny_pricing", {"maxOutputPrice": "100"}),), unknown)
    assert iam.allows((iam.Rule("deny_pricing", {"maxOutputPrice": "100"}),), catalog.custom_offer("mine", "m"))


# --- the worst case -------------------------------------------------------------------------------

PICTURE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def _body(content, **extra) -> tuple[dict, int]:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    return body, len(str(body).encode())


def test_a_picture_counts_at_the_providers_per_picture_maximum_not_by_its_url():
    body, size = _body([{"type": "text", "text": "What is this?"}, PICTURE, PICTURE, PICTURE], max_tokens=10)
    claude = catalog.resolve("anthropic", "claude-sonnet-4")
    mini = catalog.resolve("openai", "gpt-4o-mini")
    assert worst_case(claude, body, size, paid_with_credits=False).prompt_tokens >= 3 * 1_600
    # gpt-4o-mini bills a picture at up to 48,169 tokens: three reach its context length
    assert worst_case(mini, body, size, paid_with_credits=False).prompt_tokens >= min(3 * 48_169, mini.context_length)
    assert media_of(body).images == 3


def test_n_choices_reserve_n_times_the_output_cap():
    offer = catalog.resolve("openai", "gpt-4o")
    one, size = _body("Hi", max_tokens=100)
    four = {**one, "n": 4}
    single = worst_case(offer, one, size, paid_with_credits=False)
    many = worst_case(offer, four, size, paid_with_credits=False)
    assert (many.choices, many.output_tokens) == (4, 100)
    assert many.cost.output == 4 * single.cost.output


def test_cache_control_reserves_every_prompt_token_at_the_cache_write_price():
    offer = catalog.resolve("anthropic", "claude-sonnet-4")
    plain, size = _body([{"type": "text", "text": "x" * 1000}], max_tokens=1)
    cached = {**plain, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x" * 1000, "cache_control": {"type": "ephemeral"}}]}]}
    assert worst_case(offer, cached, size, paid_with_credits=False).cost.input == (
        worst_case(offer, plain, size, paid_with_credits=False).cost.input * D("1.25"))


def test_a_document_counts_as_the_whole_context():
    offer = catalog.resolve("anthropic", "claude-sonnet-4")
    body, size = _body([{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}], max_tokens=10)
    assert worst_case(offer, body, size, paid_with_credits=False).prompt_tokens >= offer.context_length


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=0, max_size=2_000), budget=st.integers(0, 2_000_000_000), n=st.integers(1, 4))
def test_fitting_output_is_the_largest_count_whose_worst_case_fits(text, budget, n):
    offer = catalog.resolve("anthropic", "claude-sonnet-4")
    body, size = _body(text, n=n)
    fit = fitting_output(offer, body, size, budget, paid_with_credits=True)
    if fit:
        assert worst_case(offer, body, size, paid_with_credits=True, output_tokens=fit).cost.nanos <= budget
    if fit < offer.max_output:
        assert worst_case(offer, body, size, paid_with_credits=True, output_tokens=fit + 1).cost.nanos > budget


AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF" * 100, "format": "wav"}}


def test_audio_input_is_billed_at_its_own_price_where_the_database_has_one():
    offer = catalog.resolve("google-ai-studio", "gemini-2.5-flash")
    usage = Usage(prompt_tokens=1_000, completion_tokens=0, audio_tokens=800)
    assert price_usage(offer.price, usage)[0] == D("0.00086")  # 200 × $0.30 + 800 × $1 per 1M
    body, size = _body([{"type": "text", "text": "Transcribe"}, AUDIO], max_tokens=10)
    bound = worst_case(offer, body, size, paid_with_credits=False)
    assert bound.cost.input == (D(bound.prompt_tokens) * D(1) / 1_000_000).quantize(NANO)  # every token at the audio price


def test_audio_input_to_a_model_whose_audio_price_is_unknown_is_refused_naming_it():
    from gateway.errors import GatewayError

    body, size = _body([AUDIO], max_tokens=10)
    with pytest.raises(GatewayError) as refused:
        worst_case(catalog.resolve("openai", "gpt-4o"), body, size, paid_with_credits=False)
    assert (refused.value.status, refused.value.param) == (400, "messages[0].content[0]")


def test_gemini_reports_audio_tokens_by_modality():
    from gateway.wire.google import usage_from

    usage = usage_from({"promptTokenCount": 1000, "candidatesTokenCount": 5, "promptTokensDetails": [
        {"modality": "TEXT", "tokenCount": 200}, {"modality": "AUDIO", "tokenCount": 800}]})
    assert usage == Usage(1000, 5, audio_tokens=800)
