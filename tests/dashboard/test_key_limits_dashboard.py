"""A key's limits and its roll on the dashboard: the same services as the REST API."""

from datetime import UTC, datetime
from decimal import Decimal

from tests.dashboard.conftest import text


def _url(project, key, rest=""):
    return f"/projects/{project.pk}/keys/{key.pk}/{rest}"


def test_the_dashboard_sets_every_limit_and_shows_them(owner, project, api_key, as_user):
    response = as_user(owner).post(_url(project, api_key), {
        "description": "x", "usage_limit": "", "period_usage_limit": "3", "period_usage_duration": "month",
        "expires_at": "2031-05-01T10:30", "rate_limit_rpm": "30", "rate_limit_tpm": ""}, htmx=True)
    assert "Key saved." in text(response)
    api_key.refresh_from_db()
    assert (api_key.period_usage_limit, api_key.period_usage_duration, api_key.rate_limit_rpm, api_key.rate_limit_tpm) == \
        (Decimal(3), "month", 30, None)
    assert api_key.expires_at == datetime(2031, 5, 1, 10, 30, tzinfo=UTC)
    page = text(as_user(owner).get(_url(project, api_key)))
    assert "This month" in page and "of $3" in page and "2031-05-01 10:30 UTC" in page and "30 requests per minute" in page


def test_the_dashboard_refuses_a_recurring_limit_without_its_window(owner, project, api_key, as_user):
    response = as_user(owner).post(_url(project, api_key), {"description": "x", "period_usage_limit": "3"}, htmx=True)
    assert response.status_code == 400 and "required with a period usage limit" in text(response)


def test_the_dashboard_rolls_a_key_and_shows_the_token_once(owner, project, api_key, as_user):
    response = as_user(owner).post(_url(project, api_key, "roll"), {"grace_seconds": "3600"}, htmx=True)
    page = text(response)
    api_key.refresh_from_db()
    assert "Copy this key now" in page and api_key.masked_token in page
    assert response["Cache-Control"] == "no-store"
    assert "Previous token" in text(as_user(owner).get(_url(project, api_key)))
    assert "Copy this key now" not in text(as_user(owner).get(_url(project, api_key)))
