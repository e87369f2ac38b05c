"""The New Project wizard: the guide's four steps, each validated in place with htmx, the
project created by projects.services.project_create, then the first API key shown once."""

import re

from apikeys.models import ApiKey
from projects import services
from projects.models import Project
from tests.dashboard.conftest import text


def _url(org):
    return f"/org/{org.pk}/projects/new/"


def test_step_one_asks_for_a_name_and_counts_active_projects_against_the_limit(owner, org, project, as_user):
    page = text(as_user(owner).get(_url(org)))

    assert 'aria-current="step"' in page and 'name="name"' in page
    assert "1 of 10 active projects used in this organization." in page


def test_an_empty_name_is_refused_in_place(owner, org, as_user):
    response = as_user(owner).post(_url(org), {"step": "1", "name": ""}, htmx=True)

    assert response.status_code == 400
    page = text(response)
    assert page.strip().startswith('<section id="wizard"') and "This field is required." in page
    assert 'name="step" value="1"' in page


def test_a_name_leads_to_the_mode_step_with_hybrid_preselected_and_each_mode_explained(owner, org, as_user):
    page = text(as_user(owner).post(_url(org), {"step": "1", "name": "Mobile App"}, htmx=True))

    assert 'name="step" value="2"' in page
    assert '<input type="hidden" name="name" value="Mobile App">' in page
    assert re.search(r'value="hybrid"[^>]*checked', page)
    assert "falls back to gateway credits" in page
    assert "no credits are used" in page
    assert "provider keys are ignored" in page


def test_back_returns_to_the_previous_step_with_what_was_typed(owner, org, as_user):
    page = text(as_user(owner).post(_url(org), {"step": "2", "name": "Mobile App", "mode": "credits", "back": "1"}, htmx=True))

    assert 'name="step" value="1"' in page
    assert 'value="Mobile App"' in page
    assert '<input type="hidden" name="mode" value="credits">' in page


def test_the_caching_step_offers_the_guides_duration_ranges(owner, org, as_user):
    page = text(as_user(owner).post(_url(org), {"step": "2", "name": "Docs bot", "mode": "hybrid"}, htmx=True))

    assert 'name="step" value="3"' in page and 'name="caching_enabled"' in page
    for group in ("10–60 seconds", "5–15 minutes", "1–24 hours", "Days/weeks"):
        assert f'<optgroup label="{group}' in page
    for seconds in (10, 60, 300, 900, 3600, 86400, 604800):
        assert f'value="{seconds}"' in page


def test_a_duration_outside_the_choices_is_refused_in_place(owner, org, as_user):
    data = {"step": "3", "name": "Docs bot", "mode": "hybrid", "caching_enabled": "on", "cache_duration_seconds": "5"}

    response = as_user(owner).post(_url(org), data, htmx=True)

    assert response.status_code == 400
    assert "Select a valid choice." in text(response)
    assert not Project.objects.filter(name="Docs bot").exists()


def test_creating_the_project_keeps_every_choice_and_moves_to_the_first_key(owner, org, as_user):
    data = {"step": "3", "name": "Docs bot", "mode": "credits", "caching_enabled": "on", "cache_duration_seconds": "900"}

    page = text(as_user(owner).post(_url(org), data, htmx=True))

    project = Project.objects.get(name="Docs bot")
    assert (project.organization, project.mode, project.caching_enabled, project.cache_duration_seconds) == (
        org, "credits", True, 900
    )
    assert 'name="step" value="4"' in page and f'name="project" value="{project.pk}"' in page
    assert "Project “Docs bot” created." in page
    assert 'id="sidebar-projects" hx-swap-oob="true"' in page  # the sidebar learns of it at once
    assert f'href="/projects/{project.pk}/" aria-current="page">Docs bot<' in page


def test_the_first_key_is_shown_once_with_a_copy_button_and_a_warning(owner, org, project, as_user):
    browser = as_user(owner)

    page = text(browser.post(_url(org), {"step": "4", "project": project.pk, "description": "Default key"}, htmx=True))

    key = ApiKey.objects.get(project=project)
    token = re.search(r'id="new-token"[^>]*value="(llmgw_[A-Za-z0-9]+)"', page)[1]
    assert key.token_hash == __import__("hashlib").sha256(token.encode()).hexdigest()
    assert 'data-copy="#new-token"' in page
    assert "It will not be shown again." in page
    assert token not in text(browser.get(f"/projects/{project.pk}/keys/"))


def test_the_limit_is_explained_before_starting_when_reached(owner, org, project, as_user, settings):
    settings.PROJECT_LIMIT = 1

    page = text(as_user(owner).get(_url(org)))

    assert "This organization has reached its limit of 1 active project." in page
    assert "contact support to raise the limit" in page
    assert 'name="name"' not in page


def test_the_limit_reached_while_in_the_wizard_is_explained_in_place(owner, org, as_user, settings):
    data = {"step": "3", "name": "One too many", "mode": "hybrid", "cache_duration_seconds": "60"}
    settings.PROJECT_LIMIT = 1
    services.project_create(organization=org, name="Meanwhile")

    response = as_user(owner).post(_url(org), data, htmx=True)

    assert response.status_code == 409
    assert "This organization has reached its limit of 1 active project." in text(response)
    assert not Project.objects.filter(name="One too many").exists()


def test_without_htmx_each_step_is_a_whole_page(owner, org, as_user):
    response = as_user(owner).post(_url(org), {"step": "1", "name": "Plain"})

    assert "<html" in text(response) and 'name="step" value="2"' in text(response)


def test_developers_cannot_open_the_wizard_and_outsiders_get_404(developer, outsider, org, as_user):
    assert as_user(developer).get(_url(org)).status_code == 403
    assert as_user(outsider).get(_url(org)).status_code == 404
    assert as_user(outsider).post(_url(org), {"step": "3", "name": "x", "mode": "hybrid", "cache_duration_seconds": "60"}).status_code == 404


def test_the_key_step_refuses_a_project_of_another_organization(owner, outsider, org, as_user):
    theirs = services.project_create(organization=outsider.organization, name="Theirs")

    response = as_user(owner).post(_url(org), {"step": "4", "project": theirs.pk})

    assert response.status_code == 404
    assert not ApiKey.objects.filter(project=theirs).exists()


def test_the_key_step_with_a_nul_byte_in_the_project_id_is_not_found(owner, org, as_user):
    assert as_user(owner).post(_url(org), {"step": "4", "project": "proj_\x00"}).status_code == 404
