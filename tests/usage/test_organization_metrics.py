"""The organization's metrics page (issue 17 item 5): per provider, over the last hour and the
last day, requests, error rate and p50/p95 of latency and time to first token, from the usage
logs, aggregated by the database (percentile_cont on PostgreSQL, window functions on SQLite:
the same interpolated figures)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects import services as project_services
from tests.dashboard.conftest import as_user, record_usage, text  # noqa: F401  (fixtures)
from usage.analytics import provider_metrics


@pytest.fixture
def traffic(org, project, api_key, outsider, record_usage):
    """An hour and a day of requests in two projects of the organization, and some that must
    not count: older than a day, or another organization's."""
    now = timezone.now()
    second = project_services.project_create(organization=org, name="Second")
    recent, earlier = now - timedelta(minutes=10), now - timedelta(hours=5)
    for duration, ttft, target in ((100, 50, project), (200, None, second), (300, 70, project), (400, 90, second)):
        record_usage(target, api_key, when=recent, used_provider="openai", duration=duration, time_to_first_token=ttft)
    record_usage(project, api_key, when=recent, used_provider="anthropic", duration=1000, time_to_first_token=600,
                 status_code=502, has_error=True, error_message="upstream failed")
    record_usage(project, api_key, when=recent, used_provider="", used_model="", duration=3, status_code=401, has_error=True)
    # Within the day, not the hour:
    record_usage(project, api_key, when=earlier, used_provider="openai", duration=1100, time_to_first_token=1000)
    record_usage(project, api_key, when=earlier, used_provider="anthropic", duration=2000, time_to_first_token=800)
    # Never counted:
    record_usage(project, api_key, when=now - timedelta(days=2), used_provider="openai", duration=99_999, time_to_first_token=9)
    theirs = project_services.project_create(organization=outsider.organization, name="Theirs")
    record_usage(theirs, api_key, when=recent, used_provider="openai", duration=77_777, time_to_first_token=7)
    return now


def test_the_last_hour_per_provider(org, traffic):
    by_provider = {m["provider"]: m for m in provider_metrics(organization=org, since=traffic - timedelta(hours=1))}

    assert list(by_provider) == ["openai", "", "anthropic"] or list(by_provider) == ["openai", "anthropic", ""]
    # percentile_cont: 100, 200, 300, 400 → p50 250, p95 at 2.85 → 300 + 0.85 × 100
    assert by_provider["openai"] == {"provider": "openai", "requests": 4, "errors": 0, "errorRate": 0.0,
                                     "p50Duration": 250, "p95Duration": 385,
                                     "p50TimeToFirstToken": 70, "p95TimeToFirstToken": 88}  # 50, 70, 90 (one had none)
    assert by_provider["anthropic"] == {"provider": "anthropic", "requests": 1, "errors": 1, "errorRate": 1.0,
                                        "p50Duration": 1000, "p95Duration": 1000,
                                        "p50TimeToFirstToken": 600, "p95TimeToFirstToken": 600}
    assert by_provider[""]["requests"] == 1 and by_provider[""]["p50TimeToFirstToken"] is None


def test_the_last_day_per_provider(org, traffic):
    by_provider = {m["provider"]: m for m in provider_metrics(organization=org, since=traffic - timedelta(days=1))}

    openai = by_provider["openai"]  # 100, 200, 300, 400, 1100
    assert (openai["requests"], openai["p50Duration"], openai["p95Duration"]) == (5, 300, 960)  # 400 + 0.8 × 700
    assert (openai["p50TimeToFirstToken"], openai["p95TimeToFirstToken"]) == (80, 863)  # 50, 70, 90, 1000: 90 + 0.85 × 910, in floats
    anthropic = by_provider["anthropic"]
    assert (anthropic["requests"], anthropic["errors"], anthropic["errorRate"]) == (2, 1, 0.5)
    assert (anthropic["p50Duration"], anthropic["p95Duration"]) == (1500, 1950)


def test_the_database_aggregates_in_a_few_queries_whatever_the_traffic(org, traffic, project, api_key, record_usage):
    with CaptureQueriesContext(connection) as before:
        provider_metrics(organization=org, since=traffic - timedelta(days=1))
    record_usage(project, api_key, count=40, used_provider="openai", duration=10)
    with CaptureQueriesContext(connection) as after:
        figures = provider_metrics(organization=org, since=traffic - timedelta(days=1))

    assert len(after) == len(before) <= 4
    assert next(m for m in figures if m["provider"] == "openai")["requests"] == 45


def test_the_page_shows_the_figures_to_members(developer, org, traffic, as_user):
    page = text(as_user(developer).get(f"/org/{org.pk}/metrics/"))

    hour, day = page.index('id="metrics-hour"'), page.index('id="metrics-day"')
    hour_part, day_part = page[hour:day], page[day:]
    assert 'id="metrics-hour-requests">6<' in hour_part and 'id="metrics-day-requests">8<' in day_part
    assert 'id="metrics-hour-errors">33.3%<' in hour_part and 'id="metrics-day-errors">25%<' in day_part
    openai_row = hour_part[hour_part.index('data-provider="openai"'):]
    openai_row = openai_row[:openai_row.index("</tr>")]
    for figure in ("250 ms", "385 ms", "70 ms", "88 ms", ">4<", "0%"):
        assert figure in openai_row, figure
    anthropic_row = day_part[day_part.index('data-provider="anthropic"'):]
    assert "50%" in anthropic_row[:anthropic_row.index("</tr>")]
    assert "77,777" not in page and "99,999" not in page
    assert f'href="/org/{org.pk}/metrics/" aria-current="page">Metrics<' in page


def test_the_page_is_a_404_for_outsiders_and_says_when_nothing_happened(outsider, owner, org, as_user):
    assert as_user(outsider).get(f"/org/{org.pk}/metrics/").status_code == 404

    page = text(as_user(owner).get(f"/org/{org.pk}/metrics/"))
    assert page.count("No requests in this period") == 2
    assert f'href="/org/{org.pk}/metrics/">Metrics<' in text(as_user(owner).get(f"/org/{org.pk}/usage/"))
