"""The organization frame of dashboard pages: which organization a page belongs to, what the
user's role there allows, and the organization switcher and Projects sidebar of whole pages
(template tags in projects/templatetags/frame.py, so htmx partials never query for them).

Access comes from projects/access.py: another organization's ids are 404, a role too low 403.
"""

from typing import Any

from django.http import HttpRequest

from projects import access
from projects.models import Membership, Organization

Role = Membership.Role

SESSION_ORGANIZATION = "dashboard_organization_id"


def permissions(membership: Membership) -> dict[str, bool]:
    """What the role allows, named after the controls a page shows or hides."""
    admin = membership.has_role(Role.ADMIN)
    return {
        "manage_api_keys": True,  # developers manage the keys of their organization's projects
        "create_projects": admin,
        "manage_projects": admin,
        "delete_projects": membership.role == Role.OWNER,
        "manage_provider_keys": admin,
        "manage_members": admin,
        "grant_owner": membership.role == Role.OWNER,
        "rename_organization": admin,
        "manage_alerts": admin,
    }


def _remember(request: HttpRequest, organization: Organization) -> None:
    """The organization the home page returns to (no session write when unchanged)."""
    if request.session.get(SESSION_ORGANIZATION) != organization.pk:
        request.session[SESSION_ORGANIZATION] = organization.pk


def organization_page(request: HttpRequest, organization_id: str, role: str = Role.DEVELOPER) -> dict[str, Any]:
    """The page context of an organization the user is a member of (404 otherwise)."""
    user = request.user
    assert user.is_authenticated  # dashboard_view lets only signed-in users through
    membership = access.membership_for(user, organization_id, role)
    _remember(request, membership.organization)
    return {"organization": membership.organization, "membership": membership, "can": permissions(membership)}


def project_page(request: HttpRequest, project_id: str, role: str = Role.DEVELOPER) -> dict[str, Any]:
    """The page context of a project of one of the user's organizations (404 otherwise)."""
    user = request.user
    assert user.is_authenticated  # dashboard_view lets only signed-in users through
    project = access.project_for(user, project_id, role)
    membership = access.membership_for(user, project.organization_id)
    _remember(request, project.organization)
    return {
        "project": project,
        "organization": project.organization,
        "membership": membership,
        "can": permissions(membership),
    }
