"""POST /v1/embeddings end to end: the official openai SDK's `embeddings.create` against the live
gateway and the fake upstream's embeddings (OpenAI's /embeddings, Google's batchEmbedContents).
Floats and base64 (the SDK asks for base64 and decodes it unless told otherwise), Google
translated, a custom provider's declared price, the refusals (unknown model, bad input, a
usage limit too small), the usage log (endpoint "embeddings", the catalog's price per input
token, the credits fee when credits pay) and the response cache."""

import base64
import struct
from decimal import ROUND_HALF_UP, Decimal

import httpx
import openai
import pytest
from django.conf import settings as django_settings

from apikeys import services as key_services
from gateway import catalog
from projects import services as project_services
from tests.fake_upstream import embedding_tokens_of, embedding_vector
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

TEXTS = ["The quick brown fox", "jumps over the lazy dög 🦊"]
NANO = Decimal("0.000000001")


def own_key(org, provider: str) -> None:
    key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)


def _calls(fake):
    return [c for c in fake.calls if c.endpoint == "embeddings"]


def _logs(project, n: int = 1) -> list[UsageLog]:
    rows = eventually(lambda: (found := list(UsageLog.objects.filter(project=project).order_by("created_at")))
                      and len(found) >= n and found)
    assert rows and len(rows) == n, rows
    return rows


def _input_cost(tokens: int, price_per_million: Decimal) -> Decimal:
    return (tokens * price_per_million / 1_000_000).quantize(NANO, rounding=ROUND_HALF_UP)


def _fee(cost: Decimal) -> Decimal:
    return (cost * django_settings.CREDIT_FEE_PERCENT / 100).quantize(NANO, rounding=ROUND_HALF_UP)


def _gateway_estimate(texts: list[str]) -> int:
    """What the gateway counts when the provider reports no tokens (Google): 4 bytes a token."""
    return sum(max(1, len(t.encode()) // 4) for t in texts)


def _check_log(log: UsageLog, *, provider: str, model: str, tokens: int, cost: Decimal, fee: Decimal = Decimal(0)) -> None:
    assert (log.endpoint, log.used_provider, log.used_model, log.status_code) == ("embeddings", provider, model, 200)
    assert (log.prompt_tokens, log.completion_tokens, log.total_tokens) == (tokens, 0, tokens)
    assert (log.cost, log.fee, log.input_cost, log.output_cost) == (cost + fee, fee, cost, 0)
    assert log.priced and not log.streamed


def test_openai_floats_pass_through_with_the_providers_token_count_and_its_cost(
        gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    response = gateway.client(key_for(project)).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=TEXTS, encoding_format="float", user="u-9")
    answer = response.parse()
    assert response.headers["x-gateway-provider"] == "openai"
    assert [d.embedding for d in answer.data] == [embedding_vector(t, 8) for t in TEXTS]
    assert [d.index for d in answer.data] == [0, 1] and answer.model == "text-embedding-3-small"
    tokens = embedding_tokens_of(TEXTS)
    price = catalog.resolve_embedding("openai", "text-embedding-3-small").price.input.base
    cost = _input_cost(tokens, price)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (tokens, tokens)
    assert Decimal(str(answer.usage.model_extra["cost"])) == Decimal(response.headers["x-gateway-cost"]) == cost
    [call] = _calls(fake_upstream)
    assert call.path == "/openai/v1/embeddings" and call.headers["authorization"] == "Bearer sk-own-openai"
    assert call.body == {"model": "text-embedding-3-small", "input": TEXTS, "encoding_format": "float", "user": "u-9"}
    [log] = _logs(project)
    _check_log(log, provider="openai", model="text-embedding-3-small", tokens=tokens, cost=cost)
    assert (log.user, log.used_mode) == ("u-9", "api-keys")


def test_openai_base64_the_sdk_default_is_decoded_by_the_sdk_and_kept_when_asked_for(
        gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    client = gateway.client(key_for(project))
    decoded = client.embeddings.create(model="text-embedding-3-small", input=TEXTS, dimensions=4)
    assert [d.embedding for d in decoded.data] == [embedding_vector(t, 4) for t in TEXTS]  # multiples of 1/128: exact
    explicit = client.embeddings.create(model="text-embedding-3-small", input="one", encoding_format="base64")
    raw = explicit.data[0].embedding
    assert isinstance(raw, str) and list(struct.unpack("<8f", base64.b64decode(raw))) == embedding_vector("one", 8)
    first, second = _calls(fake_upstream)
    assert (first.body["encoding_format"], first.body["dimensions"], second.body["encoding_format"]) == ("base64", 4, "base64")
    assert [log.endpoint for log in _logs(project, 2)] == ["embeddings", "embeddings"]


@pytest.mark.parametrize("encoding", ["float", None], ids=["float", "sdk-default-base64"])
def test_google_is_asked_through_batch_embed_contents_and_answered_in_openais_shape_paid_with_credits(
        gateway, org, project, key_for, fake_upstream, encoding):
    credits_add(organization=org, amount="5")
    kwargs = {"encoding_format": encoding} if encoding else {}
    response = gateway.client(key_for(project)).embeddings.with_raw_response.create(
        model="gemini-embedding-001", input=TEXTS, dimensions=16, **kwargs)
    answer = response.parse()
    assert response.headers["x-gateway-provider"] == "google-ai-studio"
    assert [d.embedding for d in answer.data] == [embedding_vector(t, 16) for t in TEXTS]
    assert [(d.index, d.object) for d in answer.data] == [(0, "embedding"), (1, "embedding")]
    [call] = _calls(fake_upstream)
    assert call.path == "/google-ai-studio/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert call.headers["x-goog-api-key"] == "gw-own-google-ai-studio-key"
    assert call.body == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 16}
        for t in TEXTS]}
    tokens = _gateway_estimate(TEXTS)  # Google reports no tokens for embeddings
    cost = _input_cost(tokens, catalog.resolve_embedding("google-ai-studio", "gemini-embedding-001").price.input.base)
    fee = _fee(cost)
    assert answer.usage.prompt_tokens == tokens
    assert Decimal(str(answer.usage.model_extra["cost"])) == Decimal(response.headers["x-gateway-cost"]) == cost + fee
    [log] = _logs(project)
    _check_log(log, provider="google-ai-studio", model="gemini-embedding-001", tokens=tokens, cost=cost, fee=fee)
    assert log.used_mode == "credits" and fee > 0


