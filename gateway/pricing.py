"""What a request costs, in exact Decimal USD and in integer nano-dollars for the counters; and
the most it can cost, reserved before calling upstream.

The bound (`worst_case`) holds for any input:
- text: one token per byte of the request body that is not media. Providers' tokenizers are
  byte-level BPE or fall back to bytes, so no script (CJK, emoji) makes a token out of less
  than one byte; the JSON around the text (roles, keys) covers the per-message overhead, and
  tools and schemas are in the body too. TOOLS_OVERHEAD adds the system prompt a provider
  writes around tool definitions (Anthropic's tool-use prompt is a few hundred tokens).
- each picture, audio clip or document at the provider's per-item maximum, in place of its
  bytes (an image_url that points at a PDF, video or audio counts as a document: the whole
  context); the prompt never counts more than the model's context length (+10%).
- tool-call arguments and tool results at the length the translating formats write them
  (they parse and write the JSON again, and numbers can come out longer).
- every prompt token at the highest of its prices: the input price, or, when the request
  asks for prompt caching (`cache_control`), the cache-write price if that is higher, or,
  when it carries audio, the audio input price if that is higher (audio to a model whose
  audio price is unknown is refused); tiers at the prompt's size.
- `n` × the output cap.
"""

import math
import re
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from django.conf import settings

from gateway.catalog import Offer, Price
from gateway.errors import GatewayError
from gateway.tokens import Usage

NANO = Decimal("0.000000001")
MILLION = Decimal(1_000_000)
TOOLS_OVERHEAD = 1_000  # tokens a provider may add around tool definitions
MIN_OUTPUT = 16  # fewer output tokens than this never serve a request: refused instead


def to_nanos(usd: Decimal) -> int:
    return int((usd / NANO).to_integral_value(rounding=ROUND_HALF_UP))


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) * NANO).quantize(NANO)


@dataclass(frozen=True)
class Cost:
    input: Decimal
    output: Decimal
    fee: Decimal

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.fee

    @property
    def nanos(self) -> int:
        return to_nanos(self.total)


ZERO_COST = Cost(Decimal(0), Decimal(0), Decimal(0))


def _usd(amount: Decimal) -> Decimal:
    return (amount / MILLION).quantize(NANO, rounding=ROUND_HALF_UP)


def _with_fee(input_cost: Decimal, output_cost: Decimal, paid_with_credits: bool) -> Cost:
    fee = Decimal(0)
    if paid_with_credits:
        fee = ((input_cost + output_cost) * settings.CREDIT_FEE_PERCENT / 100).quantize(NANO, rounding=ROUND_HALF_UP)
    return Cost(input_cost, output_cost, fee)


def price_usage(price: Price, usage: Usage) -> tuple[Decimal, Decimal]:
    """(input USD, output USD) of the usage at this price, exact to the nano-dollar: cached
    reads and cache writes at their own prices, the rest of the prompt at the input price,
    every rate at the tier the prompt's size reaches (as genai-prices' calc_price does)."""
    prompt = usage.prompt_tokens
    audio = min(usage.audio_tokens, max(0, prompt - usage.cached_tokens - usage.cache_write_tokens))
    uncached = max(0, prompt - usage.cached_tokens - usage.cache_write_tokens - audio)
    audio_rate = (price.input_audio or price.input).at(prompt)
    input_usd = (uncached * price.input.at(prompt) + usage.cached_tokens * price.cache_read.at(prompt)
                 + usage.cache_write_tokens * price.cache_write.at(prompt) + audio * audio_rate)
    return _usd(input_usd), _usd(usage.completion_tokens * price.output.at(prompt))


def cost_of(offer: Offer, usage: Usage, *, paid_with_credits: bool) -> Cost:
    """Provider cost split in input and output, plus the gateway fee when credits pay. An
    offer without a known price costs 0 (logged `priced: false`)."""
    price = offer.price_now()
    if price is None:
        return ZERO_COST
    input_cost, output_cost = price_usage(price, usage)
    return _with_fee(input_cost, output_cost, paid_with_credits)


def prompt_cache_savings(offer: Offer, usage: Usage) -> Decimal:
    """USD the provider's prompt cache saved: the cached reads at the input price, less what
    they cost (cache writes are billed, not savings)."""
    price = offer.price_now()
    if price is None or not usage.cached_tokens:
        return Decimal(0)
    prompt = usage.prompt_tokens
    return _usd(usage.cached_tokens * (price.input.at(prompt) - price.cache_read.at(prompt)))


