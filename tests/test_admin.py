"""The Django admin writes through the services: the same validation, limits and events as the
API and the dashboard, and a service's refusal is a message, never a 500 or a half-write."""

import pytest
from django.contrib.admin.utils import quote  # ids hold "_", the admin's own escape character in URLs

from apikeys import services as key_services
from apikeys.models import ApiKey, IamRule
from projects import services
from projects.models import Membership, Project
from usage.models import SpendAlert


def _inline(prefix: str, rows: list[dict], initial: int = 0) -> dict:
    """An inline formset's POST data: its management form and one entry per row."""
    data = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}
    for index, row in enumerate(rows):
        data.update({f"{prefix}-{index}-{name}": value for name, value in row.items()})
    return data


def _messages(response) -> list[str]:
    return [m.message for m in response.context["messages"]]


def _key_form(key: ApiKey, rules: list[dict], initial: int = 0) -> dict:
    return {"description": key.description, "usage_limit": "", "status": key.status,
            **_inline("iam_rules", rules, initial)}


@pytest.fixture
def published(monkeypatch):
    """The organizations whose configuration change reached the gateway's event channel."""
    sent = []
    monkeypatch.setattr("core.events.config_changed", lambda organization_id: sent.append(organization_id))
    return sent


def test_a_malformed_iam_rule_added_inline_is_refused_naming_the_problem(admin_client, api_key):
    form = _key_form(api_key, [{"rule_type": "allow_models", "rule_value": '{"models": "gpt-4o"}', "status": "active",
                                "api_key": api_key.pk}])

    response = admin_client.post(f"/admin/apikeys/apikey/{quote(api_key.pk)}/change/", form)

    assert response.status_code == 200  # the form again, with the error
    assert "rule_value.models" in response.content.decode()
    assert not IamRule.objects.exists()


def test_an_iam_rule_added_inline_goes_through_the_service_and_reaches_the_gateway(admin_client, api_key, published):
    form = _key_form(api_key, [{"rule_type": "deny_models", "rule_value": '{"models": [" gpt-4o "]}',
                                "status": "active", "api_key": api_key.pk}])

    response = admin_client.post(f"/admin/apikeys/apikey/{quote(api_key.pk)}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    rule = IamRule.objects.get()
    assert rule.rule_value == {"models": ["gpt-4o"]}  # cleaned as the service cleans it
    assert api_key.project.organization_id in published


def test_the_reason_a_key_is_off_is_not_editable_and_follows_the_status(admin_client, api_key):
    form = {**_key_form(api_key, []), "status": "inactive", "disabled_reason": "usage_limit"}

    admin_client.post(f"/admin/apikeys/apikey/{quote(api_key.pk)}/change/", form)

    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("inactive", "manual")


def test_removing_the_last_owner_inline_is_refused_with_a_message(admin_client, owner, org):
    membership = Membership.objects.get(organization=org)
    form = {"name": org.name, "status": org.status, "project_limit": "",
            **_inline("memberships", [{"id": membership.pk, "organization": org.pk, "user": owner.user.pk,
                                       "role": "owner", "DELETE": "on"}], initial=1)}

    response = admin_client.post(f"/admin/projects/organization/{quote(org.pk)}/change/", form, follow=True)

    assert _messages(response) == ["an organization needs at least one owner"]
    assert Membership.objects.filter(organization=org, role="owner").count() == 1


def test_demoting_the_last_owner_inline_is_refused_too(admin_client, owner, org):
    membership = Membership.objects.get(organization=org)
    form = {"name": org.name, "status": org.status, "project_limit": "",
            **_inline("memberships", [{"id": membership.pk, "organization": org.pk, "user": owner.user.pk,
                                       "role": "developer"}], initial=1)}

    response = admin_client.post(f"/admin/projects/organization/{quote(org.pk)}/change/", form, follow=True)

    assert _messages(response) == ["an organization needs at least one owner"]
    membership.refresh_from_db()
    assert membership.role == "owner"


def test_adding_a_project_in_the_admin_keeps_the_organizations_project_limit(admin_client, org, settings):
    org.project_limit = 1
    org.save()
    services.project_create(organization=org, name="The one allowed")
    form = {"name": "One too many", "organization": org.pk, "mode": "hybrid", "cache_duration_seconds": "60",
            "content_retention_days": "30"}

    response = admin_client.post("/admin/projects/project/add/", form, follow=True)

    assert "reached its limit of 1 active projects" in _messages(response)[0]
    assert not Project.objects.filter(name="One too many").exists()


def test_a_project_added_in_the_admin_is_made_by_the_service(admin_client, org):
    form = {"name": "From support", "organization": org.pk, "mode": "credits", "cache_duration_seconds": "300",
            "caching_enabled": "on", "log_content": "on", "content_retention_days": "7"}

    response = admin_client.post("/admin/projects/project/add/", form)

    assert response.status_code == 302
    project = Project.objects.get(name="From support")
    assert (project.mode, project.caching_enabled, project.cache_duration_seconds) == ("credits", True, 300)
    assert (project.log_content, project.content_retention_days) == (True, 7)


def test_a_spend_alert_added_in_the_admin_is_validated_by_the_service(admin_client, org):
    form = {"organization": org.pk, "threshold_usd": "0", "period": "day"}

    response = admin_client.post("/admin/usage/spendalert/add/", form, follow=True)

    assert _messages(response) == ["threshold_usd: must be more than zero USD"]
    assert not SpendAlert.objects.exists()


def test_deleting_a_key_in_the_admin_tells_the_gateway(admin_client, api_key, published):
    admin_client.post(f"/admin/apikeys/apikey/{quote(api_key.pk)}/delete/", {"post": "yes"})

    assert not ApiKey.objects.filter(pk=api_key.pk).exists()
    assert api_key.project.organization_id in published


def test_a_key_rule_deleted_inline_goes_through_the_service(admin_client, api_key, published):
    rule = key_services.iam_rule_create(api_key=api_key, rule_type="allow_models", rule_value={"models": ["gpt-4o"]})
    published.clear()
    form = _key_form(api_key, [{"id": rule.pk, "api_key": api_key.pk, "rule_type": rule.rule_type,
                                "rule_value": '{"models": ["gpt-4o"]}', "status": "active", "DELETE": "on"}], initial=1)

    response = admin_client.post(f"/admin/apikeys/apikey/{quote(api_key.pk)}/change/", form)

    assert response.status_code == 302
    assert not IamRule.objects.exists()
    assert published
