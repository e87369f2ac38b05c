"""JSON shapes of usage logs, the credits ledger and spending alerts (docs/api.md)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.rest import MoneyField, PageQuery, StrictSerializer
from usage.analytics import GROUP_BY
from usage.models import CreditTransaction, SpendAlert


class UsageLogOut(serializers.Serializer):
    id = serializers.CharField()
    requestId = serializers.CharField(source="request_id")
    projectId = serializers.CharField(source="project_id")
    apiKeyId = serializers.CharField(source="api_key_id")
    createdAt = serializers.DateTimeField(source="created_at")
    requestedModel = serializers.CharField(source="requested_model")
    usedModel = serializers.CharField(source="used_model")
    usedProvider = serializers.CharField(source="used_provider")
    usedMode = serializers.CharField(source="used_mode")
    streamed = serializers.BooleanField()
    cached = serializers.BooleanField()
    promptTokens = serializers.IntegerField(source="prompt_tokens")
    completionTokens = serializers.IntegerField(source="completion_tokens")
    totalTokens = serializers.IntegerField(source="total_tokens")
    cost = MoneyField()
    inputCost = MoneyField(source="input_cost")
    outputCost = MoneyField(source="output_cost")
    fee = MoneyField()
    duration = serializers.IntegerField(help_text="milliseconds")
    timeToFirstToken = serializers.IntegerField(source="time_to_first_token", allow_null=True, help_text="milliseconds")
    finishReason = serializers.CharField(source="finish_reason")
    statusCode = serializers.IntegerField(source="status_code")
    hasError = serializers.BooleanField(source="has_error")
    errorMessage = serializers.CharField(source="error_message")
    canceled = serializers.BooleanField()
    endpoint = serializers.CharField(help_text="chat.completions | messages | responses | embeddings")
    cachedTokens = serializers.IntegerField(source="cached_tokens", help_text="prompt tokens read from the provider's prompt cache")
    cacheWriteTokens = serializers.IntegerField(source="cache_write_tokens", help_text="prompt tokens written to it")
    reasoningTokens = serializers.IntegerField(source="reasoning_tokens", help_text="of completionTokens")
    priced = serializers.BooleanField(help_text="false when the model's price is unknown and it was logged at 0")
    user = serializers.CharField()


class LogContentOut(serializers.Serializer):
    request = serializers.JSONField(help_text="the request's messages (or input), system prompt and tools, as the client wrote "
                                              "them; pictures and files as references {type, media_type, bytes, sha256}")
    response = serializers.JSONField(allow_null=True, help_text="the answer: {role, content, reasoning?, toolCalls?}; "
                                                                "null when none came")
    truncated = serializers.BooleanField(help_text="something was cut to fit the size cap (256 KB a request)")


class UsageLogDetailOut(UsageLogOut):
    """A log with what was asked and answered (`content`, null when the project did not keep it)."""

    content = serializers.SerializerMethodField()

    @extend_schema_field(LogContentOut(allow_null=True))
    def get_content(self, log) -> dict | None:
        return self.context.get("content")


class TransactionOut(serializers.Serializer):
    id = serializers.CharField()
    organizationId = serializers.CharField(source="organization_id")
    kind = serializers.ChoiceField(choices=CreditTransaction.Kind.choices)
    amount = serializers.SerializerMethodField()
    balanceAfter = MoneyField(source="balance_after")
    note = serializers.CharField()
    usageLogId = serializers.CharField(source="usage_log_id", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    def get_amount(self, obj) -> str:
        # Signed: MoneyField refuses negatives on input, but a debit is negative.
        return MoneyField(min_value=None).to_representation(obj.amount)


class AlertOut(serializers.Serializer):
    id = serializers.CharField()
    thresholdUsd = MoneyField(source="threshold_usd")
    period = serializers.ChoiceField(choices=SpendAlert.Period.choices)
    projectId = serializers.CharField(source="project_id", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")


class AlertIn(StrictSerializer):
    thresholdUsd = MoneyField(source="threshold_usd")
    period = serializers.ChoiceField(choices=SpendAlert.Period.choices, default=SpendAlert.Period.MONTH)
    projectId = serializers.CharField(source="project_id", max_length=40, required=False, allow_null=True, default=None)


class ScopeQuery(serializers.Serializer):
    """Whose usage: one project, or every project of an organization (exactly one of the two)."""

    projectId = serializers.CharField(source="project_id", max_length=40, required=False)
    organizationId = serializers.CharField(
        source="organization_id", max_length=40, required=False, help_text="instead of projectId: every project of it",
    )

    def validate(self, data):
        given = [name for name in ("project_id", "organization_id") if data.get(name)]
        if len(given) != 1:
            message = "give projectId or organizationId, not both" if given else "give projectId or organizationId"
            raise serializers.ValidationError({"projectId": [message], "organizationId": [message]})
        return data


class UsageQuery(ScopeQuery):
    days = serializers.IntegerField(required=False, min_value=1, max_value=366, default=30)
    groupBy = serializers.ChoiceField(
        source="group_by", choices=list(GROUP_BY), required=False,
        error_messages={"invalid_choice": f"must be one of {', '.join(GROUP_BY)}"},
        help_text="adds `groups`: the sums per API key, model, project or provider",
    )


class LogQuery(ScopeQuery, PageQuery):
    apiKeyId = serializers.CharField(source="api_key_id", max_length=40, required=False)
    model = serializers.CharField(max_length=200, required=False)
    provider = serializers.CharField(max_length=64, required=False)
    cached = serializers.BooleanField(required=False, allow_null=True, default=None)
    hasError = serializers.BooleanField(source="has_error", required=False, allow_null=True, default=None)
    to = serializers.DateTimeField(source="until", required=False)
    format = serializers.ChoiceField(
        choices=["json", "csv"], required=False, error_messages={"invalid_choice": "must be json or csv"},
        help_text="csv (or `Accept: text/csv`): every matching row as a CSV attachment, streamed; cursor and limit do not apply",
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(source="since", required=False)  # a Python keyword
        return fields
