"""Every dashboard route that takes an id answers another organization's member with 404,
whatever the method, and changes nothing. The routes come from the URL conf, so a new page
is covered without editing this file."""

import pytest
from django.urls import URLPattern

from apikeys import services as key_services
from apikeys.models import ApiKey, IamRule, ProviderKey
from apikeys.urls import pages as apikeys_pages
from projects import services as project_services
from projects.models import Invitation, Membership, Project
from projects.urls import pages as projects_pages
from usage import services as usage_services
from usage.models import SpendAlert, UsageLog
from usage.urls import pages as usage_pages

ROUTES = [p for p in projects_pages + apikeys_pages + usage_pages if isinstance(p, URLPattern) and "<" in str(p.pattern)]


@pytest.fixture
def world(org, project, api_key, developer, record_usage):
    rule = key_services.iam_rule_create(api_key=api_key, rule_type="deny_models", rule_value={"models": ["gpt-4o"]})
    provider_key = key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai-1", validate=False)
    log_id = record_usage(project, api_key, request_id="req-1")[0]
    alert = usage_services.alert_create(organization=org, threshold_usd="10")
    _, invitation = project_services.member_invite(organization=org, email="invitee@example.com", role="admin",
                                                   actor=None, accept_url="http://testserver/invitations/{token}/")
    return {
        "organization_id": org.pk, "project_id": project.pk, "user_id": developer.user.pk, "rule_id": rule.pk,
        "log_id": log_id, "alert_id": alert.pk, "request_id": "req-1",
        "key_id": api_key.pk, "provider_key_id": provider_key.pk, "invitation_id": invitation.pk,
        "token": "inv_not-one-the-outsider-was-sent",  # a link's token is its secret: see test_invitations
    }


def _path(route: URLPattern, world: dict) -> str:
    path = "/" + str(route.pattern)
    for name in route.pattern.converters:
        value = world[name]
        if name == "key_id" and "provider-keys" in path:
            value = world["provider_key_id"]
        path = path.replace(f"<str:{name}>", value)
    return path


def _state():
    return [list(model.objects.order_by("pk").values()) for model in (Project, ApiKey, IamRule, ProviderKey, UsageLog, SpendAlert, Membership, Invitation)]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_an_outsider_gets_404_on_every_route_and_changes_nothing(route, world, outsider, as_user):
    browser = as_user(outsider)
    before = _state()
    path = _path(route, world)
    body = {"name": "x", "email": "outsider@example.com", "role": "owner", "description": "x", "confirm_name": "Production API",
            "provider": "groq", "token": "gsk-123456789", "threshold_usd": "1", "period": "day", "mode": "hybrid",
            "cache_duration_seconds": "60", "rule_type": "deny_models", "models": "x", "step": "3"}

    got = browser.get(path)
    posted = browser.post(path, body)
    posted_htmx = browser.post(path, body, htmx=True)

    assert got.status_code in (404, 405), path
    assert (posted.status_code, posted_htmx.status_code) == (404, 404), path
    assert _state() == before


@pytest.mark.parametrize("path", ["/projects/proj_%00x/", "/org/%00/billing/", "/projects/{project}/keys/key_%00/"])
def test_an_id_with_a_nul_byte_is_not_found_rather_than_a_database_error(path, owner, project, as_user):
    response = as_user(owner).get(path.format(project=project.pk))

    assert response.status_code == 404
