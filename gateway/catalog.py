"""The models the gateway offers and what each provider charges for them.

Prices and model matching come from genai-prices (pydantic's maintained price database, read
from the snapshot bundled with the pinned package: it is never updated at run time), so a model
answers to every id its provider uses (dated versions, `-latest`). What the database lacks is
ours, below: our provider ids, the ids our catalog offers across providers (ALIASES, with the id
each host knows the model by), and maximum output tokens (MAX_OUTPUT).

Prices are USD per 1M tokens. A bare model id goes to the cheapest provider the project can use
(gateway/routing.py).
"""

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

# Our provider id → genai-prices' provider id.
GENAI_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google-ai-studio": "google",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "together-ai": "together",
}
# genai-prices' `google` also prices Claude on Vertex AI; Google AI Studio serves only these.
_GOOGLE_AI_STUDIO_MODEL = re.compile(r"^(models/)?(gemini|gemma|learnlm|text-embedding|embedding-)", re.IGNORECASE)
# Providers the gateway asks for embeddings (POST /v1/embeddings), and how the price database
# names embedding models.
EMBEDDING_PROVIDERS = ("openai", "google-ai-studio", "mistral", "together-ai")
_EMBEDDING_MODEL = re.compile(r"embed|bge-|e5-|gte-|retrieval", re.IGNORECASE)

# A model's maximum output tokens, by id (first match wins), from each provider's model
# documentation. Unknown models get DEFAULT_MAX_OUTPUT: an upper bound, so a reservation
# never counts fewer output tokens than the provider can bill.
MAX_OUTPUT: list[tuple[re.Pattern[str], int]] = [
    (re.compile(p), n)
    for p, n in [
        (r"^(gpt-5|o\d|codex)", 128_000),
        (r"^gpt-4\.1", 32_768),
        (r"^(gpt-4o|chatgpt-4o)", 16_384),
        (r"^gpt-4", 8_192),
        (r"^gpt-3\.5", 4_096),
        (r"^claude-(opus-4-0|opus-4-1|opus-4-2025|4-opus)", 32_000),
        (r"^claude-(sonnet-4|haiku-4|opus-4-5|3-7-sonnet|4-sonnet)", 64_000),
        (r"^claude-3-5", 8_192),
        (r"^claude-3", 4_096),
        (r"^gemini-(2\.5|3)", 65_536),
        (r"^gemini-", 8_192),
        (r"^(mistral|codestral|ministral|pixtral|magistral|devstral)", 32_768),
        (r"^(deepseek-chat|deepseek-v3)", 8_192),
        (r"^deepseek-reasoner", 65_536),
    ]
]
DEFAULT_MAX_OUTPUT = 131_072


