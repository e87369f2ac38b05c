from django.contrib import admin

from usage.models import CreditTransaction, SpendAlert, UsageLog


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: searchable, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageLog)
class UsageLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "request_id", "project", "api_key_id", "used_provider", "used_model", "status_code", "cost", "cached", "canceled"]
    list_filter = ["has_error", "cached", "canceled", "streamed", "used_mode", "used_provider", "created_at"]
    search_fields = ["request_id", "id", "api_key_id", "project__id", "used_model", "requested_model"]
    list_select_related = ["project"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # counting millions of rows on every page is slow


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "id", "organization", "kind", "amount", "balance_after", "note"]
    list_filter = ["kind", "created_at"]
    search_fields = ["id", "organization__name", "organization__id", "usage_log_id", "note"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"


@admin.register(SpendAlert)
class SpendAlertAdmin(admin.ModelAdmin):
    list_display = ["id", "organization", "project", "threshold_usd", "period", "created_at"]
    list_filter = ["period"]
    search_fields = ["id", "organization__name", "organization__id"]
    raw_id_fields = ["organization", "project"]