# --- the most a request can cost -----------------------------------------------------------------

# Tokens a provider bills at most for one item, by provider (key "" for any other), from the
# providers' vision, audio and document guides. OpenAI's gpt-4o-mini bills pictures at 2,833
# tokens plus 5,667 per 512-px tile (up to 8 tiles); its other models at most 1,536 patches
# times a multiplier up to 2.5, or 85 + 170 per tile; Claude at most about 1,600 per picture
# (1.15 megapixels / 750); Gemini 258 per 768-px tile. Documents count as the whole context.
_IMAGE_TOKENS = {"openai-mini": 48_169, "openai": 3_840, "anthropic": 1_600, "google-ai-studio": 6_192, "": 48_169}
# Audio: Gemini bills 32 tokens per second and OpenAI's audio models about 10; no encoding
# the providers take carries a second in fewer than 640 bytes.
AUDIO_TOKENS_PER_BYTE = Decimal(32) / 640


@dataclass(frozen=True)
class Media:
    """What the bound needs to know of a request besides its size, read once per request:
    `bytes` is the size of the media in the body (to take away from the text bound), the
    counts are items, `growth` the bytes the translating formats add to tool JSON, `caching`
    whether it asks for prompt caching."""

    bytes: int = 0
    images: int = 0
    audio_bytes: int = 0
    documents: int = 0
    growth: int = 0
    caching: bool = False


# What an image_url may point at besides a picture: Gemini reads PDFs, video and audio behind a
# URL or a data: URL, and bills them by page or second, not as a picture.
_NOT_PICTURE = re.compile(r"^data:(application|audio|video|text)/|\.(pdf|mp3|wav|aac|ogg|flac|m4a|mp4|mpeg|mov|avi|"
                          r"webm|wmv|flv|3gp|txt|html|csv)(\?|#|$)", re.IGNORECASE)


def _part_media(part: dict[str, Any]) -> Media:
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        size = len(url) if isinstance(url, str) else 0
        if isinstance(url, str) and _NOT_PICTURE.search(url[:200] if url.startswith("data:") else url):
            return Media(bytes=size, documents=1)  # counted as a document: the whole context
        return Media(bytes=size, images=1)
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        size = len(data) if isinstance(data, str) else 0
        return Media(bytes=size, audio_bytes=size * 3 // 4 + 3)
    if kind == "file":
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, dict) else None
        return Media(bytes=len(data) if isinstance(data, str) else 0, documents=1)
    return Media()


def media_of(body: dict[str, Any]) -> Media:
    """The media parts of a chat completion request (validated: gateway/validation.py), the
    growth of its tool JSON, and whether it asks for prompt caching."""
    total = Media()
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict):
                m = _part_media(part)
                total = Media(total.bytes + m.bytes, total.images + m.images, total.audio_bytes + m.audio_bytes,
                              total.documents + m.documents)
    return replace(total, growth=_rewritten_growth(body), caching=_asks_prompt_caching(body))


def _image_tokens(offer: Offer) -> int:
    if offer.provider == "openai" and "mini" in offer.upstream_model and "4o" in offer.upstream_model:
        return _IMAGE_TOKENS["openai-mini"]
    return _IMAGE_TOKENS.get(offer.provider, _IMAGE_TOKENS[""])


def _rewritten_growth(body: dict[str, Any]) -> int:
    """Bytes the translating formats add when they parse tool-call arguments and tool results
    and write them out again (`1e15` becomes `1000000000000000.0`): counted on top of the body."""
    growth = 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        texts = [call.get("function", {}).get("arguments") for call in message.get("tool_calls") or ()
                 if isinstance(call, dict) and isinstance(call.get("function"), dict)]
        if message.get("role") == "tool":
            texts.append(message.get("content"))
        for text in texts:
            if isinstance(text, str) and text[:1] in ("{", "["):
                try:
                    growth += max(0, len(orjson.dumps(orjson.loads(text))) - len(text.encode()))
                except orjson.JSONDecodeError:
                    pass
    return growth


