"""The providers the gateway speaks to: id, wire format and public base URL.

Pure data, importable from settings. The model catalog with prices lives beside it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    wire_format: str  # "openai" | "anthropic" | "google"
    base_url: str  # the vendor SDK's convention (docs/api.md, "Base URLs")
    # The most choices (`n`) one request may ask for: Claude, Groq and DeepSeek answer one only
    # (their API references), Gemini up to 8 candidates (candidateCount).
    max_choices: int = 128

    @property
    def env_prefix(self) -> str:
        return self.id.upper().replace("-", "_")


PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in [
        Provider("openai", "OpenAI", "openai", "https://api.openai.com/v1"),
        Provider("anthropic", "Anthropic", "anthropic", "https://api.anthropic.com", max_choices=1),
        Provider(
            "google-ai-studio",
            "Google AI Studio",
            "google",
            "https://generativelanguage.googleapis.com",
            max_choices=8,
        ),
        Provider("mistral", "Mistral", "openai", "https://api.mistral.ai/v1"),
        Provider("groq", "Groq", "openai", "https://api.groq.com/openai/v1", max_choices=1),
        Provider("deepseek", "DeepSeek", "openai", "https://api.deepseek.com/v1", max_choices=1),
        Provider("xai", "xAI", "openai", "https://api.x.ai/v1"),
        Provider("together-ai", "Together AI", "openai", "https://api.together.xyz/v1"),
        # Any OpenAI-compatible server; its base URL comes from the provider key.
        Provider("custom", "Custom (OpenAI-compatible)", "openai", ""),
    ]
}
