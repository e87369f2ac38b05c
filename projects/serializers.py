"""JSON shapes of the projects app (camelCase, as docs/api.md shows them)."""

from rest_framework import serializers

from core.rest import MoneyField, StrictSerializer
from projects.models import Membership, Organization, Project


class UserOut(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.EmailField()
    name = serializers.CharField()


class OrganizationOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    credits = MoneyField()
    projectLimit = serializers.IntegerField(source="effective_project_limit")
    status = serializers.ChoiceField(choices=Organization.Status.choices)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class MemberOrganizationOut(serializers.Serializer):
    id = serializers.CharField(source="organization.id")
    name = serializers.CharField(source="organization.name")
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberOut(serializers.Serializer):
    userId = serializers.CharField(source="user.id")
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    createdAt = serializers.DateTimeField(source="created_at")


class InvitationOut(serializers.Serializer):
    id = serializers.CharField()
    organizationId = serializers.CharField(source="organization_id")
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    status = serializers.ChoiceField(choices=["pending", "accepted", "expired"])
    expiresAt = serializers.DateTimeField(source="expires_at")
    createdAt = serializers.DateTimeField(source="created_at")


class InvitationCreatedOut(InvitationOut):
    """The one answer that carries the link (also emailed): for the inviter to share it."""

    acceptUrl = serializers.CharField(help_text="shown in this response only; the invitee opens it signed in")

    def to_representation(self, instance):
        invitation, url = instance
        return {**InvitationOut(invitation).data, "acceptUrl": url}


class InvitationAcceptIn(StrictSerializer):
    token = serializers.CharField(max_length=200, help_text="the secret from the invitation's link")


class ProjectOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    organizationId = serializers.CharField(source="organization_id")
    mode = serializers.ChoiceField(choices=Project.Mode.choices)
    cachingEnabled = serializers.BooleanField(source="caching_enabled")
    cacheDurationSeconds = serializers.IntegerField(source="cache_duration_seconds")
    status = serializers.ChoiceField(choices=Project.Status.choices)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    # Issue 17, after the guide's shape: request content kept with the logs.
    logContent = serializers.BooleanField(source="log_content", help_text="keeps each request's messages and answer with its log")
    contentRetentionDays = serializers.IntegerField(source="content_retention_days")


# --- input ------------------------------------------------------------------------------------


class SignupIn(StrictSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class LoginIn(StrictSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False)


class OrganizationIn(StrictSerializer):
    name = serializers.CharField(max_length=255)


class MemberIn(StrictSerializer):
    email = serializers.CharField(max_length=254)
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberPatchIn(StrictSerializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class ProjectIn(StrictSerializer):
    name = serializers.CharField(max_length=255)
    organizationId = serializers.CharField(source="organization_id", max_length=40)
    mode = serializers.ChoiceField(choices=Project.Mode.choices, default=Project.Mode.HYBRID)
    cachingEnabled = serializers.BooleanField(source="caching_enabled", default=False)
    cacheDurationSeconds = serializers.IntegerField(
        source="cache_duration_seconds", default=60,
        min_value=Project.MIN_CACHE_SECONDS, max_value=Project.MAX_CACHE_SECONDS,
    )
    logContent = serializers.BooleanField(source="log_content", default=False)
    contentRetentionDays = serializers.IntegerField(
        source="content_retention_days", default=30,
        min_value=Project.MIN_RETENTION_DAYS, max_value=Project.MAX_RETENTION_DAYS,
    )


class ProjectPatchIn(StrictSerializer):
    name = serializers.CharField(max_length=255, required=False)
    mode = serializers.ChoiceField(choices=Project.Mode.choices, required=False)
    cachingEnabled = serializers.BooleanField(source="caching_enabled", required=False)
    cacheDurationSeconds = serializers.IntegerField(
        source="cache_duration_seconds", required=False,
        min_value=Project.MIN_CACHE_SECONDS, max_value=Project.MAX_CACHE_SECONDS,
    )
    logContent = serializers.BooleanField(source="log_content", required=False)
    contentRetentionDays = serializers.IntegerField(
        source="content_retention_days", required=False,
        min_value=Project.MIN_RETENTION_DAYS, max_value=Project.MAX_RETENTION_DAYS,
    )
    status = serializers.ChoiceField(choices=Project.Status.choices, required=False)
