"""Dashboard forms of API keys, IAM rules and provider keys (parsing only: the services
decide, and their errors are shown on the form)."""

from datetime import UTC

from django import forms

from apikeys import services
from core.errors import ServiceError
from core.periods import DURATIONS
from gateway.iam import RULE_LABELS
from gateway.providers import PROVIDERS


class ApiKeyForm(forms.Form):
    description = forms.CharField(
        max_length=255, required=False, help_text="What this key is used for, e.g. \u201cBackend, production\u201d."
    )
    usage_limit = forms.DecimalField(
        required=False, min_value=0, max_digits=24, decimal_places=10, label="Usage limit (USD)",
        help_text="Optional. The key is disabled once its usage reaches the limit.",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal", "placeholder": "No limit"}),
    )
    period_usage_limit = forms.DecimalField(
        required=False, min_value=0, max_digits=24, decimal_places=10, label="Recurring limit (USD)",
        help_text="Optional. Requests are refused once this much is spent in the window; it starts again in the next.",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal", "placeholder": "No limit"}),
    )
    period_usage_duration = forms.ChoiceField(
        required=False, choices=[("", "—"), *[(d, f"per {d} (UTC)") for d in DURATIONS]], label="Window",
    )
    expires_at = forms.DateTimeField(
        required=False, label="Expires at (UTC)", help_text="Optional. The key stops working at this time.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    rate_limit_rpm = forms.IntegerField(required=False, min_value=1, label="Requests per minute",
                                        widget=forms.NumberInput(attrs={"placeholder": "No limit"}))
    rate_limit_tpm = forms.IntegerField(required=False, min_value=1, label="Tokens per minute",
                                        widget=forms.NumberInput(attrs={"placeholder": "No limit"}))

    def clean_period_usage_duration(self):
        return self.cleaned_data["period_usage_duration"] or None

    def clean_expires_at(self):
        """The browser sends a local time without a zone: the form says UTC, so it is read as UTC."""
        value = self.cleaned_data["expires_at"]
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ApiKeyRollForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        coerce=int, initial=0, label="The old token keeps working for",
        choices=[(0, "no time: it stops now"), (300, "5 minutes"), (3600, "1 hour"), (86400, "1 day")],
    )




def _names(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class IamRuleForm(forms.Form):
    """One form for the six rule types: the fields that matter depend on the type."""

    rule_type = forms.ChoiceField(choices=list(RULE_LABELS.items()), label="Rule")
    models = forms.CharField(
        required=False, max_length=20000, label="Models",
        help_text="Comma-separated model ids, e.g. gpt-4o-mini, openai/gpt-4o.",
    )
    providers = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="Providers")
    pricing_type = forms.ChoiceField(
        required=False, choices=[("", "Any"), ("free", "Free"), ("paid", "Paid")], label="Pricing"
    )
    max_input_price = forms.DecimalField(required=False, min_value=0, max_digits=20, decimal_places=6,
                                         label="Max input price (USD / 1M tokens)")
    max_output_price = forms.DecimalField(required=False, min_value=0, max_digits=20, decimal_places=6,
                                          label="Max output price (USD / 1M tokens)")

    def __init__(self, *args, custom_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(p.id, p.name) for p in PROVIDERS.values() if p.id != "custom"]
        choices += [(name, f"{name} (custom)") for name in custom_names]
        self.fields["providers"].choices = choices

    # The pricing fields and their keys in the rule's value (the stored JSON's own names).
    VALUE_KEYS = {"pricing_type": "pricingType", "max_input_price": "maxInputPrice", "max_output_price": "maxOutputPrice"}

    def field_for(self, error_field: str) -> str:
        """The form field a service error about `rule_value.<key>` belongs on."""
        key = error_field.rsplit(".", 1)[-1]
        return next((field for field, k in self.VALUE_KEYS.items() if k == key), key)

    def rule_value(self) -> dict:
        """The service's rule value for the chosen type (the service validates it)."""
        data = self.cleaned_data
        kind = data["rule_type"].split("_", 1)[1]
        if kind == "models":
            return {"models": _names(data.get("models") or "")}
        if kind == "providers":
            return {"providers": list(data.get("providers") or [])}
        return {key: str(data[field]) for field, key in self.VALUE_KEYS.items() if data.get(field) not in (None, "")}


class IamCheckForm(forms.Form):
    model = forms.CharField(max_length=200, label="Model", help_text="A model id, or provider/model to pin a provider.")


class ProviderKeyForm(forms.Form):
    provider = forms.ChoiceField(choices=[(p.id, p.name) for p in PROVIDERS.values()])
    token = forms.CharField(
        max_length=4096, label="API key", strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="Encrypted at rest; only its last 4 characters are shown again.",
    )
    name = forms.CharField(
        max_length=64, required=False,
        help_text="Custom providers: lowercase letters, digits and '-', used in model ids as <name>/<model>. "
                  "Others: a label, which tells several keys of one provider apart.",
    )
    priority = forms.IntegerField(
        required=False, initial=0, min_value=services.PRIORITY_MIN, max_value=services.PRIORITY_MAX,
        help_text="Several keys of one provider are tried lowest first: the next on a refusal, a rate limit, "
                  "a server error or a timeout.",
    )
    base_url = forms.CharField(
        max_length=2048, required=False, label="Base URL",
        help_text="Custom providers: the base URL of the OpenAI-compatible API (…/v1). Others: leave empty.",
        widget=forms.URLInput(attrs={"placeholder": "https://…/v1"}),
    )
    prices = forms.JSONField(
        required=False, label="Prices (JSON)",
        help_text="Custom providers, optional: USD per 1M tokens of each model, so that its requests cost "
                  "something and usage limits apply to them.",
        widget=forms.Textarea(attrs={
            "rows": 3, "spellcheck": "false", "placeholder": '{"my-model": {"inputPrice": "0.5", "outputPrice": "1.5"}}',
        }),
    )
    validate = forms.BooleanField(required=False, initial=True, label="Check the key with the provider before saving")

    def clean_priority(self):
        return self.cleaned_data["priority"] or 0

    def clean_prices(self):
        # The service checks them again; here its message keeps the full name of the entry at
        # fault (`prices.<model>.inputPrice: …`), which one field's error would otherwise lose.
        try:
            return services.provider_prices_clean(self.cleaned_data.get("prices"))
        except ServiceError as e:
            raise forms.ValidationError(e.message) from None


class ProviderKeyEditForm(forms.Form):
    """A key's name and priority, and optionally a new token (checked with the provider), from its row."""

    name = forms.CharField(max_length=64, required=False)
    priority = forms.IntegerField(min_value=services.PRIORITY_MIN, max_value=services.PRIORITY_MAX)
    token = forms.CharField(max_length=4096, required=False, strip=True)

    def changes(self) -> dict:
        """The service's arguments: a blank token leaves the key's as it is."""
        data = dict(self.cleaned_data)
        if not data.get("token"):
            data.pop("token", None)
        return {**data, "validate": "token" in data}
