"""What every dashboard page shares: who may open it, the frame around it (organization
switcher, Projects sidebar, what the user's role allows) and rendering one template either
as a whole page or, for htmx, as one of its partials.

Views stay parse → service → render: access comes from projects/access.py (another
organization's ids are 404, a role too low is 403), writes from the services, and a
ServiceError a user can cause is shown in place on the form it came from.
"""

from functools import wraps
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import render, resolve_url
from django_htmx.http import HttpResponseClientRedirect

from gateway.errors import NotFound, PermissionDenied, ServiceError
from projects import access
from projects.models import Membership, Organization, Project

Role = Membership.Role

SESSION_ORGANIZATION = "dashboard_organization_id"


def dashboard_view(view):
    """Signed-in users only; NotFound is a 404 page and a role too low a 403 page."""

    @wraps(view)
    def signed_in(request, *args, **kwargs):
        if any("\x00" in value for value in kwargs.values()):  # no id has one; PostgreSQL refuses them
            raise Http404("not found")
        if request.htmx and not request.user.is_authenticated:  # the session ended: the whole page logs in
            back = quote(request.htmx.current_url_abs_path or "/")
            return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?next={back}")
        return checked(request, *args, **kwargs)

    @login_required
    def checked(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except NotFound as e:
            raise Http404(e.message) from None
        except PermissionDenied as e:
            raise DjangoPermissionDenied(e.message) from None

    return signed_in


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


def organization_page(request, organization_id: str, role: str = Role.DEVELOPER) -> dict:
    """The page context of an organization the user is a member of (404 otherwise)."""
    membership = access.membership_for(request.user, organization_id, role)
    return {"organization": membership.organization, "membership": membership, "can": permissions(membership)}


def project_page(request, project_id: str, role: str = Role.DEVELOPER) -> dict:
    """The page context of a project of one of the user's organizations (404 otherwise)."""
    project = access.project_for(request.user, project_id, role)
    membership = access.membership_for(request.user, project.organization_id)
    return {
        "project": project,
        "organization": project.organization,
        "membership": membership,
        "can": permissions(membership),
    }


def _frame(request, context: dict) -> dict:
    """The switcher and the sidebar: only whole pages need them."""
    organization: Organization | None = context.get("organization")
    frame = {"memberships": list(access.memberships(request.user).order_by("organization__name"))}
    if organization is not None:
        if request.session.get(SESSION_ORGANIZATION) != organization.pk:  # no session write per page
            request.session[SESSION_ORGANIZATION] = organization.pk
        projects = list(organization.projects.order_by("name", "created_at"))
        frame["sidebar_active"] = [p for p in projects if p.status == Project.Status.ACTIVE]
        frame["sidebar_archived"] = [p for p in projects if p.status == Project.Status.ARCHIVED]
    return frame


def render_page(request, template: str, context: dict, *, partial: str | None = None, status: int = 200):
    """The whole page, or only `template#partial` when htmx asks for a piece of it."""
    if partial and request.htmx and not request.htmx.boosted:
        return render(request, f"{template}#{partial}", context, status=status)
    return render(request, template, {**_frame(request, context), **context}, status=status)


def redirect_page(request, url: str):
    """A redirect that also moves the whole page when htmx made the request."""
    from django.shortcuts import redirect

    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


# CamelCase field names of the services' errors → the dashboard's form fields.
SERVICE_FIELDS = {
    "cacheDurationSeconds": "cache_duration_seconds",
    "usageLimit": "usage_limit",
    "baseUrl": "base_url",
    "thresholdUsd": "threshold_usd",
    "projectId": "project",
    "ruleType": "rule_type",
    "ruleValue": "rule_value",
    "ruleValue.models": "models",
    "ruleValue.providers": "providers",
    "ruleValue.pricingType": "pricing_type",
    "ruleValue.maxInputPrice": "max_input_price",
    "ruleValue.maxOutputPrice": "max_output_price",
}


def show_error(form, error: ServiceError) -> None:
    """Puts a service's error on the form field it names, or above the form."""
    placed = False
    for name, messages in (error.fields or {}).items():
        field = SERVICE_FIELDS.get(name, name)
        if field in form.fields:
            form.add_error(field, list(messages))
            placed = True
    if not placed:
        form.add_error(None, error.message)
