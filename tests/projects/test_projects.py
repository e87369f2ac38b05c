"""Projects as the product guide shows them, and the rules that must hold."""

import re

import pytest

from apikeys.models import ApiKey
from core.hashing import sha256_hex
from projects import services
from projects.models import Project
from usage.models import UsageLog

GUIDE_CREATE = {
    "name": "Production API",
    "mode": "hybrid",
    "cachingEnabled": True,
    "cacheDurationSeconds": 300,
}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def create(person, org, **overrides):
    return person.api.post("/api/v1/projects", {**GUIDE_CREATE, "organizationId": org.id, **overrides})


def test_it_creates_the_guides_project_with_the_guides_response_shape(owner, org):
    response = create(owner, org)
    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["project"]
    project = body["project"]
    assert list(project) == [
        "id", "name", "organizationId", "mode", "cachingEnabled",
        "cacheDurationSeconds", "status", "createdAt", "updatedAt",
        "logContent", "contentRetentionDays",  # issue 17: request content, after the guide's fields
    ]
    assert project["id"].startswith("proj_")
    assert project["organizationId"] == org.id
    assert (project["name"], project["mode"], project["cachingEnabled"], project["cacheDurationSeconds"]) == (
        "Production API", "hybrid", True, 300,
    )
    assert project["status"] == "active"
    assert ISO_UTC.match(project["createdAt"]) and ISO_UTC.match(project["updatedAt"])


def test_it_fills_the_contracts_defaults(owner, org):
    response = owner.api.post("/api/v1/projects", {"name": "Defaults", "organizationId": org.id})
    project = response.json()["project"]
    assert (project["mode"], project["cachingEnabled"], project["cacheDurationSeconds"]) == ("hybrid", False, 60)


def test_it_gets_lists_and_patches_like_the_guide(owner, org):
    project_id = create(owner, org).json()["project"]["id"]
    assert owner.api.get(f"/api/v1/projects/{project_id}").json()["project"]["name"] == "Production API"
    listed = owner.api.get("/api/v1/projects", organizationId=org.id).json()["projects"]
    assert [p["id"] for p in listed] == [project_id]

    response = owner.api.patch(
        f"/api/v1/projects/{project_id}", {"name": "Production API v2", "mode": "api-keys", "cachingEnabled": False}
    )
    assert response.status_code == 200
    project = response.json()["project"]
    assert (project["name"], project["mode"], project["cachingEnabled"]) == ("Production API v2", "api-keys", False)
    assert Project.objects.get(pk=project_id).mode == "api-keys"


def test_patch_turns_caching_on_with_a_duration(owner, project):
    response = owner.api.patch(f"/api/v1/projects/{project.id}", {"cachingEnabled": True, "cacheDurationSeconds": 300})
    assert response.json()["project"]["cachingEnabled"] is True
    assert response.json()["project"]["cacheDurationSeconds"] == 300


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"cacheDurationSeconds": 9}, "cacheDurationSeconds"),
        ({"cacheDurationSeconds": 31_536_001}, "cacheDurationSeconds"),
        ({"cacheDurationSeconds": "soon"}, "cacheDurationSeconds"),
        ({"mode": "free-for-all"}, "mode"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"cachingEnabled": "perhaps"}, "cachingEnabled"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(owner, org, overrides, field):
    response = create(owner, org, **overrides)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"] and field in error["message"]
    assert not Project.objects.exists()


def test_a_missing_name_is_a_400_naming_it(owner, org):
    response = owner.api.post("/api/v1/projects", {"organizationId": org.id})
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


def test_cache_duration_bounds_are_inclusive(owner, org):
    assert create(owner, org, name="a", cacheDurationSeconds=10).status_code == 201
    assert create(owner, org, name="b", cacheDurationSeconds=31_536_000).status_code == 201


def test_patch_rejects_bad_values_and_keeps_the_stored_ones(owner, project):
    response = owner.api.patch(f"/api/v1/projects/{project.id}", {"name": "new", "cacheDurationSeconds": 5})
    assert response.status_code == 400
    project.refresh_from_db()
    assert (project.name, project.cache_duration_seconds) == ("Production API", 60)


