"""Every REST route × every method × (owner, admin, developer, other organization,
anonymous) against the role table. The routes come from the URL conf, so a new route
fails this test until it says which role it needs."""

import pytest

from apikeys import services as key_services
from projects import services as project_services
from projects.models import Membership
from tests.conftest import make_person
from tests.test_access_table import ALL_ROUTES, CASE_IDS, CASES, OWN_ONLY, _fill, request_for
from usage import services as usage_services
from usage.models import LogContent, UsageLog

D, A, OWN = "developer", "admin", "owner"
# The least role each route and method needs (docs/api.md, "Roles": developers read and manage
# API keys; admins also manage projects, provider keys and members; owners delete).
NEEDS = {
    ("get", "/api/v1/organizations/<str:organization_id>"): D,
    ("patch", "/api/v1/organizations/<str:organization_id>"): A,
    ("delete", "/api/v1/organizations/<str:organization_id>"): OWN,
    ("get", "/api/v1/organizations/<str:organization_id>/members"): D,
    ("post", "/api/v1/organizations/<str:organization_id>/members"): A,
    ("patch", "/api/v1/organizations/<str:organization_id>/members/<str:user_id>"): A,
    ("delete", "/api/v1/organizations/<str:organization_id>/members/<str:user_id>"): A,
    ("get", "/api/v1/organizations/<str:organization_id>/invitations"): A,
    ("delete", "/api/v1/organizations/<str:organization_id>/invitations/<str:invitation_id>"): A,
    ("get", "/api/v1/organizations/<str:organization_id>/transactions"): D,
    ("get", "/api/v1/organizations/<str:organization_id>/alerts"): D,
    ("post", "/api/v1/organizations/<str:organization_id>/alerts"): A,
    ("delete", "/api/v1/organizations/<str:organization_id>/alerts/<str:alert_id>"): A,
    ("get", "/api/v1/projects"): D,
    ("post", "/api/v1/projects"): A,
    ("get", "/api/v1/projects/<str:project_id>"): D,
    ("patch", "/api/v1/projects/<str:project_id>"): A,
    ("delete", "/api/v1/projects/<str:project_id>"): OWN,
    ("get", "/api/v1/api-keys"): D,
    ("post", "/api/v1/api-keys"): D,
    ("get", "/api/v1/api-keys/<str:key_id>"): D,
    ("patch", "/api/v1/api-keys/<str:key_id>"): D,
    ("delete", "/api/v1/api-keys/<str:key_id>"): D,
    ("post", "/api/v1/api-keys/<str:key_id>/check"): D,
    ("post", "/api/v1/api-keys/<str:key_id>/roll"): D,
    ("get", "/api/v1/api-keys/<str:key_id>/iam-rules"): D,
    ("post", "/api/v1/api-keys/<str:key_id>/iam-rules"): D,
    ("patch", "/api/v1/api-keys/<str:key_id>/iam-rules/<str:rule_id>"): D,
    ("delete", "/api/v1/api-keys/<str:key_id>/iam-rules/<str:rule_id>"): D,
    ("get", "/api/v1/provider-keys"): D,
    ("post", "/api/v1/provider-keys"): A,
    ("get", "/api/v1/provider-keys/<str:key_id>"): D,
    ("patch", "/api/v1/provider-keys/<str:key_id>"): A,
    ("delete", "/api/v1/provider-keys/<str:key_id>"): A,
    ("get", "/api/v1/logs"): D,
    ("get", "/api/v1/logs/<str:log_id>"): D,  # with the request's content: members only, developers included
    ("get", "/api/v1/usage"): D,
}
# Bodies a permitted caller's request succeeds with (validation is not what this tests).
BODIES = {
    ("patch", "/api/v1/organizations/<str:organization_id>"): {"name": "Renamed"},
    ("post", "/api/v1/organizations/<str:organization_id>/members"): {"email": "newcomer@example.com", "role": "developer"},
    ("patch", "/api/v1/organizations/<str:organization_id>/members/<str:user_id>"): {"role": "admin"},
    ("post", "/api/v1/organizations/<str:organization_id>/alerts"): {"thresholdUsd": "5"},
    ("patch", "/api/v1/projects/<str:project_id>"): {"name": "Renamed"},
    ("patch", "/api/v1/api-keys/<str:key_id>"): {"description": "renamed"},
    ("post", "/api/v1/api-keys/<str:key_id>/check"): {"model": "gpt-4o"},
    ("post", "/api/v1/api-keys/<str:key_id>/iam-rules"): {"ruleType": "deny_models", "ruleValue": {"models": ["gpt-4o"]}},
    ("patch", "/api/v1/api-keys/<str:key_id>/iam-rules/<str:rule_id>"): {"status": "inactive"},
    ("patch", "/api/v1/provider-keys/<str:key_id>"): {"name": "renamed", "priority": 1, "validate": False},
}
CALLERS = ["owner", "admin", "developer", "outsider", "anonymous"]
RANK = {D: 1, A: 2, OWN: 3}
ROUTES = [r for r in ALL_ROUTES if r not in OWN_ONLY]


def test_every_route_says_which_role_it_needs():
    assert sorted(NEEDS) == sorted(ROUTES), "add the new route to NEEDS"


@pytest.fixture
def role_world(org, project, api_key, owner, admin, developer, outsider):
    teammate = make_person("teammate@example.com", org, Membership.Role.DEVELOPER)
    make_person("newcomer@example.com")
    rule = key_services.iam_rule_create(api_key=api_key, rule_type="allow_models", rule_value={"models": ["gpt-4o"]})
    provider_key = key_services.provider_key_create(organization=org, provider="anthropic", token="sk-role-table", validate=False)
    alert = usage_services.alert_create(organization=org, threshold_usd="10")
    _, invitation = project_services.member_invite(organization=org, email="invitee@example.com", role="developer",
                                                   actor=None, accept_url="http://testserver/invitations/{token}/")
    log = UsageLog.objects.create(request_id="req-1", project=project, api_key_id=api_key.id, created_at=project.created_at)
    LogContent.objects.create(log=log, project=project, created_at=log.created_at, request='{"messages": []}')
    ids = {
        "organization_id": org.id, "project_id": project.id, "user_id": teammate.user.id, "api_key_id": api_key.id,
        "rule_id": rule.id, "provider_key_id": provider_key.id, "alert_id": alert.id,
        "invitation_id": invitation.id, "log_id": log.id,
    }
    people = {"owner": owner.api, "admin": admin.api, "developer": developer.api, "outsider": outsider.api}
    return ids, people


def _call(api, method, path, ids, way=None):
    if "<" in path:
        return api.call(method, _fill(path, ids), BODIES.get((method, path), {}))
    request = request_for(method, path, way, ids)
    url = path + ("?" + "&".join(f"{k}={v}" for k, v in request["query"].items()) if "query" in request else "")
    return api.call(method, url, request.get("body"))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method,path,way", CASES, ids=CASE_IDS)
def test_each_caller_gets_what_the_role_table_says(method, path, way, caller, role_world, anonymous):
    ids, people = role_world
    api = anonymous if caller == "anonymous" else people[caller]
    status = _call(api, method, path, ids, way).status_code
    if caller == "anonymous":
        assert status == 401
    elif caller == "outsider":
        assert status == 404
    elif RANK[caller] < RANK[NEEDS[(method, path)]]:
        assert status == 403
    else:
        assert 200 <= status < 300, (caller, method, path, status)
