"""Reads of keys shared by the REST API and the dashboard."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum

from apikeys.models import ApiKey, IamRule, ProviderKey
from core import periods
from gateway import allow
from gateway.allow import Verdict
from gateway.snapshot import KeySnapshot, snapshot_of
from projects.models import Project
from usage.models import UsageLog


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


@dataclass(frozen=True)
class Period:
    """A key's current recurring window: [start, end) in UTC and what it spent in it (USD,
    as the usage log has it: within about a second of the gateway)."""

    start: datetime
    end: datetime
    usage: Decimal


def api_key_period(key: ApiKey, now: datetime | None = None) -> Period | None:
    """The key's current window of its recurring limit, or None for a key without one. One query."""
    if key.period_usage_limit is None or not key.period_usage_duration:
        return None
    start, end = periods.window(key.period_usage_duration, now)
    spent = UsageLog.objects.filter(project_id=key.project_id, api_key_id=key.id, created_at__gte=start).aggregate(
        total=Sum("cost"))["total"]
    return Period(start, end, spent or Decimal(0))


def _active_provider_keys(organization_id: str):
    return ProviderKey.objects.filter(organization_id=organization_id, status=ProviderKey.Status.ACTIVE).order_by("created_at")


def project_snapshot(project: Project) -> KeySnapshot:
    """What the gateway would know about a key of this project with no rules and no limit:
    to ask the gateway's own routing which models the project can use now."""
    return snapshot_of(key=None, project=project, rules=(), provider_keys=_active_provider_keys(project.organization_id),
                       with_tokens=False)


def api_key_check(*, api_key: ApiKey, model: str) -> Verdict:
    """What the gateway would do with this key and model (gateway.allow.check), from the
    database's current state, without calling any provider."""
    project = Project.objects.select_related("organization").get(pk=api_key.project_id)
    rules = api_key.iam_rules.filter(status=IamRule.Status.ACTIVE).order_by("created_at")
    snapshot = snapshot_of(key=api_key, project=project, rules=rules,
                           provider_keys=_active_provider_keys(project.organization_id), with_tokens=False)
    return allow.check(snapshot, model)