@dataclass(frozen=True)
class Rate:
    """One price (USD per 1M tokens), with genai-prices' tiers: once a request's input tokens
    exceed a tier's `start`, every token of the request pays that tier's price (Anthropic's
    and Google's long-context prices)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def at(self, input_tokens: int) -> Decimal:
        for start, price in reversed(self.tiers):
            if input_tokens > start:
                return price
        return self.base

    @property
    def highest(self) -> Decimal:
        return max([self.base, *(price for _, price in self.tiers)])


@dataclass(frozen=True)
class Price:
    """What a provider charges for one model: input, output, and prompt-cache reads and writes
    (each read or written token instead of the input price)."""

    input: Rate
    output: Rate
    cache_read: Rate
    cache_write: Rate
    input_audio: Rate | None = None  # None: the database does not price audio input for it


def flat_price(input_price: Decimal, output_price: Decimal) -> Price:
    """A price without tiers or cache prices (cache tokens pay the input price)."""
    return Price(Rate(input_price), Rate(output_price), Rate(input_price), Rate(input_price))


@dataclass(frozen=True)
class Offer:
    """One provider serving one model. `price` is None when the gateway does not know it (a
    pinned model outside the catalog, or a custom provider's model without declared prices):
    such a request is logged at 0 with `priced: false`, and credits never pay for it."""

    provider: str
    model: str  # the gateway's model id, as the client asked for it
    upstream_model: str  # the id the provider knows it by
    price: Price | None
    context_length: int
    max_output: int
    custom_name: str = ""  # for provider "custom": the organization's name for it
    ids: frozenset[str] = frozenset()  # every id the model answers to (IAM rules match any)
    # genai-prices' model when its price changes with the time of day (DeepSeek's off-peak
    # discount): the price is then read at the time of the request.
    timed: Any = field(default=None, compare=False, repr=False)

    @property
    def priced(self) -> bool:
        return self.price is not None

    @property
    def input_price(self) -> Decimal:
        return self.price.input.base if self.price else Decimal(0)

    @property
    def output_price(self) -> Decimal:
        return self.price.output.base if self.price else Decimal(0)

    @property
    def cached_input_price(self) -> Decimal | None:
        if self.price is None or self.price.cache_read == self.price.input:
            return None
        return self.price.cache_read.base

    @property
    def is_free(self) -> bool:
        return self.priced and self.input_price == 0 and self.output_price == 0

    def price_now(self) -> Price | None:
        """The price in force at this moment."""
        if self.timed is None:
            return self.price
        return _price_of(self.timed.get_prices(datetime.now(UTC)))


@dataclass(frozen=True)
class Alias:
    """A model id our catalog offers on a host that names it otherwise, with the host's id,
    and a price where genai-prices does not know the host's model."""

    model: str
    provider: str
    upstream: str
    price: tuple[str, str] | None = None


ALIASES: list[Alias] = [
    Alias("claude-sonnet-4", "anthropic", "claude-sonnet-4-20250514"),
    Alias("claude-3-5-haiku", "anthropic", "claude-3-5-haiku-20241022"),
    Alias("mistral-large", "mistral", "mistral-large-latest"),
    Alias("mistral-small", "mistral", "mistral-small-latest"),
    Alias("codestral", "mistral", "codestral-latest"),
    Alias("llama-3.3-70b-instruct", "groq", "llama-3.3-70b-versatile"),
    Alias("llama-3.3-70b-instruct", "together-ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    Alias("llama-3.1-8b-instruct", "groq", "llama-3.1-8b-instant"),
    Alias("gpt-oss-120b", "groq", "openai/gpt-oss-120b"),
    Alias("gpt-oss-120b", "together-ai", "openai/gpt-oss-120b"),
    Alias("deepseek-chat", "deepseek", "deepseek-chat"),
    Alias("deepseek-chat", "together-ai", "deepseek-ai/DeepSeek-V3", ("1.25", "1.25")),
    Alias("qwen-2.5-72b-instruct", "together-ai", "Qwen/Qwen2.5-72B-Instruct-Turbo", ("1.20", "1.20")),
]
_ALIASES_BY_MODEL: dict[str, list[Alias]] = {}
for _alias in ALIASES:
    _ALIASES_BY_MODEL.setdefault(_alias.model, []).append(_alias)


def _rate(value: Decimal | TieredPrices | None) -> Rate | None:
    if value is None:
        return None
    if isinstance(value, TieredPrices):
        return Rate(value.base, tuple((tier.start, tier.price) for tier in value.tiers))
    return Rate(value)


def _price_of(model_price: Any) -> Price | None:
    """Our Price from genai-prices' ModelPrice; None without an input and an output price."""
    input_rate, output_rate = _rate(model_price.input_mtok), _rate(model_price.output_mtok)
    if input_rate is None or output_rate is None:
        return None
    return Price(input_rate, output_rate, _rate(model_price.cache_read_mtok) or input_rate,
                 _rate(model_price.cache_write_mtok) or input_rate, _rate(model_price.input_audio_mtok))


def _highest(prices: list[Price]) -> Price:
    """Each rate at its highest among the variants: what a reservation counts."""
    def top(rates: list[Rate]) -> Rate:
        return Rate(max(r.highest for r in rates))
    audio = [p.input_audio for p in prices if p.input_audio is not None]
    return Price(top([p.input for p in prices]), top([p.output for p in prices]),
                 top([p.cache_read for p in prices]), top([p.cache_write for p in prices]),
                 top(audio) if len(audio) == len(prices) else None)


def max_output_of(model_id: str) -> int:
    lowered = model_id.lower().rpartition("/")[2]
    for pattern, tokens in MAX_OUTPUT:
        if pattern.match(lowered):
            return tokens
    return DEFAULT_MAX_OUTPUT


def _genai_model(provider: str, ref: str) -> Any | None:
    genai_id = GENAI_PROVIDERS.get(provider)
    if genai_id is None or (provider == "google-ai-studio" and not _GOOGLE_AI_STUDIO_MODEL.match(ref)):
        return None
    genai_provider = data_snapshot.get_snapshot().find_provider(None, genai_id, None)
    return genai_provider.find_model(ref)


def _offer_from_genai(provider: str, model: str, upstream: str, info: Any, fixed: Price | None) -> Offer:
    timed = None
    if fixed is not None:
        price: Price | None = fixed
    elif info is None:
        price = None
    elif isinstance(info.prices, list):  # variants by date or time of day
        variants = [p for p in (_price_of(c.prices) for c in info.prices) if p is not None]
        price, timed = (_highest(variants), info) if variants else (None, None)
    else:
        price = _price_of(info.prices)
    ids = {model, upstream} | ({info.id} if info is not None else set())
    context = (info.context_window if info is not None else None) or 0
    return Offer(provider, model, upstream, price, context, max_output_of(upstream), ids=frozenset(ids), timed=timed)


@lru_cache(maxsize=4096)  # bounded: ids come from clients
def resolve(provider: str, model: str) -> Offer | None:
    """The offer of `model` on `provider` (one of ours), by our alias or by any id the provider
    uses for it, or None when neither knows it."""
    for alias in _ALIASES_BY_MODEL.get(model, []):
        if alias.provider == provider:
            fixed = flat_price(Decimal(alias.price[0]), Decimal(alias.price[1])) if alias.price else None
            info = None if fixed else _genai_model(provider, alias.upstream)
            return _offer_from_genai(provider, model, alias.upstream, info, fixed)
    for alias in ALIASES:  # a host's own id for an aliased model
        if alias.provider == provider and alias.upstream == model:
            return resolve(provider, alias.model)
    info = _genai_model(provider, model)
    if info is None:
        return None
    return _offer_from_genai(provider, model, model, info, None)


@lru_cache(maxsize=4096)
def offers_of(model: str) -> tuple[Offer, ...]:
    """Every provider's offer of a bare model id, cheapest first (input + output price, then
    provider id for a stable order). An id our catalog aliases goes only to its hosts."""
    if model in _ALIASES_BY_MODEL:
        found = [resolve(a.provider, model) for a in _ALIASES_BY_MODEL[model]]
    else:
        found = [resolve(provider, model) for provider in GENAI_PROVIDERS]
    offers = [o for o in found if o is not None and o.priced]
    return tuple(sorted(offers, key=lambda o: (o.input_price + o.output_price, o.provider)))


def unknown_offer(provider: str, model: str) -> Offer:
    """A pinned model neither the catalog nor genai-prices knows: passed through unpriced."""
    return Offer(provider, model, model, None, 0, DEFAULT_MAX_OUTPUT, ids=frozenset({model}))


def custom_offer(name: str, model: str, price: tuple[Decimal, Decimal] | None = None) -> Offer:
    """A model of an organization's custom provider, priced when its provider key declares
    (input, output) USD per 1M tokens for it, else unpriced (the organization pays its own
    provider, and the request is logged at 0)."""
    return Offer("custom", model, model, flat_price(*price) if price else None, 0, DEFAULT_MAX_OUTPUT,
                 custom_name=name, ids=frozenset({model}))


# --- embeddings -----------------------------------------------------------------------------------


def _embedding_price(input_price: Rate | Decimal) -> Price:
    """An embedding's price: its input rate (no output, no prompt cache)."""
    rate = input_price if isinstance(input_price, Rate) else Rate(input_price)
    return Price(rate, Rate(Decimal(0)), rate, rate)


@lru_cache(maxsize=1024)  # bounded: ids come from clients
def resolve_embedding(provider: str, model: str) -> Offer | None:
    """An embedding model of one of EMBEDDING_PROVIDERS, priced per input token (it has no
    output), or None when the price database does not know it."""
    if provider not in EMBEDDING_PROVIDERS:
        return None
    info = _genai_model(provider, model)
    if info is None or not _EMBEDDING_MODEL.search(info.id):  # a chat model is not an embedding model
        return None
    prices = info.prices[0].prices if isinstance(info.prices, list) else info.prices
    rate = _rate(prices.input_mtok)
    if rate is None:
        return None
    price = _embedding_price(rate)
    return Offer(provider, model, model, price, info.context_window or 0, 0, ids=frozenset({model, info.id}))


@lru_cache(maxsize=1024)
def embedding_offers(model: str) -> tuple[Offer, ...]:
    """Every provider's offer of a bare embedding model id, cheapest first."""
    found = [resolve_embedding(provider, model) for provider in EMBEDDING_PROVIDERS]
    return tuple(sorted((o for o in found if o is not None), key=lambda o: (o.input_price, o.provider)))


def unknown_embedding_offer(provider: str, model: str) -> Offer:
    """A pinned embedding model the database does not know: passed through unpriced."""
    return replace(unknown_offer(provider, model), max_output=0)


def custom_embedding_offer(name: str, model: str, price: tuple[Decimal, Decimal] | None = None) -> Offer:
    """An embedding model of a custom provider, at its declared input price (USD per 1M tokens)."""
    return replace(custom_offer(name, model), price=_embedding_price(price[0]) if price else None, max_output=0)


# The models /v1/models lists for each provider: the database's, less what is not a chat model.
_NOT_CHAT = re.compile(
    r"(embed|tts|transcribe|whisper|realtime|image|ocr|live|orpheus|guard|audio|search|computer-use|"
    r"moderation|dall-e|sora|^ft:|davinci|babbage|^ada|^curie|:free|:extended|\.ft-)",
    re.IGNORECASE,
)


@cache
def model_ids() -> tuple[str, ...]:
    """Every model id the catalog lists (bare), sorted: what /v1/models starts from."""
    return tuple(sorted({o.model for provider in GENAI_PROVIDERS for o in listed(provider)}))


@cache
def listed(provider: str) -> tuple[Offer, ...]:
    """The chat models the catalog lists for one of our providers: its aliases and the price
    database's current models (deprecated ones left out)."""
    offers = {a.model: resolve(provider, a.model) for a in ALIASES if a.provider == provider}
    genai_id = GENAI_PROVIDERS.get(provider)
    if genai_id is not None:
        for info in data_snapshot.get_snapshot().find_provider(None, genai_id, None).models:
            if info.deprecated or _NOT_CHAT.search(info.id):
                continue
            if provider == "google-ai-studio" and not _GOOGLE_AI_STUDIO_MODEL.match(info.id):
                continue
            offers.setdefault(info.id, resolve(provider, info.id))
    return tuple(o for o in offers.values() if o is not None and o.priced)
