"""Actions on users, organizations, members and projects: the only code that writes them.

Called alike by the REST API, the dashboard, the admin and Celery tasks. Who may act is
checked before (projects/access.py); the rules of the domain are checked here.
"""

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from core import events
from core.errors import Conflict, LimitReached, NotAuthenticated, NotFound, PermissionDenied, RateLimited, ValidationFailed
from core.hashing import sha256_hex
from core.text import has_control_characters, one_line
from projects.models import Invitation, Membership, Organization, Project, SessionToken, User
from projects.signals import member_removed

Role = Membership.Role


# --- users and session tokens -------------------------------------------------------------


def _clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationFailed.field("email", "enter a valid email address") from None
    return email


def user_signup(*, email: str, password: str, name: str = "") -> tuple[User, Organization]:
    """A new user owning a new organization of their own."""
    email = _clean_email(email)
    name = (name or "").strip()
    try:
        validate_password(password, user=User(email=email, name=name))
    except DjangoValidationError as e:
        raise ValidationFailed("password: " + " ".join(e.messages), fields={"password": e.messages}) from None
    with transaction.atomic():
        if User.objects.filter(email=email).exists():
            raise Conflict("an account with this email already exists", code="email_taken")
        try:
            user = User.objects.create_user(email=email, password=password, name=name)
        except IntegrityError:
            raise Conflict("an account with this email already exists", code="email_taken") from None
        organization = organization_create(user=user, name=f"{name or email.split('@')[0]}'s organization")
    return user, organization


def session_create(*, user: User) -> tuple[str, SessionToken]:
    """Returns the plaintext token (shown once) and its stored, hashed record."""
    plaintext = SessionToken.PREFIX + secrets.token_urlsafe(32)
    token = SessionToken.objects.create(
        user=user,
        token_hash=sha256_hex(plaintext),
        expires_at=timezone.now() + timedelta(days=settings.SESSION_TOKEN_TTL_DAYS),
    )
    return plaintext, token


def session_login(*, request: HttpRequest, email: str, password: str) -> tuple[str, SessionToken]:
    """A bearer token for the right password (see user_authenticate for the throttle). A
    sign-in like the dashboard's: `user_logged_in` is sent (last_login, axes' reset)."""
    user = user_authenticate(request=request, email=email, password=password)
    user_logged_in.send(sender=user.__class__, request=request, user=user)
    return session_create(user=user)


def user_authenticate(*, request: HttpRequest, email: str, password: str) -> User:
    """The user with this email and password, for the API and the dashboard alike (the admin
    signs in through the same backends). django-axes counts failures per email and client
    address together: after settings.AXES_FAILURE_LIMIT of them that pair is refused for
    AXES_COOLOFF_TIME (RateLimited), right password or not, while the account stays open to
    its owner elsewhere. `request` gives axes the client address."""
    user = authenticate(request, username=(email or "").strip().lower(), password=password or "")
    if getattr(request, "axes_locked_out", False):
        seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
        raise RateLimited(f"too many failed sign-ins for this account from this address; try again in "
                          f"{seconds // 60} minutes", retry_after=seconds)
    if user is None or not user.is_active:
        raise NotAuthenticated("invalid email or password", code="invalid_credentials")
    return user


def session_logout(*, token: SessionToken) -> None:
    token.delete()


