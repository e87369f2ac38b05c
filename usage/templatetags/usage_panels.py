"""The usage panel of an API key's page (templates/usage/_key_usage.html, included by
templates/apikeys/key_detail.html): a tag, so that only the whole page queries for it, never
the page's htmx partials."""

from datetime import date
from typing import Any

from django import template

from apikeys.models import ApiKey
from projects.models import Project
from usage import charts
from usage.analytics import usage_summary
from usage.views import logs_export_url, start_of

register = template.Library()

KEY_PANEL_DAYS = 30


@register.simple_tag
def key_usage(project: Project, api_key: ApiKey) -> dict[str, Any]:
    """What the key spent over the last 30 days (UTC, today included), by day and by model:
    {"days", "summary", "tokens", "daily", "by_model", "chart" (SVG, or None with no requests),
    "export_url" (the CSV of these requests' logs)}. Money as usage_summary gives it (USD
    decimal strings); the template formats it."""
    usage = usage_summary(project=project, api_key_id=api_key.pk, days=KEY_PANEL_DAYS)
    summary = usage["summary"]
    since = start_of(date.fromisoformat(usage["daily"][0]["date"]))
    return {
        "days": KEY_PANEL_DAYS,
        "summary": summary,
        "tokens": summary["promptTokens"] + summary["completionTokens"],
        "daily": usage["daily"],
        "by_model": usage["byModel"],
        "chart": charts.cost_by_day(usage["daily"]) if summary["requests"] else None,
        "export_url": logs_export_url(project_id=project.pk, api_key_id=api_key.pk, since=since),
    }
