from decimal import Decimal

from django.conf import settings
from django.db import models

from apikeys import crypto
from core.ids import PrefixedIdField
from core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS
from projects.models import Organization, Project


def mask(token: str, keep_start: int = 0) -> str:
    """`…9xYz` (or `llmgw_…9xYz` keeping a known prefix): enough to recognise a key, never
    enough to use it. Short tokens show less."""
    if len(token) < 16:
        return "…" + token[-2:] if len(token) > 8 else "…"
    return f"{token[:keep_start]}…{token[-4:]}"


class ApiKey(models.Model):
    """A project's key to the gateway. Only the SHA-256 of the token is stored."""

    PREFIX = "llmgw_"

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    class DisabledReason(models.TextChoices):
        USAGE_LIMIT = "usage_limit"
        MANUAL = "manual"
        EXPIRED = "expired"

    class PeriodDuration(models.TextChoices):
        """Recurring windows, aligned to UTC: the hour, the day, the ISO week (from Monday), the month."""

        HOUR = "hour"
        DAY = "day"
        WEEK = "week"
        MONTH = "month"

    id = PrefixedIdField(prefix="key")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    masked_token = models.CharField(max_length=32, editable=False)
    description = models.CharField(max_length=255, blank=True)
    usage_limit = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True,
        help_text="USD; empty for no limit",
    )
    usage = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, default=Decimal("0")
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    disabled_reason = models.CharField(max_length=32, choices=DisabledReason.choices, null=True, blank=True)
    period_usage_limit = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True,
        help_text="USD per period; empty for none",
    )
    period_usage_duration = models.CharField(max_length=8, choices=PeriodDuration.choices, null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    rate_limit_rpm = models.PositiveIntegerField(null=True, blank=True, help_text="requests per minute; empty for none")
    rate_limit_tpm = models.PositiveIntegerField(null=True, blank=True, help_text="tokens per minute; empty for none")
    # Rolling a key: the token it replaced keeps working until then (SHA-256, as token_hash).
    previous_token_hash = models.CharField(max_length=64, null=True, blank=True, editable=False, db_index=True)
    previous_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not stored: set by the dashboard for display (apikeys/views.py).
    usage_percent: int | None

    class Meta:
        ordering = ["created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.masked_token} ({self.id})"


class IamRule(models.Model):
    class Type(models.TextChoices):
        ALLOW_MODELS = "allow_models"
        DENY_MODELS = "deny_models"
        ALLOW_PROVIDERS = "allow_providers"
        DENY_PROVIDERS = "deny_providers"
        ALLOW_PRICING = "allow_pricing"
        DENY_PRICING = "deny_pricing"

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    id = PrefixedIdField(prefix="iam")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="iam_rules")
    rule_type = models.CharField(max_length=32, choices=Type.choices)
    rule_value = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not stored: set by the dashboard for display (apikeys/views.py).
    label: str
    text: str

    class Meta:
        ordering = ["created_at"]
        verbose_name = "IAM rule"

    def __str__(self):
        return f"{self.rule_type} {self.rule_value}"


class ProviderKey(models.Model):
    """An organization's own key to an upstream provider, encrypted at rest (apikeys/crypto.py)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"
        INVALID = "invalid"  # the provider kept rejecting it: skipped until a user changes it

    id = PrefixedIdField(prefix="pk")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(max_length=32)
    # For `custom` the name addresses its models (`<name>/<model>`); for others a label.
    name = models.CharField(max_length=64, blank=True)
    base_url = models.URLField(max_length=2048, blank=True)
    # Custom providers only: {"<model>": {"inputPrice": "0.5", "outputPrice": "1.5"}}, USD per
    # 1M tokens as decimal strings (the API's names, as IamRule.rule_value keeps them); written
    # only through apikeys.services.provider_prices_clean.
    prices = models.JSONField(default=dict, blank=True)
    encrypted_token = models.TextField(editable=False)
    masked_token = models.CharField(max_length=32, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Several keys of one provider: lower first; the next on 401, 403, 429, 5xx or a timeout.
    priority = models.IntegerField(default=0)
    # Set with status INVALID by the gateway (apikeys.services.provider_key_mark_invalid): how many
    # times in a row the provider refused the key, and its last HTTP status; cleared with it.
    rejections = models.PositiveIntegerField(default=0, editable=False)
    rejected_status = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "created_at"]
        verbose_name = "provider key"
        indexes = [models.Index(fields=["organization", "provider"])]

    def __str__(self):
        return f"{self.provider} {self.name} {self.masked_token} ({self.id})"

    @property
    def invalid_reason(self) -> str | None:
        """Why the gateway stopped using this key, for people (None unless it is invalid)."""
        if self.status != self.Status.INVALID:
            return None
        n = self.rejections
        times = f" {n} time{'s' if n != 1 else ''} in a row" if n else ""
        status = f" (HTTP {self.rejected_status})" if self.rejected_status else ""
        return f"The provider rejected this key{times}{status}; fix or replace it."

    def plaintext_token(self) -> str:
        """The decrypted key, for the call upstream only (never logged, never answered)."""
        return crypto.decrypt(self.encrypted_token)
