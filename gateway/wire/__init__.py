"""The upstream wire formats: one module each, one interface (gateway/wire/base.py)."""

from gateway.wire import anthropic, google, openai
from gateway.wire.base import WireFormat

FORMATS: dict[str, WireFormat] = {"openai": openai.FORMAT, "anthropic": anthropic.FORMAT, "google": google.FORMAT}


def for_format(name: str) -> WireFormat:
    """The wire format a provider speaks (`Provider.wire_format`)."""
    return FORMATS[name]
