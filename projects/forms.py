"""Dashboard forms of accounts, organizations, members and projects. They only parse what a
person typed; the services decide what is allowed and their errors are shown on the form."""

from typing import cast

from django import forms

from projects.models import Membership, Project

Mode = Project.Mode


class SignupForm(forms.Form):
    name = forms.CharField(max_length=255, required=False, label="Your name")
    email = forms.EmailField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs["autocomplete"] = "email"
        self.fields["password"].help_text = "At least 8 characters, not only digits and not a common password."


class LoginForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), strip=False)


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=255, label="Organization name")


class MemberAddForm(forms.Form):
    email = forms.EmailField(max_length=254, help_text="They get an email with a link to accept (an account of theirs is not needed yet).")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


# --- projects: the wizard's steps and the settings page share these fields -------------------

# The guide's cache duration ranges, each with a few common values (seconds).
DURATION_GROUPS = [
    ("10–60 seconds: real-time data with light caching", [(10, "10 seconds"), (30, "30 seconds"), (60, "60 seconds")]),
    ("5–15 minutes: general queries with moderate caching", [(300, "5 minutes"), (600, "10 minutes"), (900, "15 minutes")]),
    ("1–24 hours: static content or documentation queries",
     [(3600, "1 hour"), (21600, "6 hours"), (43200, "12 hours"), (86400, "24 hours")]),
    ("Days/weeks: unchanging content like historical data",
     [(172800, "2 days"), (604800, "1 week"), (1209600, "2 weeks"), (2419200, "4 weeks"), (31536000, "1 year")]),
]
DURATION_SECONDS = {seconds for _, options in DURATION_GROUPS for seconds, _ in options}

MODE_HELP = {
    Mode.HYBRID: "Uses your organization's provider keys when one is configured (no gateway fee) "
                 "and falls back to gateway credits (with the gateway fee).",
    Mode.API_KEYS: "Every request uses your organization's provider keys; no credits are used.",
    Mode.CREDITS: "Every request uses gateway credits; provider keys are ignored.",
}
MODE_LABELS = {Mode.HYBRID: "Hybrid", Mode.API_KEYS: "API keys", Mode.CREDITS: "Credits"}


def describe_seconds(seconds: int) -> str:
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def duration_choices(current: int | None = None) -> list:
    groups = [(label, [(str(s), text) for s, text in options]) for label, options in DURATION_GROUPS]
    if current is not None and current not in DURATION_SECONDS:
        groups.insert(0, ("Current setting", [(str(current), describe_seconds(current))]))
    return groups


class ProjectNameForm(forms.Form):
    name = forms.CharField(
        max_length=255, label="Project name", help_text='A descriptive name, e.g. "Production API" or "Mobile App".'
    )


class ProjectModeForm(forms.Form):
    mode = forms.ChoiceField(
        choices=[(m, MODE_LABELS[m]) for m in (Mode.HYBRID, Mode.API_KEYS, Mode.CREDITS)],
        initial=Mode.HYBRID,
        widget=forms.RadioSelect,
    )


class ProjectCachingForm(forms.Form):
    caching_enabled = forms.BooleanField(required=False, label="Cache responses")
    cache_duration_seconds = forms.TypedChoiceField(coerce=int, initial="60", label="Keep answers for")

    def __init__(self, *args, current_duration: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.TypedChoiceField, self.fields["cache_duration_seconds"]).choices = duration_choices(current_duration)


class ProjectContentForm(forms.Form):
    log_content = forms.BooleanField(required=False, label="Keep request content")
    content_retention_days = forms.IntegerField(
        required=False, min_value=Project.MIN_RETENTION_DAYS, max_value=Project.MAX_RETENTION_DAYS,
        label="Keep content for (days)",
        help_text=f"From {Project.MIN_RETENTION_DAYS} to {Project.MAX_RETENTION_DAYS} days; older content is deleted.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("content_retention_days") is None:
            cleaned.pop("content_retention_days", None)  # left empty: unchanged
        return cleaned


class ProjectSettingsForm(ProjectNameForm, ProjectModeForm, ProjectCachingForm, ProjectContentForm):
    pass


class ProjectDeleteForm(forms.Form):
    confirm_name = forms.CharField(max_length=255, label="Type the project's name to confirm", strip=False)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_confirm_name(self):
        value = self.cleaned_data["confirm_name"]
        if value != self.project.name:
            raise forms.ValidationError("This is not the project's name; nothing was deleted.")
        return value
