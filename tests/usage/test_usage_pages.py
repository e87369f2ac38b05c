"""The dashboard's organization usage page, an API key's usage panel and the CSV export links
(the REST API's, which the dashboard's session signs in to)."""

import csv
import html
import io
import re
from datetime import timedelta

from django.utils import timezone

from apikeys import services as key_services
from projects import services as project_services
from tests.dashboard.conftest import as_user, record_usage, text  # noqa: F401  (fixtures)
from usage import views


def _stat(page: str, name: str) -> str:
    start = page.index(f'id="{name}">') + len(f'id="{name}">')
    return page[start:page.index("<", start)]


def _link(page: str, link_id: str) -> str:
    return html.unescape(re.search(rf'id="{link_id}" href="([^"]+)"', page).group(1))


def _csv_rows(browser, url: str) -> list[list[str]]:
    response = browser.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))


def test_the_group_choices_are_the_apis(db):
    from usage.analytics import GROUP_BY

    assert list(views.GROUP_NAMES) and set(views.GROUP_NAMES) == set(GROUP_BY)


def test_the_organization_usage_page_sums_every_project(owner, developer, org, project, api_key, record_usage, as_user):
    staging = project_services.project_create(organization=org, name="Staging")
    _, staging_key = key_services.api_key_create(project=staging, description="Staging key")
    record_usage(project, api_key, 3, cost="0.50")
    record_usage(staging, staging_key, 1, cost="2", used_model="claude-3-5-haiku", used_provider="anthropic")
    record_usage(project, api_key, 4, when=timezone.now() - timedelta(days=12))

    for person in (owner, developer):  # any member
        response = as_user(person).get(f"/org/{org.pk}/usage/")
        page = text(response)
        assert response.status_code == 200
        assert _stat(page, "stat-requests") == "8" and _stat(page, "stat-cost") == "$3.50"
        assert ">Production API</a>" in page and ">Staging</a>" in page  # grouped by project at first
        assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
    assert _stat(text(as_user(owner).get(f"/org/{org.pk}/usage/?days=7")), "stat-requests") == "4"


def test_the_group_selector_groups_by_key_model_or_provider(owner, org, project, api_key, record_usage, as_user):
    gone = key_services.api_key_create(project=project, description="Old key")[1]
    record_usage(project, api_key, 2, cost="1")
    record_usage(project, gone, 1, used_model="gemini-2.5-flash", used_provider="google-ai-studio")
    key_services.api_key_delete(api_key=gone)
    browser = as_user(owner)

    by_key = text(browser.get(f"/org/{org.pk}/usage/?group=apiKey"))
    by_model = text(browser.get(f"/org/{org.pk}/usage/?group=model"))
    by_provider = text(browser.get(f"/org/{org.pk}/usage/?group=provider&days=7"))

    assert f'href="/projects/{project.pk}/keys/{api_key.pk}/">Production API Key · Production API</a>' in by_key
    assert "<td>deleted key</td>" in by_key
    assert "<td>gemini-2.5-flash</td>" in by_model and "<td>gpt-4o-mini</td>" in by_model
    assert "<td>google-ai-studio</td>" in by_provider and "<td>openai</td>" in by_provider
    assert 'aria-current="true">Provider</a>' in by_provider and 'aria-current="true">7 days</a>' in by_provider
    assert 'aria-current="true">Project</a>' in text(browser.get(f"/org/{org.pk}/usage/?group=nonsense"))


def test_switching_with_htmx_renders_only_the_usage(owner, org, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 1)

    page = text(as_user(owner).get(f"/org/{org.pk}/usage/?group=model", htmx=True))

    assert page.strip().startswith('<section id="org-usage">') and "<html" not in page


def test_the_organization_navigation_leads_to_it(owner, org, project, as_user):
    page = text(as_user(owner).get(f"/org/{org.pk}/usage/"))

    assert f'href="/org/{org.pk}/usage/" aria-current="page">Usage</a>' in page
    assert "No requests in the last 30 days" in page
    assert f'href="/org/{org.pk}/usage/">Usage</a>' in text(as_user(owner).get(f"/projects/{project.pk}/"))


