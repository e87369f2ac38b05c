"""Reads shared by several pages."""

from dataclasses import dataclass

from django.conf import settings

from apikeys.models import ProviderKey
from projects.models import Project


@dataclass(frozen=True)
class PaymentGap:
    """Why a project's first gateway request would fail before reaching a provider.

    `status` and `code` are what the gateway would answer (402 insufficient_credits, or 400
    provider_key_missing); `message` says what to do about it."""

    status: int
    code: str
    message: str


def payment_gap(project: Project) -> PaymentGap | None:
    """None when some request of this project can be paid under its mode: by one of the
    organization's active provider keys (modes api-keys and hybrid), or by credits when the
    organization has more than $0 and the gateway has a provider key of its own (modes
    credits and hybrid). Otherwise what the first request would answer, and why."""
    organization = project.organization
    own_keys = ProviderKey.objects.filter(organization=organization, status=ProviderKey.Status.ACTIVE).exists()
    credits_usable = organization.credits > 0 and any(settings.PROVIDER_API_KEYS.values())
    mode = project.mode
    if mode == Project.Mode.API_KEYS and not own_keys:
        return PaymentGap(
            400, "provider_key_missing",
            "This project uses the organization's own provider keys (api-keys mode), and the organization has none "
            "yet: requests will fail until one is added under Provider Keys.",
        )
    if mode == Project.Mode.CREDITS and not credits_usable:
        return PaymentGap(
            402, "insufficient_credits",
            "This project pays with credits, and the organization has no credits to spend: requests will answer 402 "
            "until the gateway's operator adds credits. Or switch the project to hybrid mode and add a provider key "
            "under Provider Keys.",
        )
    if mode == Project.Mode.HYBRID and not own_keys and not credits_usable:
        return PaymentGap(
            402, "insufficient_credits",
            "The organization has no provider key and no credits yet, so requests will answer 402. Add your own "
            "provider key (OpenAI, Anthropic, Google, ...) under Provider Keys to pay the provider directly.",
        )
    return None
