"""Admin pages of users, organizations, members, projects and session tokens; writes go
through projects/services.py (project limits, the last owner, deletion stopping requests)."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from core.admin import ReadOnlyAdmin, ServiceAdmin, record_formset_saves
from projects import services
from projects.models import Invitation, Membership, Organization, Project, SessionToken, User


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


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "role"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # a membership is one person's: change the role, or remove it
            self.fields["user"].disabled = True


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(ServiceAdmin):
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

    def save_formset(self, request, form, formset, change):
        """Members through the services: the organization always keeps an owner."""
        new, changed, deleted = [], [], []
        for gone in formset.deleted_forms:
            if not gone.instance._state.adding:
                membership = Membership.objects.get(pk=gone.instance.pk)
                services.member_remove(membership=membership)
                deleted.append(membership)
        for member_form in formset.forms:
            if member_form in formset.deleted_forms or not member_form.has_changed():
                continue
            role = member_form.cleaned_data["role"]
            if member_form.instance._state.adding:
                user = member_form.cleaned_data["user"]
                new.append(services.member_add(organization=form.instance, email=user.email, role=role))
            else:  # as stored, not as the form already changed it in memory
                stored = Membership.objects.get(pk=member_form.instance.pk)
                changed.append((services.member_update(membership=stored, role=role), member_form))
        record_formset_saves(formset, new=new, changed=changed, deleted=deleted)

    def delete_model(self, request, obj):
        services.organization_delete(organization=obj)

    def delete_queryset(self, request, queryset):
        for organization in queryset:
            services.organization_delete(organization=organization)


@admin.register(Project)
class ProjectAdmin(ServiceAdmin):
    list_display = ["name", "id", "organization", "mode", "caching_enabled", "cache_duration_seconds", "status", "created_at"]
    list_filter = ["mode", "status", "caching_enabled", "log_content", "created_at"]
    search_fields = ["name", "id", "organization__name", "organization__id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    FIELDS = ("name", "mode", "caching_enabled", "cache_duration_seconds", "log_content", "content_retention_days", "status")

    def get_readonly_fields(self, request, obj=None):
        # A project stays in its organization; a new one starts active (the limit counts it).
        return [*self.readonly_fields, "organization"] if obj else [*self.readonly_fields, "status"]

    def save_model(self, request, obj, form, change):
        if not change:  # the organization's project limit holds here too
            data = {f: form.cleaned_data[f] for f in self.FIELDS if f != "status"}
            created = services.project_create(organization=form.cleaned_data["organization"], **data)
            obj.pk = created.pk
            return
        changes = {f: form.cleaned_data[f] for f in self.FIELDS if f in form.changed_data}
        services.project_update(project=Project.objects.get(pk=obj.pk), **changes)

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


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    """Invitations are made in the dashboard or the API (the link goes by email); support can
    see and revoke them here."""

    list_display = ["email", "organization", "role", "status", "created_at", "expires_at", "accepted_at"]
    list_filter = ["role", "created_at"]
    search_fields = ["email", "organization__name", "organization__id"]
    list_select_related = ["organization"]

    def delete_model(self, request, obj):
        services.invitation_revoke(invitation=obj)
