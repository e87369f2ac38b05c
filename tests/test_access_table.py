"""Outsiders get 404 for every id of another organization, on every route and method.

The routes come from the URL conf, so a new route is covered without editing this file:
a route whose path or body takes an id it does not know how to fill makes the test fail.
"""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from apikeys import services as key_services
from projects import services as project_services
from usage import services as usage_services
from usage.models import LogContent, UsageLog

METHODS = ["get", "post", "put", "patch", "delete"]

# Routes without an id in the path that take one in the query or body, and what to send.
BY_QUERY_OR_BODY = {
    ("get", "/api/v1/projects"): lambda w: {"query": {"organizationId": w["organization_id"]}},
    ("post", "/api/v1/projects"): lambda w: {"body": {"organizationId": w["organization_id"], "name": "x"}},
    ("get", "/api/v1/api-keys"): lambda w: {"query": {"projectId": w["project_id"]}},
    ("post", "/api/v1/api-keys"): lambda w: {"body": {"projectId": w["project_id"]}},
    ("get", "/api/v1/provider-keys"): lambda w: {"query": {"organizationId": w["organization_id"]}},
    ("post", "/api/v1/provider-keys"): lambda w: {
        "body": {"organizationId": w["organization_id"], "provider": "openai", "token": "sk-x", "validate": False}
    },
    ("get", "/api/v1/logs"): lambda w: {"query": {"projectId": w["project_id"]}},
    ("get", "/api/v1/usage"): lambda w: {"query": {"projectId": w["project_id"]}},
}
# Further ways of asking one of those routes, each checked like the first: (method, path, way).
MORE_WAYS = {
    ("get", "/api/v1/logs", "organizationId"): lambda w: {"query": {"organizationId": w["organization_id"]}},
    ("get", "/api/v1/logs", "csv"): lambda w: {"query": {"projectId": w["project_id"], "format": "csv"}},
    ("get", "/api/v1/logs", "organizationId csv"): lambda w: {"query": {"organizationId": w["organization_id"], "format": "csv"}},
    ("get", "/api/v1/usage", "organizationId"): lambda w: {"query": {"organizationId": w["organization_id"], "groupBy": "project"}},
    ("post", "/api/v1/provider-keys", "second key of a provider"): lambda w: {"body": {
        "organizationId": w["organization_id"], "provider": "anthropic", "name": "backup", "priority": 1,
        "token": "sk-second", "validate": False,
    }},
}
# Routes that concern only the caller and take no id of anyone's.
OWN_ONLY = {
    ("post", "/api/v1/auth/signup"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/organizations"),
    ("post", "/api/v1/organizations"),
    ("post", "/api/v1/invitations/accept"),  # its token is the secret; tests/projects/test_invitations.py
}


def _routes(patterns=None, prefix=""):
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _routes(p.url_patterns, route)
        elif isinstance(p, URLPattern) and route.startswith("api/v1/"):
            view = getattr(p.callback, "view_class", None)
            for method in METHODS:
                if view is not None and hasattr(view, method):
                    yield method, "/" + route


ALL_ROUTES = sorted(set(_routes()))
ROUTES = [r for r in ALL_ROUTES if r not in OWN_ONLY]
# Every route once, then the further ways of asking some: (method, path, way or None).
CASES = [(m, p, None) for m, p in ROUTES] + sorted(MORE_WAYS)
CASE_IDS = [f"{m.upper()} {p}" + (f" ({way})" if way else "") for m, p, way in CASES]


def request_for(method: str, path: str, way: str | None, world: dict) -> dict:
    """{"query": …} and/or {"body": …} of a route without an id in its path."""
    return MORE_WAYS[(method, path, way)](world) if way else BY_QUERY_OR_BODY[(method, path)](world)


@pytest.fixture
def world(org, project, api_key, owner):
    rule = key_services.iam_rule_create(api_key=api_key, rule_type="allow_models", rule_value={"models": ["gpt-4o"]})
    provider_key = key_services.provider_key_create(organization=org, provider="openai", token="sk-test-owner-key", validate=False)
    alert = usage_services.alert_create(organization=org, threshold_usd="10")
    _, invitation = project_services.member_invite(organization=org, email="invitee@example.com", role="developer",
                                                   actor=None, accept_url="http://testserver/invitations/{token}/")
    log = UsageLog.objects.create(request_id="req-1", project=project, api_key_id=api_key.id, created_at=project.created_at)
    LogContent.objects.create(log=log, project=project, created_at=log.created_at, request='{"messages": []}')
    return {
        "organization_id": org.id,
        "project_id": project.id,
        "user_id": owner.user.id,
        "api_key_id": api_key.id,
        "rule_id": rule.id,
        "provider_key_id": provider_key.id,
        "alert_id": alert.id,
        "invitation_id": invitation.id,
        "log_id": log.id,
    }


def _fill(path: str, world: dict) -> str:
    def value(match):
        name = match.group(1)
        if name == "key_id":
            name = "provider_key_id" if "/provider-keys/" in path else "api_key_id"
        assert name in world, f"{path}: no id for <{match.group(1)}>; add one to the world fixture"
        return world[name]

    return re.sub(r"<(?:\w+:)?(\w+)>", value, path)


def test_the_table_sees_every_route():
    assert OWN_ONLY <= set(ALL_ROUTES), "a route listed as own-only is gone: update OWN_ONLY"
    paths = {path for _, path in ROUTES}
    assert "/api/v1/projects/<str:project_id>" in paths
    assert "/api/v1/api-keys/<str:key_id>/iam-rules/<str:rule_id>" in paths
    assert len(ROUTES) >= 30
    assert {(m, p) for m, p, _ in MORE_WAYS} <= set(ROUTES), "a route of MORE_WAYS is gone"


@pytest.mark.parametrize("method,path,way", CASES, ids=CASE_IDS)
def test_outsiders_get_404_for_every_id_of_another_organization(method, path, way, world, outsider):
    if "<" not in path:
        assert (method, path) in BY_QUERY_OR_BODY, f"{method.upper()} {path}: say which id it takes"
        request = request_for(method, path, way, world)
        url = path
        if "query" in request:
            url += "?" + "&".join(f"{k}={v}" for k, v in request["query"].items())
        response = outsider.api.call(method, url, request.get("body"))
    else:
        response = outsider.api.call(method, _fill(path, world), {})
    assert response.status_code == 404, (method, path, response.status_code, response.content[:300])
    assert response.json()["error"]["code"] == "not_found"


def test_outsiders_changed_nothing(world, outsider, org, project, api_key):
    for method, path in ROUTES:
        if "<" in path and method in ("patch", "delete", "post"):
            outsider.api.call(method, _fill(path, world), {"name": "taken over", "role": "owner"})
    org.refresh_from_db()
    project.refresh_from_db()
    api_key.refresh_from_db()
    assert org.name != "taken over" and project.name == "Production API"
    assert UsageLog.objects.filter(project=project).count() == 1
