from decimal import Decimal
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

from core.ids import PrefixedIdField
from core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra):
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    id = PrefixedIdField(prefix="usr")
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()
    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self):
        return self.email


class Organization(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    id = PrefixedIdField(prefix="org")
    name = models.CharField(max_length=255)
    credits = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, default=Decimal("0")
    )
    # Every usage debit ever. credits + credits_spent = everything credited, which only
    # grows with top-ups: the gateway's spend check reads it (gateway/store.py).
    credits_spent = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, default=Decimal("0"), editable=False
    )
    # Empty means the PROJECT_LIMIT setting; support raises it per organization in the admin.
    project_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Active projects allowed. Empty: the PROJECT_LIMIT setting."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def effective_project_limit(self) -> int:
        return self.project_limit if self.project_limit is not None else settings.PROJECT_LIMIT


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        DEVELOPER = "developer"

    RANK: dict[str, int] = {Role.DEVELOPER: 1, Role.ADMIN: 2, Role.OWNER: 3}

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_user")
        ]
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.user} is {self.role} of {self.organization}"

    def has_role(self, role: str) -> bool:
        return self.RANK[self.role] >= self.RANK[role]


class Invitation(models.Model):
    """An invitation to join an organization, sent by email; the invitee accepts it while
    signed in with that email. Nobody is added without consent, and inviting reveals
    nothing about whether the address has an account."""

    TTL_DAYS = 7
    TOKEN_PREFIX = "inv_"

    id = PrefixedIdField(prefix="inv")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Membership.Role.choices)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)  # the link's secret, hashed
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "email"], name="invitation_org_email")]

    def __str__(self):
        return f"{self.email} as {self.role} of {self.organization_id}"

    @property
    def status(self) -> str:
        """pending | accepted | expired"""
        if self.accepted_at is not None:
            return "accepted"
        return "expired" if self.expires_at <= timezone.now() else "pending"


class Project(models.Model):
    class Mode(models.TextChoices):
        API_KEYS = "api-keys"
        CREDITS = "credits"
        HYBRID = "hybrid"

    class Status(models.TextChoices):
        ACTIVE = "active"
        ARCHIVED = "archived"

    MIN_CACHE_SECONDS = 10
    MAX_CACHE_SECONDS = 31_536_000  # one year
    MIN_RETENTION_DAYS = 1
    MAX_RETENTION_DAYS = 3650  # ten years

    id = PrefixedIdField(prefix="proj")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=255)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.HYBRID)
    caching_enabled = models.BooleanField(default=False)
    cache_duration_seconds = models.PositiveIntegerField(default=60)
    # Part of every response cache key: bumping it makes all stored answers unreachable.
    cache_version = models.PositiveIntegerField(default=1, editable=False)
    # Keep each request's messages and answer with its usage log (usage.LogContent), for
    # content_retention_days; off by default: the gateway then computes none of it.
    log_content = models.BooleanField(default=False)
    content_retention_days = models.PositiveIntegerField(default=30)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["organization", "status"])]

    def __str__(self):
        return f"{self.name} ({self.id})"


class SessionToken(models.Model):
    """A bearer token for the management API; only its SHA-256 is stored."""

    PREFIX = "sess_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="session_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self):
        return f"session of {self.user} until {self.expires_at:%Y-%m-%d}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
