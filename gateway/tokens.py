"""Token counts of one request, as providers report them (pure: used by pricing, the wire
formats and the usage record alike)."""

from dataclasses import dataclass
from typing import Any


@dataclass
class Usage:
    """Tokens a provider billed for one request (OpenAI's `usage` object names them)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def clean_count(value: Any) -> int:
    """A token count from a provider: a non-negative int, whatever it sent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))
