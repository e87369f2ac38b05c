"""Dashboard forms of the logs' filters and spending alerts."""

from datetime import UTC, date, datetime, time, timedelta

from django import forms

from usage.models import SpendAlert

YES_NO = [("", "Any"), ("yes", "Yes"), ("no", "No")]


class LogFilterForm(forms.Form):
    key = forms.ChoiceField(required=False, label="API key")
    model = forms.CharField(required=False, max_length=200)
    provider = forms.ChoiceField(required=False)
    cached = forms.ChoiceField(required=False, choices=YES_NO)
    # The form's metaclass moves declared fields out of the class, so BaseForm.errors stays
    # as it is; django-stubs cannot see that.
    errors = forms.ChoiceField(  # type: ignore[assignment]
        required=False, choices=[("", "Any"), ("yes", "Only errors"), ("no", "No errors")]
    )
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    cursor = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    FILTERS = ("key", "model", "provider", "cached", "errors", "date_from", "date_to")

    def __init__(self, *args, keys=(), providers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [("", "All keys")] + [(k.pk, k.description or k.masked_token) for k in keys]
        self.fields["provider"].choices = [("", "All providers")] + [(p, p) for p in providers]

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_to"] < data["date_from"]:
            self.add_error("date_to", "must be on or after the From date")
        return data

    def filters(self) -> dict:
        """The cleaned choices as usage.selectors.logs_matching takes them: whole days in UTC."""
        data = self.cleaned_data
        yes_no = {"yes": True, "no": False}
        return {
            "api_key_id": data.get("key") or None,
            "model": data.get("model") or None,
            "provider": data.get("provider") or None,
            "cached": yes_no.get(data.get("cached") or ""),
            "has_error": yes_no.get(data.get("errors") or ""),
            "since": datetime.combine(data["date_from"], time.min, tzinfo=UTC) if data.get("date_from") else None,
            "until": (datetime.combine(data["date_to"] + timedelta(days=1), time.min, tzinfo=UTC)
                      if data.get("date_to") and data["date_to"] < date.max else None),
        }


class AlertForm(forms.Form):
    threshold_usd = forms.DecimalField(
        min_value=0, max_digits=24, decimal_places=10, label="Threshold (USD)",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"}),
    )
    period = forms.ChoiceField(choices=SpendAlert.Period.choices, initial=SpendAlert.Period.MONTH, label="Per")
    project = forms.ChoiceField(required=False, label="Scope")

    def __init__(self, *args, projects=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [("", "The whole organization")] + [(p.pk, p.name) for p in projects]