def test_a_custom_providers_embeddings_are_billed_at_its_declared_price(
        gateway, org, project, key_for, fake_upstream, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake listens on loopback
    key_services.provider_key_create(
        organization=org, provider="custom", name="my-embedder", token="sk-own-my-embedder",
        base_url=fake_upstream.base_url("my-embedder"), validate=False,
        prices={"embed-small": {"inputPrice": "0.5", "outputPrice": "0"}})
    fake_upstream.embedding_tokens = 1000
    answer = gateway.client(key_for(project, usage_limit="1")).embeddings.create(
        model="my-embedder/embed-small", input=TEXTS, encoding_format="float")
    assert [d.embedding for d in answer.data] == [embedding_vector(t, 8) for t in TEXTS]
    assert Decimal(str(answer.usage.model_extra["cost"])) == Decimal("0.0005")  # 1,000 × $0.5 per 1M
    [call] = _calls(fake_upstream)
    assert call.path == "/my-embedder/v1/embeddings" and call.body["model"] == "embed-small"
    [log] = _logs(project)
    _check_log(log, provider="my-embedder", model="embed-small", tokens=1000, cost=Decimal("0.0005"))


def test_an_unknown_model_is_a_404_model_not_found(gateway, org, project, key_for, fake_upstream):
    credits_add(organization=org, amount="5")
    client = gateway.client(key_for(project))
    for model in ("text-embedding-9000", "openai/text-embedding-9000", "anthropic/text-embedding-3-small"):
        with pytest.raises(openai.NotFoundError) as raised:  # nobody's; unpriced, which credits never pay; no embeddings
            client.embeddings.create(model=model, input="hi")
        assert (raised.value.code, raised.value.param) == ("model_not_found", "model")
    assert _calls(fake_upstream) == []


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-flash", "openai/gpt-4o-mini"])
def test_a_chat_model_is_no_embedding_model(gateway, org, project, key_for, fake_upstream, model):
    """The price database prices chat models too: they are not embedding models (a 404, not a
    call to the provider's embeddings endpoint reserved at a chat price)."""
    credits_add(organization=org, amount="5")
    with pytest.raises(openai.NotFoundError) as raised:
        gateway.client(key_for(project)).embeddings.create(model=model, input="hi")
    assert (raised.value.code, raised.value.param) == ("model_not_found", "model")
    assert _calls(fake_upstream) == []


@pytest.mark.parametrize(("body", "param"), [
    ({"input": ["fine", ""]}, "input[1]"),
    ({"input": []}, "input"),
    ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "hi", "dimensions": -3}, "dimensions"),
    ({"model": "gemini-embedding-001", "input": [[1, 2, 3]]}, "input[0]"),  # Google embeds text only
], ids=["empty-string", "empty-list", "encoding", "dimensions", "tokens-to-google"])
def test_a_bad_input_is_a_400_naming_it(gateway, org, project, key_for, fake_upstream, body, param):
    own_key(org, "openai")
    own_key(org, "google-ai-studio")
    token = key_for(project)
    request = {"model": "text-embedding-3-small", **body}
    response = httpx.post(f"{gateway.url}/v1/embeddings", json=request, headers={"Authorization": f"Bearer {token}"},
                          timeout=20)
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["param"], response.json()["error"]["type"]) == (param, "invalid_request_error")
    assert _calls(fake_upstream) == []
    if param == "input[1]":  # the SDK sees the same
        with pytest.raises(openai.BadRequestError) as raised:
            gateway.client(token).embeddings.create(**request)
        assert raised.value.param == "input[1]"