def session_user(plaintext: str) -> tuple[User, SessionToken] | None:
    """The user a bearer token belongs to, or None when it is unknown or expired."""
    token = (
        SessionToken.objects.select_related("user")
        .filter(token_hash=sha256_hex(plaintext), expires_at__gt=timezone.now())
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # Record use at most once a minute: reads should not turn into writes.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        SessionToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


# --- organizations and members --------------------------------------------------------------


def _clean_name(name: str, field: str = "name") -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed.field(field, "this field may not be blank")
    if len(name) > 255:
        raise ValidationFailed.field(field, "at most 255 characters")
    if has_control_characters(name):
        raise ValidationFailed.field(field, "must be one line of text, without control characters")
    return name


@transaction.atomic
def organization_create(*, user: User, name: str) -> Organization:
    organization = Organization.objects.create(name=_clean_name(name))
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    return organization


def organization_update(*, organization: Organization, name: str) -> Organization:
    organization.name = _clean_name(name)
    organization.save(update_fields=["name", "updated_at"])
    return organization


def organization_admin_saved(*, organization: Organization) -> None:
    """Status and project limit change in the admin; the gateway must hear of it."""
    events.config_changed(organization.pk)


@transaction.atomic
def organization_delete(*, organization: Organization) -> None:
    # Each project goes the way a project goes, so its keys and requests stop too.
    for project in list(organization.projects.all()):
        project_delete(project=project)
    organization.delete()


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise ValidationFailed.field("role", f"must be one of {', '.join(Role.values)}")
    return role


def _require_owner_for(actor: Membership | None, *roles: str) -> None:
    """Only owners make or unmake owners."""
    if actor is not None and Role.OWNER in roles and actor.role != Role.OWNER:
        raise PermissionDenied("only an owner can grant or remove the owner role")


def _check_not_last_owner(membership: Membership) -> None:
    """Raises when this membership is the organization's last owner. The organization's row
    is locked first: Django drops FOR UPDATE from an aggregate, so locking the owners and
    counting them would lock nothing, and two owners stepping down together would both see
    the other and leave none. Callers run in a transaction."""
    if membership.role != Role.OWNER:
        return
    Organization.objects.select_for_update().filter(pk=membership.organization_id).first()
    owners = Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
    if owners.count() <= 1:
        raise Conflict("an organization needs at least one owner", code="last_owner")


def member_add(*, organization: Organization, email: str, role: str, actor: Membership | None = None) -> Membership:
    _check_role(role)
    _require_owner_for(actor, role)
    user = User.objects.filter(email=_clean_email(email), is_active=True).first()
    if user is None:
        raise ValidationFailed.field("email", "no user with this email; they need to sign up first")
    try:
        with transaction.atomic():
            return Membership.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise Conflict("this user is already a member", code="already_member") from None


@transaction.atomic
def member_update(*, membership: Membership, role: str, actor: Membership | None = None) -> Membership:
    _check_role(role)
    _require_owner_for(actor, role, membership.role)
    if role != Role.OWNER:
        _check_not_last_owner(membership)
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor: Membership | None = None) -> None:
    if actor is None or actor.pk != membership.pk:  # anyone may leave; removing others is guarded
        _require_owner_for(actor, membership.role)
    _check_not_last_owner(membership)
    membership.delete()
    member_removed.send(sender=Membership, membership=membership)


# --- invitations ------------------------------------------------------------------------------


@transaction.atomic
def member_invite(*, organization: Organization, email: str, role: str, actor: Membership | None,
                  accept_url: str) -> tuple[str, Invitation]:
    """Invites `email` to the organization with `role`: an email with a link to accept, valid
    Invitation.TTL_DAYS days. The same answer whether or not the address has an account
    (nothing is revealed); an earlier pending invitation of the address is replaced.
    `accept_url` is the link with "{token}" where the secret goes. Returns (token, invitation):
    the token is in the link only and stored hashed."""
    _check_role(role)
    _require_owner_for(actor, role)
    email = _clean_email(email)
    if organization.memberships.filter(user__email=email).exists():
        raise Conflict("this person is already a member", code="already_member")
    organization.invitations.filter(email=email, accepted_at__isnull=True).delete()
    token = Invitation.TOKEN_PREFIX + secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization, email=email, role=role, token_hash=sha256_hex(token),
        invited_by=actor.user if actor else None,
        expires_at=timezone.now() + timedelta(days=Invitation.TTL_DAYS),
    )
    link = accept_url.replace("{token}", token)
    inviter = actor.user.name or actor.user.email if actor else "The gateway's operator"
    transaction.on_commit(lambda: send_mail(
        subject=one_line(f"You are invited to {organization.name} on LLM Gateway"),
        message=(f"{inviter} invited you to join the organization {organization.name} as {role}.\n\n"
                 f"Accept within {Invitation.TTL_DAYS} days, signed in with this email address "
                 f"({email}):\n{link}\n\nIf you did not expect this, ignore this email."),
        from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[email],
    ))
    return token, invitation


