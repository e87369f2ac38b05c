"""Logs of a project: filters (key, model, provider, cached, errors, dates), infinite scroll
with the API's keyset pagination, and one request's detail."""

import re
from datetime import timedelta

from django.utils import timezone

from apikeys import services as key_services
from projects import services
from tests.dashboard.conftest import text
from usage.models import UsageLog


def _url(project, rest=""):
    return f"/projects/{project.pk}/logs/{rest}"


def _ids(page: str) -> list[str]:
    return re.findall(r'/logs/(log_[A-Za-z0-9]+)/', page)


def test_the_logs_list_the_projects_requests_newest_first(owner, project, api_key, record_usage, as_user):
    older = record_usage(project, api_key, when=timezone.now() - timedelta(hours=2))
    newer = record_usage(project, api_key, used_model="claude-3-5-haiku", used_provider="anthropic")

    page = text(as_user(owner).get(_url(project)))

    assert _ids(page) == newer + older
    assert "claude-3-5-haiku" in page and "Production API Key" in page


def test_each_filter_narrows_the_list(owner, project, api_key, record_usage, as_user):
    _, other_key = key_services.api_key_create(project=project, description="Other")
    base = record_usage(project, api_key)
    by_key = record_usage(project, other_key)
    by_model = record_usage(project, api_key, requested_model="gpt-4o", used_model="gpt-4o")
    by_provider = record_usage(project, api_key, used_provider="together-ai")
    cached = record_usage(project, api_key, cached=True, cache_status="hit")
    failed = record_usage(project, api_key, has_error=True, status_code=502)
    old = record_usage(project, api_key, when=timezone.now() - timedelta(days=3))
    browser = as_user(owner)
    today = timezone.now().date()

    def listed(**query):
        return set(_ids(text(browser.get(_url(project), query))))

    assert listed(key=other_key.pk) == set(by_key)
    assert listed(model="gpt-4o") == set(by_model)
    assert listed(provider="together-ai") == set(by_provider)
    assert listed(cached="yes") == set(cached)
    assert listed(errors="yes") == set(failed)
    assert set(failed) & listed(errors="no") == set()
    assert listed(date_to=str(today - timedelta(days=2))) == set(old)
    assert listed(date_from=str(today)) == set(base + by_key + by_model + by_provider + cached + failed)


def test_filtering_with_htmx_answers_with_the_table_only(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, has_error=True, status_code=502)

    page = text(as_user(owner).get(_url(project), {"errors": "yes"}, htmx=True))

    assert page.strip().startswith('<section id="logs"') and "<html" not in page and "502" in page


def test_scrolling_loads_the_next_page_with_the_same_filters(owner, project, api_key, record_usage, as_user):
    ids = [record_usage(project, api_key, when=timezone.now() - timedelta(seconds=i))[0] for i in range(55)]
    browser = as_user(owner)

    first = text(browser.get(_url(project), {"provider": "openai"}))
    assert _ids(first) == ids[:50]
    more = re.search(r'<tr class="more" hx-get="([^"]+)" hx-trigger="revealed"', first)[1].replace("&amp;", "&")
    assert "provider=openai" in more and "cursor=" in more

    rest = text(browser.get(more, htmx=True))

    assert _ids(rest) == ids[50:]
    assert rest.strip().startswith("<tr") and 'hx-trigger="revealed"' not in rest


def test_the_next_page_link_works_without_javascript(owner, project, api_key, record_usage, as_user):
    for i in range(51):
        record_usage(project, api_key, when=timezone.now() - timedelta(seconds=i))
    browser = as_user(owner)

    link = re.search(r'<a href="\?([^"]+)">Older requests</a>', text(browser.get(_url(project))))[1].replace("&amp;", "&")
    page = text(browser.get(f"{_url(project)}?{link}"))

    assert "<html" in page and len(_ids(page)) == 1


def test_a_bad_cursor_or_date_range_is_explained(owner, project, as_user):
    browser = as_user(owner)

    bad_cursor = browser.get(_url(project), {"cursor": "not-a-cursor"})
    bad_range = browser.get(_url(project), {"date_from": "2026-02-10", "date_to": "2026-02-01"})

    assert bad_cursor.status_code == 400 and "is not a cursor this API gave out" in text(bad_cursor)
    assert bad_range.status_code == 400 and "must be on or after the From date" in text(bad_range)


def test_the_detail_view_shows_one_request(owner, project, api_key, record_usage, as_user):
    log_id = record_usage(project, api_key, has_error=True, status_code=502, error_message="upstream said no",
                          used_mode="credits", fee="0.0000002")[0]

    page = text(as_user(owner).get(_url(project, f"{log_id}/")))

    log = UsageLog.objects.get(pk=log_id)
    assert log.request_id in page and "upstream said no" in page and "gateway credits" in page
    assert "10 prompt + 5 completion = 15" in page
    assert "cost $0.0000045 (incl. $0.0000002 fee)" in page


def test_teammates_read_logs_and_outsiders_get_404(developer, outsider, org, project, api_key, record_usage, as_user):
    log_id = record_usage(project, api_key)[0]
    other = services.project_create(organization=org, name="Other")

    assert as_user(developer).get(_url(project)).status_code == 200
    assert as_user(developer).get(_url(project, f"{log_id}/")).status_code == 200
    assert as_user(developer).get(_url(other, f"{log_id}/")).status_code == 404  # not this project's log
    assert as_user(outsider).get(_url(project)).status_code == 404
    assert as_user(outsider).get(_url(project, f"{log_id}/")).status_code == 404


def test_the_detail_view_shows_the_prompt_cache_reasoning_and_an_unknown_price(owner, project, api_key, record_usage, as_user):
    log_id = record_usage(project, api_key, prompt_tokens=12_021, cached_tokens=10_000, cache_write_tokens=2_000,
                          reasoning_tokens=3, saved_cost="0.027", priced=False, user="end-user-7")[0]

    page = text(as_user(owner).get(_url(project, f"{log_id}/")))

    assert "10000 read, 2000 written, saved $0.027" in page
    assert "3 of the completion tokens" in page
    assert "price unknown: logged at $0" in page and "end-user-7" in page and "chat.completions" in page
