"""Dashboard forms of API keys, IAM rules and provider keys (parsing only: the services
decide, and their errors are shown on the form)."""

from django import forms

from apikeys import services
from core.errors import ServiceError
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
                  "Others: an optional label.",
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

    def clean_prices(self):
        # The service checks them again; here its message keeps the full name of the entry at
        # fault (`prices.<model>.inputPrice: …`), which one field's error would otherwise lose.
        try:
            return services.provider_prices_clean(self.cleaned_data.get("prices"))
        except ServiceError as e:
            raise forms.ValidationError(e.message) from None
