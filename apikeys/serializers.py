"""JSON shapes of API keys, IAM rules and provider keys (docs/api.md)."""

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apikeys.models import ApiKey, IamRule, ProviderKey
from apikeys.selectors import api_key_period
from apikeys.services import PRIORITY_MAX, PRIORITY_MIN, USER_STATUSES
from core.money import format_money
from core.periods import DURATIONS
from core.rest import MoneyField, StrictSerializer
from gateway.providers import PROVIDERS


def _prices_schema(price: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {"inputPrice": price, "outputPrice": price},
            "required": ["inputPrice", "outputPrice"],
        },
        "example": {"my-model": {"inputPrice": "0.5", "outputPrice": "1.5"}},
    }


_DECIMAL_STRING = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}


@extend_schema_field(_prices_schema(_DECIMAL_STRING))
class PricesOutField(serializers.JSONField):
    """A custom provider's prices as stored: {"<model>": {"inputPrice", "outputPrice"}}."""


@extend_schema_field(_prices_schema({"oneOf": [_DECIMAL_STRING, {"type": "number", "minimum": 0, "maximum": 10000}]}))
class PricesInField(serializers.JSONField):
    """Parsed as any JSON: apikeys.services.provider_prices_clean checks it and names the
    field at fault (`prices.<model>.inputPrice`)."""


class ApiKeyOut(serializers.Serializer):
    """A key as the API shows it. An expired key shows `status: "inactive"` and
    `disabledReason: "expired"` from its expiry on; `periodUsage` is what the usage log counts
    in the current window (USD), `periodResetsAt` when that window ends."""

    id = serializers.CharField()
    maskedToken = serializers.CharField(source="masked_token")
    description = serializers.CharField()
    usageLimit = MoneyField(source="usage_limit", allow_null=True)
    usage = MoneyField()
    status = serializers.ChoiceField(choices=ApiKey.Status.choices)
    disabledReason = serializers.CharField(source="disabled_reason", allow_null=True)
    periodUsageLimit = MoneyField(source="period_usage_limit", allow_null=True)
    periodUsageDuration = serializers.ChoiceField(source="period_usage_duration", choices=DURATIONS, allow_null=True)
    periodUsage = serializers.CharField(allow_null=True, read_only=True, help_text="USD spent in the current window")
    periodResetsAt = serializers.DateTimeField(allow_null=True, read_only=True)
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    rateLimitRpm = serializers.IntegerField(source="rate_limit_rpm", allow_null=True)
    rateLimitTpm = serializers.IntegerField(source="rate_limit_tpm", allow_null=True)
    projectId = serializers.CharField(source="project_id")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        period = api_key_period(instance)
        data["periodUsage"] = format_money(period.usage) if period else None
        data["periodResetsAt"] = period.end.isoformat().replace("+00:00", "Z") if period else None
        if instance.expires_at is not None and instance.expires_at <= datetime.now(UTC):
            data["status"], data["disabledReason"] = ApiKey.Status.INACTIVE, ApiKey.DisabledReason.EXPIRED
        return data


class ApiKeyCreatedOut(ApiKeyOut):
    """The one answer that carries the token: rendered from (key, plaintext token)."""

    token = serializers.CharField(help_text="shown in this response only")

    def to_representation(self, instance):
        key, token = instance
        data = ApiKeyOut(key).data
        return {"id": data.pop("id"), "token": token, **data}


class IamRuleOut(serializers.Serializer):
    id = serializers.CharField()
    ruleType = serializers.ChoiceField(source="rule_type", choices=IamRule.Type.choices)
    ruleValue = serializers.JSONField(source="rule_value")
    status = serializers.ChoiceField(choices=IamRule.Status.choices)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class ProviderKeyOut(serializers.Serializer):
    id = serializers.CharField()
    organizationId = serializers.CharField(source="organization_id")
    provider = serializers.CharField()
    name = serializers.CharField()
    baseUrl = serializers.CharField(source="base_url", allow_null=True)
    prices = PricesOutField(help_text="custom providers: USD per 1M tokens of each model; `{}` otherwise")
    maskedToken = serializers.CharField(source="masked_token")
    priority = serializers.IntegerField(help_text="several keys of one provider are tried lowest first")
    status = serializers.ChoiceField(
        choices=ProviderKey.Status.choices,
        help_text="`invalid`: the provider kept rejecting the key, so the gateway stopped using it",
    )
    invalidReason = serializers.CharField(source="invalid_reason", allow_null=True,
                                          help_text="why the key is invalid; null otherwise")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["baseUrl"] = data["baseUrl"] or None
        return data


# --- input ------------------------------------------------------------------------------------


