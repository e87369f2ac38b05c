"""The upstream wire formats: one module each, one interface (gateway/wire/base.py)."""

from gateway.wire.base import WireFormat


def for_format(name: str) -> WireFormat:
    from gateway.wire import anthropic, google, openai

    return {"openai": openai.FORMAT, "anthropic": anthropic.FORMAT, "google": google.FORMAT}[name]
