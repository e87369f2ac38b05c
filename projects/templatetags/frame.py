"""The frame of whole dashboard pages: the organization switcher and the Projects sidebar.
Tags, so that only whole pages (base.html) query for them, never htmx partials."""

from typing import Any

from django import template

from projects import access
from projects.models import Membership, Organization, Project

register = template.Library()


@register.simple_tag(takes_context=True)
def user_memberships(context: dict[str, Any]) -> list[Membership]:
    """The signed-in user's memberships, by organization name (the switcher)."""
    user = context["request"].user
    if not user.is_authenticated:
        return []
    return list(access.memberships(user).order_by("organization__name"))


@register.simple_tag
def sidebar_projects(organization: Organization) -> dict[str, list[Project]]:
    """{"active": [...], "archived": [...]}: the organization's projects by name."""
    projects = list(organization.projects.order_by("name", "created_at"))
    return {
        "active": [p for p in projects if p.status == Project.Status.ACTIVE],
        "archived": [p for p in projects if p.status == Project.Status.ARCHIVED],
    }
