from django.contrib import admin

from apikeys import services
from apikeys.models import ApiKey, IamRule, ProviderKey


class IamRuleInline(admin.TabularInline):
    model = IamRule
    extra = 0
    readonly_fields = ["id", "created_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["masked_token", "id", "description", "project", "usage", "usage_limit", "status", "disabled_reason", "created_at"]
    list_filter = ["status", "disabled_reason", "created_at"]
    search_fields = ["id", "description", "masked_token", "project__name", "project__id", "project__organization__name"]
    list_select_related = ["project"]
    # The token exists only as a hash; usage moves only with the usage log.
    readonly_fields = ["id", "masked_token", "token_hash", "usage", "project", "created_by", "created_at", "updated_at"]
    fields = readonly_fields[:2] + ["description", "usage_limit", "status", "disabled_reason"] + readonly_fields[2:]
    inlines = [IamRuleInline]

    def has_add_permission(self, request):
        return False  # keys are made in the dashboard or the API, where the token can be shown once

    def save_model(self, request, obj, form, change):
        changes = {f: form.cleaned_data[f] for f in ("description", "usage_limit", "status") if f in form.changed_data}
        services.api_key_update(api_key=obj, **changes)


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    list_display = ["provider", "name", "masked_token", "id", "organization", "base_url", "status", "created_at"]
    list_filter = ["provider", "status", "created_at"]
    search_fields = ["id", "name", "provider", "organization__name", "organization__id"]
    list_select_related = ["organization"]
    readonly_fields = ["id", "organization", "provider", "masked_token", "created_at", "updated_at"]
    fields = ["id", "organization", "provider", "name", "base_url", "masked_token", "status", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False  # adding validates and encrypts the key: use the dashboard or the API

    def save_model(self, request, obj, form, change):
        changes = {f: form.cleaned_data[f] for f in ("name", "base_url", "status") if f in form.changed_data}
        services.provider_key_update(provider_key=obj, validate=False, **changes)