class ApiKeyLimitsIn(StrictSerializer):
    """The limits a key may carry besides its usage limit (all optional, null for none)."""

    periodUsageLimit = MoneyField(source="period_usage_limit", required=False, allow_null=True,
                                  help_text="USD per window; needs periodUsageDuration")
    periodUsageDuration = serializers.ChoiceField(source="period_usage_duration", choices=DURATIONS, required=False,
                                                  allow_null=True, help_text="windows aligned to UTC")
    expiresAt = serializers.DateTimeField(source="expires_at", required=False, allow_null=True)
    rateLimitRpm = serializers.IntegerField(source="rate_limit_rpm", required=False, allow_null=True, min_value=1,
                                            max_value=10_000_000, help_text="requests per minute")
    rateLimitTpm = serializers.IntegerField(source="rate_limit_tpm", required=False, allow_null=True, min_value=1,
                                            max_value=2_000_000_000, help_text="tokens per minute")


class ApiKeyIn(ApiKeyLimitsIn):
    projectId = serializers.CharField(source="project_id", max_length=40)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    usageLimit = MoneyField(source="usage_limit", required=False, allow_null=True, default=None)


class ApiKeyPatchIn(ApiKeyLimitsIn):
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    usageLimit = MoneyField(source="usage_limit", required=False, allow_null=True)
    status = serializers.ChoiceField(choices=ApiKey.Status.choices, required=False)


class ApiKeyRollIn(StrictSerializer):
    graceSeconds = serializers.IntegerField(source="grace_seconds", required=False, default=0, min_value=0,
                                            max_value=86_400, help_text="how long the old token keeps working")


class ApiKeyCheckIn(StrictSerializer):
    model = serializers.CharField(max_length=200, help_text="a model id, `provider/model` or `<custom name>/<model>`")


class ApiKeyCheckOut(serializers.Serializer):
    """gateway.allow.Verdict as the API shows it."""

    allowed = serializers.BooleanField(help_text="the gateway would send the request upstream")
    provider = serializers.CharField(allow_null=True, help_text="the provider it would try first")
    mode = serializers.CharField(help_text="api-keys or credits: how it would be paid; the project's mode when refused")
    reasons = serializers.ListField(child=serializers.CharField(), help_text="why it would be refused")


class IamRuleIn(StrictSerializer):
    ruleType = serializers.ChoiceField(source="rule_type", choices=IamRule.Type.choices)
    ruleValue = serializers.JSONField(source="rule_value")
    status = serializers.ChoiceField(choices=IamRule.Status.choices, default="active")


class IamRulePatchIn(StrictSerializer):
    ruleType = serializers.ChoiceField(source="rule_type", choices=IamRule.Type.choices, required=False)
    ruleValue = serializers.JSONField(source="rule_value", required=False)
    status = serializers.ChoiceField(choices=IamRule.Status.choices, required=False)


_PRIORITY_HELP = "several keys of one provider are tried lowest first (the next on 401, 403, 429, 5xx or a timeout)"
_PRICES_HELP = (
    "custom providers only: USD per 1M tokens of each model, decimal strings or numbers (0 to 10000, "
    "at most 9 decimal places); at most 500 models"
)


class ProviderKeyIn(StrictSerializer):
    organizationId = serializers.CharField(source="organization_id", max_length=40)
    provider = serializers.ChoiceField(choices=list(PROVIDERS))
    token = serializers.CharField(max_length=4096, write_only=True)
    baseUrl = serializers.CharField(source="base_url", max_length=2048, required=False, allow_blank=True, default="")
    name = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    prices = PricesInField(required=False, default=dict, help_text=_PRICES_HELP)
    priority = serializers.IntegerField(required=False, default=0, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX,
                                        help_text=_PRIORITY_HELP)
    # DRF's serializer metaclass moves declared fields out of the class, so the validate()
    # hook stays as it is; drf-stubs cannot see that.
    validate = serializers.BooleanField(required=False, default=True)  # type: ignore[assignment]


class ProviderKeyPatchIn(StrictSerializer):
    token = serializers.CharField(max_length=4096, required=False, write_only=True)
    baseUrl = serializers.CharField(source="base_url", max_length=2048, required=False, allow_blank=True)
    name = serializers.CharField(max_length=64, required=False, allow_blank=True)
    prices = PricesInField(required=False, help_text=_PRICES_HELP + "; replaces the key's prices")
    priority = serializers.IntegerField(required=False, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX,
                                        help_text=_PRIORITY_HELP)
    status = serializers.ChoiceField(choices=USER_STATUSES, required=False,
                                     help_text="`active` also brings back a key the gateway marked invalid")
    validate = serializers.BooleanField(required=False, default=True)  # type: ignore[assignment]  # as above

