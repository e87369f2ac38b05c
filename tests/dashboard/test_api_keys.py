"""The API Keys tab: masked tokens, usage against the limit, status and why a key is off;
create (token shown once), enable, disable, delete."""

import re
from decimal import Decimal

from apikeys import services as key_services
from apikeys.models import ApiKey
from projects import services
from tests.dashboard.conftest import text


def _url(project, rest=""):
    return f"/projects/{project.pk}/keys/{rest}"


def test_the_list_shows_masked_tokens_usage_against_the_limit_and_status(owner, project, api_key, as_user):
    _, limited = key_services.api_key_create(project=project, description="Batch", usage_limit="10")
    ApiKey.objects.filter(pk=limited.pk).update(usage=Decimal("10"), status="inactive", disabled_reason="usage_limit")
    _, manual = key_services.api_key_create(project=project, description="Paused")
    key_services.api_key_update(api_key=manual, status="inactive")

    page = text(as_user(owner).get(_url(project)))

    assert api_key.masked_token in page and api_key.plaintext not in page
    assert "$10.00 of $10.00" in page and 'value="100"' in page  # the bar is full
    assert "usage limit reached: raise the limit to enable it" in page
    assert "disabled by a member" in page
    assert "no limit" in page


def test_creating_a_key_shows_its_token_once_with_a_copy_button_and_warning(owner, project, as_user):
    browser = as_user(owner)

    response = browser.post(_url(project), {"description": "Backend", "usage_limit": "25"}, htmx=True)

    page = text(response)
    token = re.search(r'value="(llmgw_[A-Za-z0-9]+)"', page)[1]
    key = ApiKey.objects.get(project=project, description="Backend")
    assert key.usage_limit == Decimal("25") and key.created_by == owner.user
    assert "It will not be shown again." in page and 'data-copy="#new-token"' in page
    assert response["Cache-Control"] == "no-store"
    assert token not in text(browser.get(_url(project)))


def test_a_negative_limit_is_refused_in_place(owner, project, as_user):
    response = as_user(owner).post(_url(project), {"description": "x", "usage_limit": "-1"}, htmx=True)

    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 0." in text(response)
    assert not ApiKey.objects.filter(project=project).exists()


def test_disabling_and_enabling_a_key(owner, project, api_key, as_user):
    browser = as_user(owner)

    disabled = browser.post(_url(project, f"{api_key.pk}/status"), htmx=True)
    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("inactive", "manual")
    assert f"Key {api_key.masked_token} disabled." in text(disabled)

    browser.post(_url(project, f"{api_key.pk}/status"), htmx=True)
    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("active", None)


def test_enabling_a_key_at_its_limit_explains_why_it_cannot(owner, project, api_key, as_user):
    ApiKey.objects.filter(pk=api_key.pk).update(usage=5, usage_limit=5, status="inactive", disabled_reason="usage_limit")

    response = as_user(owner).post(_url(project, f"{api_key.pk}/status"), htmx=True)

    assert "raise the limit to enable it" in text(response)
    assert ApiKey.objects.get(pk=api_key.pk).status == "inactive"


def test_deleting_a_key(owner, project, api_key, as_user):
    response = as_user(owner).post(_url(project, f"{api_key.pk}/delete"), htmx=True)

    assert response.status_code == 200 and "deleted." in text(response)
    assert not ApiKey.objects.filter(pk=api_key.pk).exists()


def test_developers_manage_keys_too(developer, project, api_key, as_user):
    browser = as_user(developer)

    page = text(browser.get(_url(project)))
    created = browser.post(_url(project), {"description": "Dev key"})

    assert "Create API Key" in page and "/delete" in page
    assert created.status_code == 200 and ApiKey.objects.filter(description="Dev key").exists()


def test_without_htmx_creating_a_key_renders_the_whole_page_with_the_token(owner, project, as_user):
    page = text(as_user(owner).post(_url(project), {"description": "No JS"}))

    assert "<html" in page and "It will not be shown again." in page


def test_outsiders_get_404_and_a_key_of_another_project_is_404(owner, outsider, org, project, api_key, as_user):
    browser = as_user(outsider)
    other = services.project_create(organization=org, name="Other")

    assert browser.get(_url(project)).status_code == 404
    assert browser.post(_url(project), {"description": "x"}).status_code == 404
    assert browser.post(_url(project, f"{api_key.pk}/status")).status_code == 404
    assert browser.post(_url(project, f"{api_key.pk}/delete")).status_code == 404
    assert as_user(owner).post(_url(other, f"{api_key.pk}/delete")).status_code == 404
    assert ApiKey.objects.filter(pk=api_key.pk, status="active").exists()
    assert ApiKey.objects.filter(project=project).count() == 1
