"""Keeping secrets out of text that leaves the process (errors, logs)."""

import re


def redact(text: str, secret: str) -> str:
    """Text from a provider with every piece of the secret (8+ characters) cut out:
    some providers echo part of the key they reject."""
    if not secret:
        return text
    window = min(8, len(secret))
    for start in range(len(secret) - window + 1):
        piece = secret[start : start + window]
        if piece in text:
            text = text.replace(piece, "[redacted]")
    return text


# Things that look like credentials wherever they appear: the gateway's own API keys, the
# providers' key formats, and any bearer token. A safety net for text nobody meant to hold a
# secret (log lines, error reports): the prefix stays, to tell what was cut.
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?P<prefix>llmgw_|sk-|gsk_|xai-|AIza)[A-Za-z0-9_\-]{8,}"
    r"|(?P<scheme>(?i:bearer)\s+)[A-Za-z0-9._~+/\-]{8,}=*"
)


def _cut(match: re.Match[str]) -> str:
    return f"{match['prefix'] or match['scheme']}[redacted]"


def redact_tokens(text: str) -> str:
    """Text with every API-key-like token (llmgw_…, sk-…, gsk_…, xai-…, AIza…, Bearer …) cut
    down to its prefix and `[redacted]`."""
    return _TOKEN.sub(_cut, text) if text else text
