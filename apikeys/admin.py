"""Admin pages of API keys, IAM rules and provider keys; every write goes through
apikeys/services.py, so an admin edit is validated and reaches the gateway like any other."""

from django import forms
from django.contrib import admin

from apikeys import services
from apikeys.models import ApiKey, IamRule, ProviderKey
from core.admin import ServiceAdmin, record_formset_saves
from core.errors import ServiceError


class IamRuleForm(forms.ModelForm):
    """Checks the rule as the service will (a malformed ruleValue never reaches the gateway)."""

    class Meta:
        model = IamRule
        fields = ["rule_type", "rule_value", "status"]

    def clean(self):
        data = super().clean()
        if data.get("rule_type") and "rule_value" in data:
            try:
                data["rule_value"] = services.iam_rule_value_clean(data["rule_type"], data["rule_value"])
            except ServiceError as e:
                raise forms.ValidationError(e.message) from None
        return data


class IamRuleInline(admin.TabularInline):
    model = IamRule
    form = IamRuleForm
    extra = 0
    readonly_fields = ["id", "created_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAdmin):
    list_display = ["masked_token", "id", "description", "project", "usage", "usage_limit", "status", "disabled_reason", "created_at"]
    list_filter = ["status", "disabled_reason", "created_at"]
    search_fields = ["id", "description", "masked_token", "project__name", "project__id", "project__organization__name"]
    list_select_related = ["project"]
    # The token exists only as a hash; usage moves only with the usage log; the reason a key
    # is inactive follows from its status and limit (apikeys.services.api_key_update).
    readonly_fields = ["id", "masked_token", "disabled_reason", "token_hash", "usage", "project", "created_by",
                       "created_at", "updated_at"]
    fields = ["id", "masked_token", "description", "usage_limit", "status", *readonly_fields[2:]]
    inlines = [IamRuleInline]

    def has_add_permission(self, request):
        return False  # keys are made in the dashboard or the API, where the token can be shown once

    def save_model(self, request, obj, form, change):
        changes = {f: form.cleaned_data[f] for f in ("description", "usage_limit", "status") if f in form.changed_data}
        services.api_key_update(api_key=obj, **changes)

    def save_formset(self, request, form, formset, change):
        """IAM rules through the services: created, changed and deleted as the API does it."""
        new, changed, deleted = [], [], []
        for gone in formset.deleted_forms:
            if not gone.instance._state.adding:
                rule = IamRule.objects.get(pk=gone.instance.pk)
                services.iam_rule_delete(rule=rule)
                deleted.append(rule)
        for rule_form in formset.forms:
            if rule_form in formset.deleted_forms or not rule_form.has_changed():
                continue
            data = {f: rule_form.cleaned_data[f] for f in ("rule_type", "rule_value", "status")}
            if rule_form.instance._state.adding:
                new.append(services.iam_rule_create(api_key=form.instance, **data))
            else:
                rule = services.iam_rule_update(rule=IamRule.objects.get(pk=rule_form.instance.pk), **data)
                changed.append((rule, rule_form))
        record_formset_saves(formset, new=new, changed=changed, deleted=deleted)

    def delete_model(self, request, obj):
        services.api_key_delete(api_key=obj)

    def delete_queryset(self, request, queryset):
        for key in queryset:
            services.api_key_delete(api_key=key)


class ProviderKeyForm(forms.ModelForm):
    """Checks the prices as the service will, so a malformed entry is shown on its field."""

    class Meta:
        model = ProviderKey
        fields = ["prices"]  # the admin adds the others it shows

    def clean_prices(self):
        try:
            return services.provider_prices_clean(self.cleaned_data.get("prices"))
        except ServiceError as e:
            raise forms.ValidationError(e.message) from None


@admin.register(ProviderKey)
class ProviderKeyAdmin(ServiceAdmin):
    form = ProviderKeyForm
    list_display = ["provider", "name", "priority", "masked_token", "id", "organization", "base_url", "status",
                    "created_at"]
    list_filter = ["provider", "status", "created_at"]
    search_fields = ["id", "name", "provider", "organization__name", "organization__id"]
    list_select_related = ["organization"]
    # rejections and rejected_status: the gateway's, set with status invalid and cleared with it.
    readonly_fields = ["id", "organization", "provider", "masked_token", "rejections", "rejected_status", "created_at",
                       "updated_at"]
    fields = ["id", "organization", "provider", "name", "priority", "base_url", "prices", "masked_token", "status",
              "rejections", "rejected_status", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False  # adding validates and encrypts the key: use the dashboard or the API

    def save_model(self, request, obj, form, change):
        editable = ("name", "priority", "base_url", "prices", "status")
        changes = {f: form.cleaned_data[f] for f in editable if f in form.changed_data}
        services.provider_key_update(provider_key=ProviderKey.objects.get(pk=obj.pk), validate=False, **changes)

    def delete_model(self, request, obj):
        services.provider_key_delete(provider_key=obj)

    def delete_queryset(self, request, queryset):
        for key in queryset:
            services.provider_key_delete(provider_key=key)
