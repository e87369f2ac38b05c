"""A new organization has $0 of credits and no provider key: its first gateway request
would fail. The wizard's last step and the project overview say so before it happens, with
what to do and a link to Provider Keys."""

import pytest

from apikeys import services as key_services
from projects import services
from tests.dashboard.conftest import text
from usage import services as usage_services


def _first_key_page(browser, org, project) -> str:
    return text(browser.post(f"/org/{org.pk}/projects/new/", {"step": "4", "project": project.pk, "description": "k"}, htmx=True))


@pytest.fixture
def gateway_has_its_own_keys(settings):
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "openai": "sk-gateway"}


def test_a_new_organization_is_told_before_its_first_request_answers_402(owner, org, project, as_user):
    page = _first_key_page(as_user(owner), org, project)

    assert 'id="payment-gap"' in page
    assert "no provider key and no credits" in page and "402" in page
    assert f'href="/org/{org.pk}/provider-keys/"' in page


def test_the_overview_says_the_same_until_a_provider_key_is_added(owner, org, project, as_user):
    browser = as_user(owner)
    assert 'id="payment-gap"' in text(browser.get(f"/projects/{project.pk}/"))

    key_services.provider_key_create(organization=org, provider="openai", token="sk-test", validate=False)

    assert 'id="payment-gap"' not in text(browser.get(f"/projects/{project.pk}/"))


def test_credits_are_enough_when_the_gateway_has_provider_keys_of_its_own(owner, org, project, as_user, gateway_has_its_own_keys):
    usage_services.credits_add(organization=org, amount="5")

    assert 'id="payment-gap"' not in text(as_user(owner).get(f"/projects/{project.pk}/"))


def test_an_api_keys_project_needs_a_provider_key_whatever_the_credits(owner, org, as_user, gateway_has_its_own_keys):
    usage_services.credits_add(organization=org, amount="5")
    project = services.project_create(organization=org, name="Own keys only", mode="api-keys")

    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert 'id="payment-gap"' in page and "api-keys mode" in page


def test_a_credits_project_needs_credits_whatever_the_provider_keys(owner, org, as_user, gateway_has_its_own_keys):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-test", validate=False)
    project = services.project_create(organization=org, name="Credits only", mode="credits")

    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert 'id="payment-gap"' in page and "pays with credits" in page


def test_a_developer_is_told_who_can_add_a_provider_key(developer, project, as_user):
    page = text(as_user(developer).get(f"/projects/{project.pk}/"))

    assert 'id="payment-gap"' in page and "An admin of the organization can add one" in page
