"""Hashing of secrets that are looked up but never stored in the clear (API keys, session tokens)."""

import hashlib


def sha256_hex(value: str) -> str:
    """The SHA-256 of `value` (UTF-8) as 64 lowercase hex digits."""
    return hashlib.sha256(value.encode()).hexdigest()
