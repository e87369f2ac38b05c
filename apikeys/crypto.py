"""Provider keys at rest: Fernet with rotation (ENCRYPTION_KEYS, the first encrypts)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured("ENCRYPTION_KEYS must be comma-separated Fernet keys") from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a provider key cannot be decrypted: its encryption key is missing from ENCRYPTION_KEYS"
        ) from None


def rotate(ciphertext: str) -> str:
    """The same secret, encrypted again with the first (newest) key."""
    return fernet().rotate(ciphertext.encode()).decode()
