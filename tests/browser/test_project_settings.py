"""Deleting a project from its settings in a real browser, after typing its name, and the
other main pages as each role sees them."""

import openai
import pytest

from apikeys import services as key_services
from apikeys.models import ApiKey
from projects import services
from projects.models import Membership, Project
from tests.conftest import make_person
from usage import services as usage_services


def test_an_owner_deletes_a_project_after_typing_its_name(page, gateway):
    owner = make_person("owner@example.com")
    project = services.project_create(organization=owner.organization, name="Doomed Project")
    token, key = key_services.api_key_create(project=project, description="Doomed key")
    page.log_in_as(owner.user)
    page.open(f"/projects/{project.pk}/settings/")
    assert "invalidate all API keys (1 key)" in page.text and "This action cannot be undone." in page.text
    page.screenshot("settings")

    page.fill("#id_confirm_name", "doomed project")
    page.find("#delete button[type=submit]").click()
    page.wait_text("#delete .error", "nothing was deleted")
    assert Project.objects.filter(pk=project.pk).exists()

    page.fill("#id_confirm_name", "Doomed Project")
    page.find("#delete button[type=submit]").click()
    page.wait_text(".flash", "Project “Doomed Project” was deleted.")

    assert page.path == f"/org/{owner.organization.pk}/"
    assert not Project.objects.filter(pk=project.pk).exists() and not ApiKey.objects.filter(pk=key.pk).exists()
    with pytest.raises(openai.AuthenticationError):  # its keys stopped working
        gateway.client(token).models.list()
    assert "Doomed Project" not in page.find(".sidebar").text


def test_a_developer_sees_the_pages_without_the_controls_of_admins(page, gateway):
    owner = make_person("boss@example.com")
    developer = make_person("dev@example.com", owner.organization, Membership.Role.DEVELOPER)
    project = services.project_create(organization=owner.organization, name="Team Project")
    key_services.provider_key_create(organization=owner.organization, provider="openai", token="sk-team-openai-1234", validate=False)
    usage_services.credits_add(organization=owner.organization, amount="25", note="welcome credits")
    usage_services.alert_create(organization=owner.organization, threshold_usd="10")
    page.log_in_as(developer.user)

    page.open(f"/org/{owner.organization.pk}/")
    assert "boss@example.com" in page.text and not page.find_all("#member-add")
    page.screenshot("organization-members-developer")
    page.open(f"/org/{owner.organization.pk}/provider-keys/")
    assert "…1234" in page.text and not page.find_all("#add-provider-key")
    page.open(f"/org/{owner.organization.pk}/billing/")
    assert "$25.00" in page.text and "Add an alert" not in page.text
    page.screenshot("billing-developer")
    page.open(f"/projects/{project.pk}/settings/")
    assert not page.find_all("#delete") and not page.find_all("#archive")
    assert not page.find_all(".sidebar a[href$='/projects/new/']")
