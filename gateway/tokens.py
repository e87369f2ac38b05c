"""Token counts of one request, as providers report them (pure: used by pricing, the wire
formats and the usage record alike). Named and counted the way OpenAI's `usage` object does:
`prompt_tokens` is every input token, cached ones and cache writes included;
`completion_tokens` every output token, reasoning included."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(slots=True)
class Usage:
    """Tokens a provider billed for one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it (Anthropic's cache_creation_input_tokens)
    reasoning_tokens: int = 0  # of completion_tokens: spent thinking
    audio_tokens: int = 0  # of prompt_tokens (not cached): audio input, priced apart

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self, cost: Decimal | None = None) -> dict[str, Any]:
        """OpenAI's usage object, with `cost` (USD, a number) when it is known."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if cost is not None:
            usage["cost"] = float(cost)
        return usage


def clean_count(value: Any) -> int:
    """A token count from a provider: a non-negative int, whatever it sent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))
