"""Admin pages of the usage log, the credit ledger and spending alerts: records are read
only; alerts are made and removed through usage/services.py."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin, ServiceAdmin
from usage import services
from usage.models import CreditTransaction, RejectedUsageRecord, SpendAlert, UsageLog


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
class SpendAlertAdmin(ServiceAdmin):
    list_display = ["id", "organization", "project", "threshold_usd", "period", "created_at"]
    list_filter = ["period"]
    search_fields = ["id", "organization__name", "organization__id"]
    raw_id_fields = ["organization", "project"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # an alert is made or removed, never edited (its notices refer to it)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.alert_create(organization=data["organization"], threshold_usd=data["threshold_usd"],
                                        period=data["period"], project=data["project"])
        obj.pk = created.pk

    def delete_model(self, request, obj):
        services.alert_delete(alert=obj)

    def delete_queryset(self, request, queryset):
        for alert in queryset:
            services.alert_delete(alert=alert)


@admin.register(RejectedUsageRecord)
class RejectedUsageRecordAdmin(ReadOnlyAdmin):
    """Usage records ingestion set aside (their batches were stored without them)."""

    list_display = ["created_at", "reason", "retried_at"]
    search_fields = ["reason", "payload"]
    date_hierarchy = "created_at"
    actions = ["ingest_again"]

    @admin.action(description="Ingest the selected records again")
    def ingest_again(self, request, queryset):
        chosen = list(queryset)
        stored = sum(services.rejected_usage_retry(rejected=r) for r in chosen)
        self.message_user(request, f"{stored} of {len(chosen)} stored; the others are still set aside.")
