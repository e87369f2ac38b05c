"""Project settings: name, mode, caching and duration for admins and owners, archive and
restore, and delete for owners only, after typing the project's name."""

import re

from apikeys.models import ApiKey
from projects import services
from projects.models import Project
from tests.dashboard.conftest import text
from usage.models import UsageLog


def _url(project, rest="settings/"):
    return f"/projects/{project.pk}/{rest}"


def _form(**changes):
    data = {"name": "Production API", "mode": "hybrid", "cache_duration_seconds": "60"}
    data.update(changes)
    return data


def test_saving_name_mode_and_caching(owner, project, as_user):
    response = as_user(owner).post(_url(project), _form(name="Prod v2", mode="api-keys", caching_enabled="on",
                                                        cache_duration_seconds="3600"), htmx=True)

    project.refresh_from_db()
    assert (project.name, project.mode, project.caching_enabled, project.cache_duration_seconds) == ("Prod v2", "api-keys", True, 3600)
    assert "Settings saved." in text(response)
    assert text(response).strip().startswith('<section id="settings"')


def test_an_empty_name_is_refused_in_place(owner, project, as_user):
    response = as_user(owner).post(_url(project), _form(name=""), htmx=True)

    assert response.status_code == 400 and "This field is required." in text(response)
    assert Project.objects.get(pk=project.pk).name == "Production API"


def test_the_duration_picker_offers_the_guides_ranges_and_keeps_a_custom_current_value(owner, project, as_user):
    services.project_update(project=project, caching_enabled=True, cache_duration_seconds=45)

    page = text(as_user(owner).get(_url(project)))

    assert '<optgroup label="Current setting">' in page and '<option value="45" selected>45 seconds</option>' in page
    for group in ("10–60 seconds", "5–15 minutes", "1–24 hours", "Days/weeks"):
        assert f'<optgroup label="{group}' in page
    as_user(owner).post(_url(project), _form(caching_enabled="on", cache_duration_seconds="45"))
    assert Project.objects.get(pk=project.pk).cache_duration_seconds == 45


def test_archiving_and_restoring_a_project(owner, project, as_user):
    browser = as_user(owner)

    browser.post(_url(project, "archive"))
    assert Project.objects.get(pk=project.pk).status == "archived"
    assert "Restore project" in text(browser.get(_url(project)))
    browser.post(_url(project, "archive"))
    assert Project.objects.get(pk=project.pk).status == "active"


def test_restoring_past_the_limit_explains_it(owner, org, project, as_user, settings):
    services.project_update(project=project, status="archived")
    services.project_create(organization=org, name="The one allowed")
    settings.PROJECT_LIMIT = 1

    browser = as_user(owner)
    browser.post(_url(project, "archive"))
    page = text(browser.get(_url(project)))

    assert "reached its limit of 1 active projects" in page
    assert Project.objects.get(pk=project.pk).status == "archived"


def test_delete_lists_what_deletion_does(owner, project, api_key, record_usage, as_user):
    record_usage(project, api_key, 2)

    page = text(as_user(owner).get(_url(project)))

    assert "invalidate all API keys (1 key)" in page
    assert "remove all usage logs (2 requests) and cached responses" in page
    assert "stop all active requests of this project" in page
    assert "This action cannot be undone." in page


def test_delete_needs_the_projects_name_typed(owner, project, as_user):
    response = as_user(owner).post(_url(project, "delete"), {"confirm_name": "production api"}, htmx=True)

    assert response.status_code == 400
    assert "This is not the project&#x27;s name; nothing was deleted." in text(response)
    assert Project.objects.filter(pk=project.pk).exists()


def test_deleting_removes_the_project_its_keys_and_logs(owner, org, project, api_key, record_usage, as_user):
    record_usage(project, api_key)

    response = as_user(owner).post(_url(project, "delete"), {"confirm_name": "Production API"}, htmx=True)

    assert response["HX-Redirect"] == f"/org/{org.pk}/"
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not ApiKey.objects.filter(pk=api_key.pk).exists()
    assert not UsageLog.objects.filter(project_id=project.pk).exists()


def test_admins_edit_and_archive_but_do_not_see_or_use_delete(admin, project, as_user):
    browser = as_user(admin)

    page = text(browser.get(_url(project)))

    assert 'name="mode"' in page and "Archive project" in page
    assert 'id="delete"' not in page and "/delete" not in page
    assert browser.post(_url(project, "delete"), {"confirm_name": "Production API"}).status_code == 403
    assert Project.objects.filter(pk=project.pk).exists()


def test_developers_see_the_settings_read_only(developer, project, as_user):
    browser = as_user(developer)

    page = text(browser.get(_url(project)))

    assert "Only admins and owners change a project's settings." in page
    assert not re.search(r'<form[^>]*settings/', page) and "Archive project" not in page
    assert browser.post(_url(project), _form(name="Hacked")).status_code == 403
    assert browser.post(_url(project, "archive")).status_code == 403
    assert Project.objects.get(pk=project.pk).name == "Production API"


def test_outsiders_get_404(outsider, project, as_user):
    browser = as_user(outsider)

    assert browser.get(_url(project)).status_code == 404
    assert browser.post(_url(project), _form(name="x")).status_code == 404
    assert browser.post(_url(project, "archive")).status_code == 404
    assert browser.post(_url(project, "delete"), {"confirm_name": "Production API"}).status_code == 404
    assert Project.objects.get(pk=project.pk).status == "active"
