"""A project's overview: requests, cost, tokens, cache hit rate and savings, error rate and
p50/p95 latency for 7 or 30 days, with charts by day and by model."""

from datetime import timedelta

from django.utils import timezone

from tests.dashboard.conftest import text
from usage import services as usage_services
from usage.models import AlertNotice


def _stat(page: str, name: str) -> str:
    start = page.index(f'id="stat-{name}">') + len(f'id="stat-{name}">')
    return page[start:page.index("<", start)]


def test_the_overview_sums_the_last_30_days(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 3, cost="0.50", prompt_tokens=1000, completion_tokens=500, duration=180, cache_status="miss")
    record_usage(project, api_key, 1, cost="0", cached=True, cache_status="hit", saved_cost="0.50", duration=4)
    record_usage(project, api_key, 1, cost="0", has_error=True, status_code=502, prompt_tokens=0, completion_tokens=0)

    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert _stat(page, "requests") == "5"
    assert _stat(page, "cost") == "$1.50"
    assert _stat(page, "tokens") == "4,515"  # 3 × 1,500 + the cached 15
    assert _stat(page, "cache") == "25%" and "$0.50 saved" in page
    assert _stat(page, "errors") == "20%"
    assert _stat(page, "latency") == "200 / 200 ms"


def test_seven_days_leaves_out_older_requests(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 2)
    record_usage(project, api_key, 3, when=timezone.now() - timedelta(days=12))

    browser = as_user(owner)

    assert _stat(text(browser.get(f"/projects/{project.pk}/?days=7")), "requests") == "2"
    assert _stat(text(browser.get(f"/projects/{project.pk}/?days=30")), "requests") == "5"


def test_switching_the_period_with_htmx_renders_only_the_overview(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 1)

    page = text(as_user(owner).get(f"/projects/{project.pk}/?days=7", htmx=True))

    assert page.strip().startswith('<section id="overview">')
    assert "Last 7 days" in page and "<html" not in page


def test_charts_by_day_and_by_model_are_inline_svg_without_scripts_from_elsewhere(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 2)
    record_usage(project, api_key, 1, used_model="claude-3-5-haiku", used_provider="anthropic")

    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
    assert "Requests by day" in page and "Cost by day" in page and "By model" in page
    assert "claude-3-5-haiku" in page and "gpt-4o-mini" in page
    assert "kozea.github.io" not in page and "<script src=\"http" not in page


def test_a_project_without_requests_shows_how_to_start(owner, project, as_user):
    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert "No requests in the last 30 days" in page
    assert 'base_url="http://testserver/v1"' in page
    assert f'href="/projects/{project.pk}/keys/">Create an API key<' in page
    assert "<svg" not in page


def test_a_fired_spending_alert_is_shown_on_the_overview(owner, org, project, as_user):
    alert = usage_services.alert_create(organization=org, threshold_usd="5", period="day", project=project)
    AlertNotice.objects.create(alert=alert, period_start=timezone.now().date(), spend="7.25")

    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert "Spending alert: this project spent $7.25 this day (threshold $5.00)." in page


def test_teammates_see_the_overview_and_outsiders_get_404(admin, developer, outsider, project, as_user):
    assert as_user(admin).get(f"/projects/{project.pk}/").status_code == 200
    assert as_user(developer).get(f"/projects/{project.pk}/").status_code == 200
    assert as_user(outsider).get(f"/projects/{project.pk}/").status_code == 404
    assert as_user(outsider).get(f"/projects/{project.pk}/?days=7", htmx=True).status_code == 404
