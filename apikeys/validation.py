"""Checks a provider key against the provider before it is saved (synchronous, `requests`)."""

import requests
from django.conf import settings

from core.errors import ValidationFailed
from core.redaction import redact
from gateway.providers import PROVIDERS


def _probe(provider: str, token: str, base_url: str) -> tuple[str, dict]:
    """The cheapest authenticated call of each wire format: list the models."""
    wire = PROVIDERS[provider].wire_format
    if wire == "anthropic":
        return f"{base_url}/v1/models", {"x-api-key": token, "anthropic-version": "2023-06-01"}
    if wire == "google":
        return f"{base_url}/v1beta/models", {"x-goog-api-key": token}
    return f"{base_url}/models", {"Authorization": f"Bearer {token}"}


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return response.reason or "rejected"


def _fail(message: str) -> ValidationFailed:
    return ValidationFailed(f"token: {message}", code="provider_key_rejected", fields={"token": [message]})


def validate_provider_token(*, provider: str, token: str, base_url: str) -> None:
    """Raises a 400 with the provider's reason (never the key) when the key is refused."""
    url, headers = _probe(provider, token, base_url)
    try:
        response = requests.get(
            url, headers=headers, timeout=settings.PROVIDER_VALIDATION_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as e:
        raise _fail(f"could not reach {PROVIDERS[provider].name}: {type(e).__name__}") from None
    if response.status_code == 200:
        return
    reason = redact(_reason(response), token)
    raise _fail(f"{PROVIDERS[provider].name} rejected the key (HTTP {response.status_code}): {reason}")
