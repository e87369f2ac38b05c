"""Keeping secrets out of text that leaves the process (errors, logs)."""


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