def test_a_usage_limit_too_small_for_the_input_is_a_402(gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    long_text = "word " * 2000  # 10,000 bytes: at most 10,000 tokens × $0.02/1M = $0.0002
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.client(key_for(project, usage_limit="0.0001")).embeddings.create(model="text-embedding-3-small", input=long_text)
    assert (raised.value.status_code, raised.value.code) == (402, "usage_limit_insufficient")
    assert "0.000100000 left" in raised.value.message
    assert _calls(fake_upstream) == []


def test_an_embeddings_refusal_for_its_cost_names_the_input_not_max_tokens(gateway, org, project, key_for, fake_upstream):
    """An embeddings request has no max_tokens to lower: only a shorter input fits."""
    own_key(org, "openai")
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.client(key_for(project, usage_limit="0.0001")).embeddings.create(
            model="text-embedding-3-small", input="word " * 2000)
    assert raised.value.param == "input" and "Shorten the input" in raised.value.message
    assert "max_tokens" not in raised.value.message


def test_a_caching_project_answers_the_same_embeddings_request_from_the_cache_for_free(
        gateway, org, project, key_for, fake_upstream):
    own_key(org, "openai")
    project_services.project_update(project=project, caching_enabled=True)
    client = gateway.client(key_for(project))

    def ask():
        return client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=TEXTS, encoding_format="float")

    first, second = ask(), ask()
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("MISS", "HIT")
    assert second.parse().data == first.parse().data
    assert Decimal(second.headers["x-gateway-cost"]) == 0 < Decimal(first.headers["x-gateway-cost"])
    # The stored answer is replayed, except its usage.cost: the hit was billed nothing (docs/api.md).
    assert second.parse().usage.model_extra["cost"] == 0 < first.parse().usage.model_extra["cost"]
    assert len(_calls(fake_upstream)) == 1
    miss, hit = _logs(project, 2)
    assert (miss.cache_status, hit.cache_status, hit.cached) == ("miss", "hit", True)
    assert hit.cost == 0 and hit.saved_cost == miss.cost > 0 and hit.endpoint == "embeddings"
    assert hit.prompt_tokens == miss.prompt_tokens == embedding_tokens_of(TEXTS)
    third = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=TEXTS[:1], encoding_format="float")
    assert third.headers["x-gateway-cache"] == "MISS" and len(_calls(fake_upstream)) == 2


def test_the_fake_answers_embeddings_in_each_providers_shape(fake_upstream):
    """The fake's own embeddings (for the tests above): OpenAI's list with usage, Google's
    batchEmbedContents and embedContent, the 400s a real provider gives, deterministic values."""
    openai_url = f"{fake_upstream.base_url('openai')}/embeddings"
    answer = httpx.post(openai_url, json={"model": "m", "input": [[1, 2, 3], "ab"], "encoding_format": "base64"}).json()
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4} and answer["object"] == "list"
    assert struct.unpack("<8f", base64.b64decode(answer["data"][1]["embedding"])) == tuple(embedding_vector("ab", 8))
    assert httpx.post(openai_url, json={"model": "m", "input": ""}).status_code == 400
    google = fake_upstream.base_url("google")
    batch = httpx.post(f"{google}/v1beta/models/e-1:batchEmbedContents", json={"requests": [
        {"model": "models/e-1", "content": {"parts": [{"text": "a"}, {"text": "b"}]}, "outputDimensionality": 3}]}).json()
    assert batch == {"embeddings": [{"values": embedding_vector("ab", 3)}]}
    single = httpx.post(f"{google}/v1beta/models/e-1:embedContent", json={"content": {"parts": [{"text": "ab"}]}}).json()
    assert single == {"embedding": {"values": embedding_vector("ab", 8)}}
    mismatch = httpx.post(f"{google}/v1beta/models/e-1:batchEmbedContents", json={"requests": [
        {"model": "models/e-2", "content": {"parts": [{"text": "a"}]}}]})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["status"] == "INVALID_ARGUMENT"
    fake_upstream.fail("status", on="embeddings", status=429)
    assert httpx.post(openai_url, json={"model": "m", "input": "x"}).status_code == 429
    assert [c.endpoint for c in fake_upstream.calls] == ["embeddings"] * 6



@pytest.mark.parametrize("mode", [
    mode for mode in ("absent", "missing", "null", "string", "negative")])
def test_a_provider_that_reports_no_usable_count_is_billed_the_estimate_and_the_client_sees_it(
        gateway, org, project, key_for, fake_upstream, mode):
    own_key(org, "openai")
    fake_upstream.fail("bad_usage", on="embeddings", mode=mode)
    response = httpx.post(f"{gateway.url}/v1/embeddings", headers={"Authorization": f"Bearer {key_for(project)}"},
                          json={"model": "text-embedding-3-small", "input": TEXTS}, timeout=20)
    assert response.status_code == 200, response.text
    tokens = _gateway_estimate(TEXTS)
    [log] = _logs(project)
    assert (log.prompt_tokens, log.status_code) == (tokens, 200) and log.cost > 0
    usage = response.json()["usage"]
    assert (usage["prompt_tokens"], usage["total_tokens"], Decimal(str(usage["cost"]))) == (tokens, tokens, log.cost)