@pytest.mark.parametrize("field", ["id", "organizationId", "createdAt", "usage", "token"])
def test_patch_cannot_change_read_only_fields(owner, project, outsider, field):
    response = owner.api.patch(f"/api/v1/projects/{project.id}", {field: outsider.organization.id})
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    project.refresh_from_db()
    assert project.organization_id == owner.organization.id


def test_the_project_limit_is_a_409_naming_the_limit_and_support(owner, org, settings):
    settings.PROJECT_LIMIT = 3
    for i in range(3):
        assert create(owner, org, name=f"p{i}").status_code == 201
    response = create(owner, org, name="one too many")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "project_limit_reached"
    assert "3" in error["message"] and "contact support" in error["message"].lower()
    assert org.projects.count() == 3


def test_the_default_project_limit_is_ten(owner, org):
    for i in range(10):
        assert create(owner, org, name=f"p{i}").status_code == 201
    assert create(owner, org, name="eleventh").status_code == 409


def test_an_organization_raised_in_the_admin_can_create_more(owner, org, settings):
    settings.PROJECT_LIMIT = 1
    org.project_limit = 2
    org.save()
    assert create(owner, org, name="a").status_code == 201
    assert create(owner, org, name="b").status_code == 201
    assert create(owner, org, name="c").status_code == 409
    assert owner.api.get(f"/api/v1/organizations/{org.id}").json()["organization"]["projectLimit"] == 2


def test_archived_projects_do_not_count_but_unarchiving_respects_the_limit(owner, org, settings):
    settings.PROJECT_LIMIT = 1
    first = create(owner, org, name="a").json()["project"]["id"]
    assert owner.api.patch(f"/api/v1/projects/{first}", {"status": "archived"}).status_code == 200
    assert create(owner, org, name="b").status_code == 201
    response = owner.api.patch(f"/api/v1/projects/{first}", {"status": "active"})
    assert response.status_code == 409
    assert Project.objects.get(pk=first).status == "archived"


def test_developers_cannot_create_update_or_delete_projects(developer, org, project):
    assert create(developer, org).status_code == 403
    assert developer.api.patch(f"/api/v1/projects/{project.id}", {"name": "x"}).status_code == 403
    assert developer.api.delete(f"/api/v1/projects/{project.id}").status_code == 403
    assert developer.api.get(f"/api/v1/projects/{project.id}").status_code == 200
    project.refresh_from_db()
    assert project.name == "Production API"


def test_admins_manage_projects_but_cannot_delete_them(admin, org, project):
    assert create(admin, org, name="by admin").status_code == 201
    assert admin.api.patch(f"/api/v1/projects/{project.id}", {"name": "renamed"}).status_code == 200
    response = admin.api.delete(f"/api/v1/projects/{project.id}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Project.objects.filter(pk=project.id).exists()


def test_owners_delete_projects(owner, project):
    assert owner.api.delete(f"/api/v1/projects/{project.id}").status_code == 204
    assert owner.api.get(f"/api/v1/projects/{project.id}").status_code == 404


def test_deleting_a_project_invalidates_its_keys_and_removes_its_logs(owner, project, api_key):
    UsageLog.objects.create(request_id="r1", project=project, api_key_id=api_key.id, created_at=project.created_at)
    owner.api.delete(f"/api/v1/projects/{project.id}")
    assert not ApiKey.objects.filter(token_hash=sha256_hex(api_key.plaintext)).exists()
    assert not UsageLog.objects.filter(project_id=project.id).exists()
    assert owner.api.get(f"/api/v1/api-keys/{api_key.id}").status_code == 404


def test_the_list_without_an_organization_shows_only_the_callers_projects(owner, outsider, project):
    services.project_create(organization=outsider.organization, name="theirs")
    assert [p["id"] for p in owner.api.get("/api/v1/projects").json()["projects"]] == [project.id]


def test_anonymous_callers_get_401_in_the_error_shape(anonymous, project):
    response = anonymous.get(f"/api/v1/projects/{project.id}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")