def prompt_bound(offer: Offer, body: dict[str, Any], body_size: int, media: Media | None = None) -> int:
    """The most prompt tokens the provider can bill for this request (module docstring)."""
    media = media or media_of(body)
    body_size += media.growth
    # A provider refuses a prompt over the context length rather than bill it; 10% above the
    # database's figure, in case it rounds a model's window down.
    context = (offer.context_length or 0) * 11 // 10
    if media.documents and context:
        return context
    tokens = max(0, body_size - media.bytes) + media.images * _image_tokens(offer)
    tokens += math.ceil(media.audio_bytes * AUDIO_TOKENS_PER_BYTE)
    if body.get("tools"):
        tokens += TOOLS_OVERHEAD
    if media.documents:  # no context length known: a generous bound per document
        tokens += media.documents * 1_000_000
    return min(tokens, context) if context else tokens


def requested_output(body: dict[str, Any]) -> int | None:
    """The client's own output cap, if any: the larger of `max_completion_tokens` and
    `max_tokens` when both are given (a host may read either)."""
    asked = [v for v in (body.get("max_completion_tokens"), body.get("max_tokens"))
             if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return max(asked) if asked else None


def output_cap(offer: Offer, body: dict[str, Any]) -> int:
    """The most output tokens one choice can produce: what it asks for, within the model's maximum."""
    asked = requested_output(body)
    cap = offer.max_output or 0
    if asked is not None:
        return min(asked, cap) if cap else asked
    return cap


def choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _asks_prompt_caching(body: dict[str, Any]) -> bool:
    """Whether `cache_control` appears anywhere in the request (a cheap scan of the keys the
    client can put it on: messages, their parts, tools)."""
    for item in [*(body.get("messages") or ()), *(body.get("tools") or ())]:
        if not isinstance(item, dict):
            continue
        if "cache_control" in item:
            return True
        content = item.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content):
            return True
    return False


def _prompt_rate(price: Price, caching: bool, audio: bool, prompt: int) -> Decimal:
    rate = price.input.at(prompt)
    if caching:
        rate = max(rate, price.cache_write.at(prompt))
    if audio and price.input_audio is not None:
        rate = max(rate, price.input_audio.at(prompt))
    return rate


def _first_audio_part(body: dict[str, Any]) -> str:
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("type") == "input_audio":
                return f"messages[{i}].content[{j}]"
    return "messages"


def _refuse_unpriced_audio(offer: Offer, body: dict[str, Any]) -> GatewayError:
    param = _first_audio_part(body)
    return GatewayError(
        400, f"Invalid '{param}': '{offer.model}' takes no audio input that this gateway can price; leave the "
        "input_audio part out", "invalid_request_error", param=param)


@dataclass(frozen=True)
class Bound:
    """The most a request can cost on one offer, with what it is made of."""

    prompt_tokens: int
    output_tokens: int  # per choice
    choices: int
    cost: Cost


def worst_case(offer: Offer, body: dict[str, Any], body_size: int, *, paid_with_credits: bool,
               output_tokens: int | None = None, media: Media | None = None) -> Bound:
    """The most this request can cost on this offer (module docstring), with `output_tokens`
    per choice (default: the request's output cap). An offer without a known price: 0.
    Raises GatewayError 400 for audio input to a model whose audio price is unknown."""
    media = media or media_of(body)
    prompt = prompt_bound(offer, body, body_size, media)
    output = output_cap(offer, body) if output_tokens is None else output_tokens
    n = choices(body)
    price = offer.price
    if price is None:
        return Bound(prompt, output, n, ZERO_COST)
    if media.audio_bytes and price.input_audio is None:
        raise _refuse_unpriced_audio(offer, body)
    input_cost = _usd(prompt * _prompt_rate(price, media.caching, bool(media.audio_bytes), prompt))
    output_cost = _usd(n * output * price.output.at(prompt))
    return Bound(prompt, output, n, _with_fee(input_cost, output_cost, paid_with_credits))


def fitting_output(offer: Offer, body: dict[str, Any], body_size: int, budget: int, *, paid_with_credits: bool,
                   media: Media | None = None) -> int:
    """The most output tokens per choice whose worst case fits `budget` nano-dollars, up to the
    model's maximum (0 when not even the prompt fits)."""
    media = media or media_of(body)
    low, high = 0, output_cap(offer, body)

    def fits(tokens: int) -> bool:
        bound = worst_case(offer, body, body_size, paid_with_credits=paid_with_credits, output_tokens=tokens, media=media)
        return bound.cost.nanos <= budget

    if not fits(0):
        return 0
    while low < high:  # the largest count that fits: cost grows with the count
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low
