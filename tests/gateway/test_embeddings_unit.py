"""The embeddings endpoint's pieces that need no server: its parameters, the Google AI Studio
translation (batchEmbedContents) and OpenAI's base64 encoding, and the catalog's embedding
prices."""

import base64
import struct
from decimal import Decimal

import orjson
import pytest

from gateway import catalog
from gateway.embeddings import _from_google, _google_call, validate
from gateway.errors import GatewayError


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "hi"}, "model"),
    ({"model": "text-embedding-3-small"}, "input"),
    ({"model": "text-embedding-3-small", "input": []}, "input"),
    ({"model": "text-embedding-3-small", "input": ["ok", ""]}, "input[1]"),
    ({"model": "text-embedding-3-small", "input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "text-embedding-3-small", "input": "hi", "dimensions": 0}, "dimensions"),
])
def test_each_bad_parameter_is_a_400_naming_it(body, param):
    with pytest.raises(GatewayError) as refused:
        validate(body)
    assert (refused.value.status, refused.value.param) == (400, param)


def test_strings_and_token_arrays_are_accepted():
    validate({"model": "m", "input": "hi"})
    validate({"model": "m", "input": ["a", "b"]})
    validate({"model": "m", "input": [1, 2, 3]})
    validate({"model": "m", "input": [[1, 2], [3]]})


def test_google_gets_one_request_per_input_with_the_dimensions():
    call = _google_call({"model": "gemini-embedding-001", "input": ["a", "b"], "dimensions": 256},
                        "gemini-embedding-001", "https://generativelanguage.googleapis.com", "g-key")
    assert call.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert call.headers["x-goog-api-key"] == "g-key"
    assert orjson.loads(call.body) == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256}]}


def test_google_answers_become_openais_list_floats_or_base64():
    data = {"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]}
    answer, usage = _from_google(data, {"input": ["a", "b"]}, "gemini-embedding-001", 2)
    assert [d["embedding"] for d in answer["data"]] == [[0.5, -1.0], [0.25, 2.0]]
    assert (answer["usage"], usage.prompt_tokens) == ({"prompt_tokens": 2, "total_tokens": 2}, 2)
    encoded, _ = _from_google(data, {"input": ["a", "b"], "encoding_format": "base64"}, "gemini-embedding-001", 2)
    assert struct.unpack("<2f", base64.b64decode(encoded["data"][0]["embedding"])) == (0.5, -1.0)


def test_embedding_models_are_priced_per_input_token_and_routed_to_their_provider():
    small = catalog.resolve_embedding("openai", "text-embedding-3-small")
    assert (small.input_price, small.output_price, small.max_output) == (Decimal("0.02"), Decimal(0), 0)
    assert [o.provider for o in catalog.embedding_offers("gemini-embedding-001")] == ["google-ai-studio"]
    assert catalog.resolve_embedding("anthropic", "text-embedding-3-small") is None  # Anthropic has no embeddings