def invitation_for(token: str) -> Invitation:
    """The pending invitation a link's token names, or NotFound (unknown, used or expired)."""
    invitation = (Invitation.objects.select_related("organization")
                  .filter(token_hash=sha256_hex(token or ""), accepted_at__isnull=True).first())
    if invitation is None or invitation.status != "pending":
        raise NotFound("this invitation is unknown, already used or expired")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Makes `user` a member with the invited role, when signed in with the invited email."""
    invitation = invitation_for(token)
    Invitation.objects.select_for_update().filter(pk=invitation.pk).first()
    if user.email.lower() != invitation.email.lower():
        raise PermissionDenied(f"this invitation was sent to another email address; sign in as {invitation.email}")
    membership, _ = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return membership


def invitation_revoke(*, invitation: Invitation) -> None:
    invitation.delete()


# --- projects ---------------------------------------------------------------------------------


def _check_mode(mode: str) -> str:
    if mode not in Project.Mode.values:
        raise ValidationFailed.field("mode", f"must be one of {', '.join(Project.Mode.values)}")
    return mode


def _check_cache_duration(seconds) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not (
        Project.MIN_CACHE_SECONDS <= seconds <= Project.MAX_CACHE_SECONDS
    ):
        raise ValidationFailed.field(
            "cache_duration_seconds",
            f"must be a whole number of seconds from {Project.MIN_CACHE_SECONDS} to "
            f"{Project.MAX_CACHE_SECONDS} (one year)",
        )
    return seconds


def _check_retention_days(days) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not (
        Project.MIN_RETENTION_DAYS <= days <= Project.MAX_RETENTION_DAYS
    ):
        raise ValidationFailed.field(
            "content_retention_days",
            f"must be a whole number of days from {Project.MIN_RETENTION_DAYS} to {Project.MAX_RETENTION_DAYS}",
        )
    return days


def _check_project_limit(organization: Organization) -> None:
    """Raises when the organization has no room for one more active project.

    The caller holds the organization's row lock, so two creations cannot both fit."""
    limit = organization.effective_project_limit
    active = organization.projects.filter(status=Project.Status.ACTIVE).count()
    if active >= limit:
        raise LimitReached(
            f"This organization has reached its limit of {limit} active projects. "
            "Archive or delete a project, or contact support to raise the limit.",
            code="project_limit_reached",
        )


def _lock(organization: Organization) -> Organization:
    return Organization.objects.select_for_update().get(pk=organization.pk)


@transaction.atomic
def project_create(
    *,
    organization: Organization,
    name: str,
    mode: str = Project.Mode.HYBRID,
    caching_enabled: bool = False,
    cache_duration_seconds: int = 60,
    log_content: bool = False,
    content_retention_days: int = 30,
) -> Project:
    project = Project(
        organization=organization,
        name=_clean_name(name),
        mode=_check_mode(mode),
        caching_enabled=bool(caching_enabled),
        cache_duration_seconds=_check_cache_duration(cache_duration_seconds),
        log_content=bool(log_content),
        content_retention_days=_check_retention_days(content_retention_days),
    )
    _check_project_limit(_lock(organization))
    project.save()
    return project


_PROJECT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _clean_name,
    "mode": _check_mode,
    "caching_enabled": bool,
    "cache_duration_seconds": _check_cache_duration,
    "log_content": bool,
    "content_retention_days": _check_retention_days,
}


@transaction.atomic
def project_update(*, project: Project, **changes) -> Project:
    """Changes any of name, mode, caching_enabled, cache_duration_seconds, log_content,
    content_retention_days, status."""
    unknown = set(changes) - set(_PROJECT_CHECKS) - {"status"}
    if unknown:
        raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
    before = (project.caching_enabled, project.cache_duration_seconds)
    for field, check in _PROJECT_CHECKS.items():
        if field in changes:
            setattr(project, field, check(changes[field]))
    if (project.caching_enabled, project.cache_duration_seconds) != before:
        project.cache_version += 1  # answers stored under the old settings are gone at once
    if "status" in changes:
        status = changes["status"]
        if status not in Project.Status.values:
            raise ValidationFailed.field("status", f"must be one of {', '.join(Project.Status.values)}")
        if status == Project.Status.ACTIVE and project.status != Project.Status.ACTIVE:
            _check_project_limit(_lock(project.organization))
        project.status = status
    project.save()
    events.config_changed(project.organization_id)
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Deletes the project with its API keys (which stop authenticating) and usage logs, and
    tells every gateway process to stop the project's requests in flight."""
    # Locked first: a usage batch writing rows for this project either commits before (and
    # its rows go with the project) or fails after and is retried without them.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    events.project_deleted(project.pk, project.organization_id)
    # The logs' kept content, then the logs, each in one statement: the ORM's cascade would
    # load every log row first (a LogContent refers to its log), millions for a busy project.
    project.log_contents.all().delete()
    project.usage_logs.all()._raw_delete(project.usage_logs.db)
    project.delete()
