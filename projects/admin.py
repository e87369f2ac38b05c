from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from projects import services
from projects.models import Membership, Organization, Project, SessionToken, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "id", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["email", "name", "id"]
    readonly_fields = ["id", "date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["id", "email", "name", "password"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "name", "password1", "password2"]})]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "credits", "project_limit", "status", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["name", "id", "memberships__user__email"]
    # Credits move only through the ledger (the addcredits command), never by editing.
    readonly_fields = ["id", "credits", "created_at", "updated_at"]
    fields = ["id", "name", "status", "project_limit", "credits", "created_at", "updated_at"]
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.organization_admin_saved(organization=obj)

    def delete_model(self, request, obj):
        services.organization_delete(organization=obj)

    def delete_queryset(self, request, queryset):
        for organization in queryset:
            services.organization_delete(organization=organization)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "organization", "mode", "caching_enabled", "cache_duration_seconds", "status", "created_at"]
    list_filter = ["mode", "status", "caching_enabled", "created_at"]
    search_fields = ["name", "id", "organization__name", "organization__id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        fields = ("name", "mode", "caching_enabled", "cache_duration_seconds", "status")
        services.project_update(project=obj, **{f: form.cleaned_data[f] for f in fields if f in form.changed_data})

    def delete_model(self, request, obj):
        services.project_delete(project=obj)

    def delete_queryset(self, request, queryset):
        for project in queryset:
            services.project_delete(project=project)


@admin.register(SessionToken)
class SessionTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at", "expires_at", "last_used_at"]
    search_fields = ["user__email"]
    list_filter = ["created_at", "expires_at"]
    readonly_fields = ["user", "token_hash", "created_at", "expires_at", "last_used_at"]
    list_select_related = ["user"]

    def has_add_permission(self, request):
        return False  # a token is only useful to whoever sees it created: log in instead
