"""The models the gateway offers and what each provider charges for them: data, in one place.

Prices are USD per 1M tokens. A model may be served by several providers; a bare model id
goes to the cheapest one the project can use (gateway/routing.py).
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Offer:
    """One provider serving one model."""

    provider: str
    model: str  # the gateway's model id, e.g. "gpt-4o-mini"
    upstream_model: str  # the id the provider knows it by
    input_price: Decimal
    output_price: Decimal
    context_length: int
    max_output: int
    custom_name: str = ""  # for provider "custom": the organization's name for it

    @property
    def is_free(self) -> bool:
        return self.input_price == 0 and self.output_price == 0


def _offer(
    provider: str, model: str, input_price: str, output_price: str, context: int, max_output: int, upstream: str | None = None
) -> Offer:
    return Offer(provider, model, upstream or model, Decimal(input_price), Decimal(output_price), context, max_output)


OFFERS: list[Offer] = [
    # OpenAI
    _offer("openai", "gpt-4o", "2.50", "10.00", 128_000, 16_384),
    _offer("openai", "gpt-4o-mini", "0.15", "0.60", 128_000, 16_384),
    _offer("openai", "gpt-4.1", "2.00", "8.00", 1_047_576, 32_768),
    _offer("openai", "gpt-4.1-mini", "0.40", "1.60", 1_047_576, 32_768),
    _offer("openai", "o4-mini", "1.10", "4.40", 200_000, 100_000),
    # Anthropic
    _offer("anthropic", "claude-sonnet-4", "3.00", "15.00", 200_000, 64_000, "claude-sonnet-4-20250514"),
    _offer("anthropic", "claude-3-5-haiku", "0.80", "4.00", 200_000, 8_192, "claude-3-5-haiku-20241022"),
    # Google AI Studio
    _offer("google-ai-studio", "gemini-2.5-flash", "0.30", "2.50", 1_048_576, 65_536),
    _offer("google-ai-studio", "gemini-2.5-pro", "1.25", "10.00", 1_048_576, 65_536),
    # Mistral
    _offer("mistral", "mistral-large", "2.00", "6.00", 128_000, 8_192, "mistral-large-latest"),
    _offer("mistral", "mistral-small", "0.10", "0.30", 32_000, 8_192, "mistral-small-latest"),
    _offer("mistral", "codestral", "0.30", "0.90", 256_000, 8_192, "codestral-latest"),
    # Groq
    _offer("groq", "llama-3.3-70b-instruct", "0.59", "0.79", 131_072, 32_768, "llama-3.3-70b-versatile"),
    _offer("groq", "llama-3.1-8b-instruct", "0.05", "0.08", 131_072, 8_192, "llama-3.1-8b-instant"),
    _offer("groq", "gpt-oss-120b", "0.15", "0.75", 131_072, 32_768, "openai/gpt-oss-120b"),
    # DeepSeek
    _offer("deepseek", "deepseek-chat", "0.27", "1.10", 64_000, 8_192),
    _offer("deepseek", "deepseek-reasoner", "0.55", "2.19", 64_000, 32_768),
    # xAI
    _offer("xai", "grok-3", "3.00", "15.00", 131_072, 16_384),
    _offer("xai", "grok-3-mini", "0.30", "0.50", 131_072, 16_384),
    # Together AI
    _offer("together-ai", "llama-3.3-70b-instruct", "0.88", "0.88", 131_072, 8_192, "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    _offer("together-ai", "deepseek-chat", "1.25", "1.25", 64_000, 8_192, "deepseek-ai/DeepSeek-V3"),
    _offer("together-ai", "qwen-2.5-72b-instruct", "1.20", "1.20", 32_768, 8_192, "Qwen/Qwen2.5-72B-Instruct-Turbo"),
    _offer("together-ai", "gpt-oss-120b", "0.15", "0.60", 131_072, 32_768, "openai/gpt-oss-120b"),
]

# model id → its offers, cheapest first (input + output price, then provider id for a stable order)
BY_MODEL: dict[str, list[Offer]] = {}
for _offer_ in sorted(OFFERS, key=lambda o: (o.input_price + o.output_price, o.provider)):
    BY_MODEL.setdefault(_offer_.model, []).append(_offer_)


def custom_offer(name: str, model: str) -> Offer:
    """A model of an organization's custom provider: its price is unknown, so it costs 0
    through the gateway (the organization pays its own provider)."""
    return Offer("custom", model, model, Decimal(0), Decimal(0), 0, 0, custom_name=name)