def test_an_outsider_gets_404(outsider, org, as_user):
    assert as_user(outsider).get(f"/org/{org.pk}/usage/").status_code == 404


def test_the_organization_export_link_downloads_its_logs(owner, org, project, api_key, record_usage, as_user):
    staging = project_services.project_create(organization=org, name="Staging")
    staging_key = key_services.api_key_create(project=staging, description="Staging key")[1]
    record_usage(project, api_key, 2)
    record_usage(staging, staging_key, 1)
    record_usage(project, api_key, 1, when=timezone.now() - timedelta(days=12))  # outside 7 days
    browser = as_user(owner)

    url = _link(text(browser.get(f"/org/{org.pk}/usage/?days=7")), "export-csv")

    assert url.startswith(f"/api/v1/logs?organizationId={org.pk}&from=") and url.endswith("&format=csv")
    assert len(_csv_rows(browser, url)) == 1 + 3


def test_the_key_page_has_the_keys_usage_panel(owner, developer, project, api_key, record_usage, as_user):
    other = key_services.api_key_create(project=project, description="Other key")[1]
    record_usage(project, api_key, 2, cost="0.25")
    record_usage(project, api_key, 1, cost="1", used_model="claude-3-5-haiku", used_provider="anthropic")
    record_usage(project, api_key, 1, cost="5", when=timezone.now() - timedelta(days=40))  # before the 30 days
    record_usage(project, other, 3, cost="9")

    response = as_user(developer).get(f"/projects/{project.pk}/keys/{api_key.pk}/")
    page = text(response)

    assert response.status_code == 200 and 'id="key-usage"' in page
    assert _stat(page, "key-stat-cost") == "$1.50" and _stat(page, "key-stat-requests") == "3"
    assert "<td>claude-3-5-haiku</td>" in page and "<td>gpt-4o-mini</td>" in page
    assert "This key's spend by day in USD" in page and '<svg xmlns="http://www.w3.org/2000/svg"' in page
    assert f'href="/projects/{project.pk}/logs/?key={api_key.pk}"' in page
    rows = _csv_rows(as_user(developer), _link(page, "key-export-csv"))
    assert len(rows) == 1 + 3 and {r[rows[0].index("apiKeyId")] for r in rows[1:]} == {api_key.pk}


def test_a_key_without_requests_says_so(owner, project, api_key, as_user):
    page = text(as_user(owner).get(f"/projects/{project.pk}/keys/{api_key.pk}/"))

    assert "No requests with this key in the last 30 days." in page and _stat(page, "key-stat-cost") == "$0.00"


def test_the_key_pages_partials_leave_the_panel_out(owner, project, api_key, as_user):
    response = as_user(owner).post(f"/projects/{project.pk}/keys/{api_key.pk}/", {"description": "renamed"}, htmx=True)

    assert response.status_code == 200 and 'id="key-usage"' not in text(response)


def test_an_outsider_gets_404_for_the_key_page(outsider, project, api_key, as_user):
    assert as_user(outsider).get(f"/projects/{project.pk}/keys/{api_key.pk}/").status_code == 404


def test_the_logs_page_exports_what_its_filters_show(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 2)
    record_usage(project, api_key, 3, has_error=True, status_code=502)
    browser = as_user(owner)

    url = _link(text(browser.get(f"/projects/{project.pk}/logs/", {"errors": "yes", "key": api_key.pk})), "export-csv")

    assert url == f"/api/v1/logs?projectId={project.pk}&apiKeyId={api_key.pk}&hasError=true&format=csv"
    assert len(_csv_rows(browser, url)) == 1 + 3
    dated = _link(text(browser.get(f"/projects/{project.pk}/logs/", {"date_from": "2026-01-02", "date_to": "2026-01-02"})), "export-csv")
    assert "from=2026-01-02T00%3A00%3A00Z&to=2026-01-03T00%3A00%3A00Z" in dated
