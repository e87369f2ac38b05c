"""Reads of the usage log shared by the REST API, the dashboard and its CSV export."""

from datetime import datetime
from typing import Any

import orjson
from django.db.models import Q, QuerySet

from projects import access
from projects.models import Organization, Project, User
from usage.models import LogContent, UsageLog


def logs_matching(
    *,
    project: Project | None = None,
    organization: Organization | None = None,
    api_key_id: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    cached: bool | None = None,
    has_error: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[UsageLog]:
    """The usage log rows of one project, or of every project of an organization (exactly one
    of the two), matching every filter given (None: any). `model` matches the model asked for
    or the one that answered; `since` is inclusive, `until` exclusive (ranges the time index
    can use). Newest first (the model's ordering), as the pages and the CSV export read it."""
    if (project is None) == (organization is None):
        raise TypeError("logs_matching takes a project or an organization, not both")
    if project is not None:
        logs = UsageLog.objects.filter(project=project)
    else:
        # A literal list of the organization's projects: each one a range of the
        # (project, created_at) index.
        project_ids = list(Project.objects.filter(organization=organization).values_list("pk", flat=True))
        logs = UsageLog.objects.filter(project_id__in=project_ids)
    if api_key_id:
        logs = logs.filter(api_key_id=api_key_id)
    if model:
        logs = logs.filter(Q(requested_model=model) | Q(used_model=model))
    if provider:
        logs = logs.filter(used_provider=provider)
    if cached is not None:
        logs = logs.filter(cached=cached)
    if has_error is not None:
        logs = logs.filter(has_error=has_error)
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    if until is not None:
        logs = logs.filter(created_at__lt=until)
    return logs


def log_for(user: User, log_id: str) -> UsageLog:
    """A log of a project of one of the user's organizations (NotFound otherwise)."""
    return access.scoped_get(UsageLog.objects.select_related("project__organization"), user, log_id,
                             org_path="project__organization", what="log")


def log_content(log: UsageLog) -> dict[str, Any] | None:
    """What the request asked and got, {"request", "response", "truncated"}, or None when its
    project did not keep it (or no longer does: contentRetentionDays)."""
    row = LogContent.objects.filter(log_id=log.pk).first()
    if row is None:
        return None
    return {"request": orjson.loads(row.request), "response": orjson.loads(row.response) if row.response else None,
            "truncated": row.truncated}
