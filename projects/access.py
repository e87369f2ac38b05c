"""Who may do what: every id a user gives is looked up within their organizations.

An object of an organization the user is not in is reported as missing (404), never as
forbidden, so ids of other tenants reveal nothing. A member whose role is too low gets 403.
"""

from django.db.models import QuerySet

from core.errors import NotFound, PermissionDenied
from projects.models import Membership, Organization, Project, User

Role = Membership.Role

_ROLE_NAMES: dict[str, str] = {Role.DEVELOPER: "a developer", Role.ADMIN: "an admin", Role.OWNER: "an owner"}


def memberships(user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("organization")


def _usable_id(value) -> bool:
    """Ids are short printable strings; anything else (NUL bytes, which PostgreSQL refuses
    in text) cannot name an object, so it is simply not found."""
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable()


def membership_for(user: User, organization_id: str, role: str = Role.DEVELOPER) -> Membership:
    if not _usable_id(organization_id):
        raise NotFound("organization not found")
    membership = memberships(user).filter(organization_id=organization_id).first()
    if membership is None:
        raise NotFound("organization not found")
    require_role(membership, role)
    return membership


def require_role(membership: Membership, role: str) -> None:
    if not membership.has_role(role):
        raise PermissionDenied(f"this needs the role of {_ROLE_NAMES[role]} or higher in the organization")


def organization_for(user: User, organization_id: str, role: str = Role.DEVELOPER) -> Organization:
    return membership_for(user, organization_id, role).organization


def project_for(user: User, project_id: str, role: str = Role.DEVELOPER) -> Project:
    return scoped_get(
        Project.objects.select_related("organization"), user, project_id,
        org_path="organization", role=role, what="project",
    )


def _in_user_orgs(queryset, user: User, path: str):
    return queryset.filter(**{f"{path}__memberships__user": user})


def scoped_get(queryset, user: User, pk: str, *, org_path: str, role: str = Role.DEVELOPER, what: str):
    """One object of the user's organizations (404 otherwise) after checking the role there."""
    obj = _in_user_orgs(queryset, user, org_path).filter(pk=pk).first() if _usable_id(pk) else None
    if obj is None:
        raise NotFound(f"{what} not found")
    organization = obj
    for part in org_path.split("__"):
        organization = getattr(organization, part)
    require_role(membership_for(user, organization.pk), role)
    return obj
