"""Bad input to the REST API: a clear 4xx in the error shape, never a 500."""

from projects.models import Project


def test_deeply_nested_json_is_a_400_not_a_500(owner):
    deep = "[" * 100_000 + "]" * 100_000
    response = owner.api.client.post("/api/v1/projects", deep, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_a_20_mb_body_is_a_413_naming_the_limit(owner, settings):
    body = '{"name": "' + "a" * (20 * 1024 * 1024) + '"}'
    response = owner.api.client.post("/api/v1/projects", body, content_type="application/json")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in error["message"]
    assert not Project.objects.exists()


def test_wrong_types_name_the_field(owner, org):
    response = owner.api.post("/api/v1/projects", {"name": ["list"], "organizationId": org.id, "cachingEnabled": {"a": 1}})
    assert response.status_code == 400
    assert {"name", "cachingEnabled"} <= set(response.json()["error"]["fields"])


def test_a_body_that_is_not_json_is_a_400(owner):
    response = owner.api.client.post("/api/v1/projects", b"\xff\xfe", content_type="application/json")
    assert response.status_code == 400


def test_nul_bytes_in_ids_are_not_found_rather_than_a_500(owner, project):
    assert owner.api.get("/api/v1/projects", organizationId="org_\x00").status_code == 404
    assert owner.api.get("/api/v1/projects/proj_%00").status_code == 404
    assert owner.api.get("/api/v1/organizations/org_%00/members").status_code == 404
