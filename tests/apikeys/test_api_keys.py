"""API keys of a project: created with a one-time token, stored hashed, edited, limited, deleted."""

import hashlib
from decimal import Decimal

import pytest

from apikeys import services as key_services
from apikeys.models import ApiKey

FIELDS = {
    "id", "token", "maskedToken", "description", "usageLimit", "usage", "status",
    "disabledReason", "projectId", "createdAt", "updatedAt",
    "periodUsageLimit", "periodUsageDuration", "periodUsage", "periodResetsAt", "expiresAt", "rateLimitRpm", "rateLimitTpm",
}


def _create(person, project, **body):
    return person.api.post("/api/v1/api-keys", {"projectId": project.id, **body})


def _row_values(key: ApiKey) -> list[str]:
    """Every column of the key's row, as text."""
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    return [str(v) for v in row.values()]


def _at_its_limit(key: ApiKey, usage="10", limit="10") -> ApiKey:
    ApiKey.objects.filter(pk=key.pk).update(
        usage=Decimal(usage), usage_limit=Decimal(limit),
        status=ApiKey.Status.INACTIVE, disabled_reason=ApiKey.DisabledReason.USAGE_LIMIT,
    )
    key.refresh_from_db()
    return key


# --- create -------------------------------------------------------------------------------------


def test_it_creates_a_key_with_the_contract_fields_and_a_one_time_llmgw_token(owner, project):
    response = _create(owner, project, description="Production API Key", usageLimit="100")

    assert response.status_code == 201, response.json()
    key = response.json()["apiKey"]
    assert set(key) == FIELDS
    assert key["id"].startswith("key_")
    assert key["token"].startswith("llmgw_")
    assert len(key["token"]) > len("llmgw_") + 20
    assert key["description"] == "Production API Key"
    assert key["usageLimit"] == "100.00"
    assert key["usage"] == "0.00"
    assert key["status"] == "active"
    assert key["disabledReason"] is None
    assert key["projectId"] == project.id


def test_it_never_returns_the_token_when_reading_one_key_or_the_list(owner, project, api_key):
    one = owner.api.get(f"/api/v1/api-keys/{api_key.id}")
    listed = owner.api.get("/api/v1/api-keys", projectId=project.id)
    everything = owner.api.get("/api/v1/api-keys")

    assert one.status_code == 200
    assert set(one.json()["apiKey"]) == FIELDS - {"token"}
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()["apiKeys"]] == [api_key.id]
    assert all("token" not in k for k in listed.json()["apiKeys"])
    assert [k["id"] for k in everything.json()["apiKeys"]] == [api_key.id]
    for response in (one, listed, everything):
        assert api_key.plaintext not in response.content.decode()


def test_it_stores_only_the_sha256_of_the_token(api_key):
    token = api_key.plaintext
    assert token.startswith("llmgw_")

    assert api_key.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in value for value in _row_values(api_key))
    # Not even the random part without the prefix.
    assert not any(token[len("llmgw_"):] in value for value in _row_values(api_key))


def test_the_masked_token_does_not_reveal_the_token(owner, api_key):
    token = api_key.plaintext
    masked = owner.api.get(f"/api/v1/api-keys/{api_key.id}").json()["apiKey"]["maskedToken"]
    secret = token[len("llmgw_"):]

    assert masked != token
    assert token not in masked
    assert secret not in masked
    assert masked.startswith("llmgw_")
    assert masked.endswith(token[-4:])
    # The masked form keeps few enough characters of the random part to be useless as a key.
    revealed = masked.replace("llmgw_", "", 1).replace("…", "")
    assert len(revealed) <= len(secret) // 2


def test_usage_limit_is_a_decimal_string_or_null(owner, project):
    _, unlimited = key_services.api_key_create(project=project)
    _, limited = key_services.api_key_create(project=project, usage_limit="12.5")

    assert owner.api.get(f"/api/v1/api-keys/{unlimited.id}").json()["apiKey"]["usageLimit"] is None
    assert owner.api.get(f"/api/v1/api-keys/{limited.id}").json()["apiKey"]["usageLimit"] == "12.50"
    listed = {k["id"]: k["usageLimit"] for k in owner.api.get("/api/v1/api-keys").json()["apiKeys"]}
    assert listed == {unlimited.id: None, limited.id: "12.50"}


def test_it_creates_a_key_without_a_limit_when_usage_limit_is_null_or_left_out(owner, project):
    left_out = _create(owner, project)
    explicit_null = _create(owner, project, usageLimit=None)

    assert left_out.status_code == 201, left_out.content
    assert explicit_null.status_code == 201, explicit_null.content
    assert left_out.json()["apiKey"]["usageLimit"] is None
    assert explicit_null.json()["apiKey"]["usageLimit"] is None
    assert left_out.json()["apiKey"]["token"] != explicit_null.json()["apiKey"]["token"]


@pytest.mark.parametrize("bad", ["-1", -5, "abc", "NaN", "Infinity"])
def test_it_rejects_a_usage_limit_that_is_not_zero_or_more_usd(owner, project, bad):
    response = _create(owner, project, usageLimit=bad)

    assert response.status_code == 400, response.json()
    assert "usageLimit" in response.json()["error"]["fields"]
    assert ApiKey.objects.count() == 0


def test_it_rejects_a_project_of_another_organization_as_not_found(owner, outsider, project):
    response = _create(outsider, project)

    assert response.status_code == 404
    assert ApiKey.objects.count() == 0


# --- patch --------------------------------------------------------------------------------------


def test_it_patches_description_usage_limit_and_status(owner, api_key):
    url = f"/api/v1/api-keys/{api_key.id}"

    response = owner.api.patch(url, {"description": "renamed", "usageLimit": "25.5"})
    assert response.status_code == 200, response.json()
    assert response.json()["apiKey"]["description"] == "renamed"
    assert response.json()["apiKey"]["usageLimit"] == "25.50"
    assert "token" not in response.json()["apiKey"]

    response = owner.api.patch(url, {"usageLimit": None})
    assert response.status_code == 200
    assert response.json()["apiKey"]["usageLimit"] is None

    api_key.refresh_from_db()
    assert api_key.description == "renamed"
    assert api_key.usage_limit is None


def test_setting_a_key_inactive_records_the_manual_reason_and_active_clears_it(owner, api_key):
    url = f"/api/v1/api-keys/{api_key.id}"

    off = owner.api.patch(url, {"status": "inactive"}).json()["apiKey"]
    assert (off["status"], off["disabledReason"]) == ("inactive", "manual")
    assert owner.api.get(url).json()["apiKey"]["disabledReason"] == "manual"

    on = owner.api.patch(url, {"status": "active"}).json()["apiKey"]
    assert (on["status"], on["disabledReason"]) == ("active", None)


@pytest.mark.parametrize(
    "body",
    [
        {"usage": "0"},
        {"projectId": "proj_other"},
        {"token": "llmgw_mine"},
        {"id": "key_other"},
        {"description": "sneaky", "usage": "0"},
        {"status": "paused"},
    ],
)
def test_it_refuses_to_patch_read_only_or_unknown_fields_and_changes_nothing(owner, api_key, body):
    before = ApiKey.objects.filter(pk=api_key.pk).values().get()

    response = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", body)

    assert response.status_code == 400, response.json()
    bad = next(k for k in body if k != "description")
    assert bad in response.json()["error"]["fields"]
    assert ApiKey.objects.filter(pk=api_key.pk).values().get() == before


def test_a_negative_usage_limit_in_a_patch_is_refused(owner, api_key):
    response = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", {"usageLimit": "-1"})

    assert response.status_code == 400
    assert "usageLimit" in response.json()["error"]["fields"]


def test_a_key_disabled_at_its_limit_comes_back_when_the_limit_is_raised_above_its_usage(owner, api_key):
    _at_its_limit(api_key, usage="10", limit="10")
    url = f"/api/v1/api-keys/{api_key.id}"

    still_over = owner.api.patch(url, {"usageLimit": "10"}).json()["apiKey"]
    assert (still_over["status"], still_over["disabledReason"]) == ("inactive", "usage_limit")

    raised = owner.api.patch(url, {"usageLimit": "20"})
    assert raised.status_code == 200, raised.json()
    key = raised.json()["apiKey"]
    assert (key["status"], key["disabledReason"]) == ("active", None)
    assert key["usage"] == "10.00"
    assert key["usageLimit"] == "20.00"
    api_key.refresh_from_db()
    assert api_key.status == ApiKey.Status.ACTIVE


def test_removing_the_limit_of_a_key_disabled_at_its_limit_enables_it(owner, api_key):
    _at_its_limit(api_key)

    key = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", {"usageLimit": None}).json()["apiKey"]

    assert (key["status"], key["disabledReason"]) == ("active", None)


def test_enabling_a_key_over_its_limit_is_a_conflict(owner, api_key):
    _at_its_limit(api_key, usage="12", limit="10")

    response = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", {"status": "active"})

    assert response.status_code == 409, response.json()
    assert "usageLimit" in response.json()["error"]["message"]
    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("inactive", "usage_limit")


def test_lowering_the_limit_to_the_usage_disables_the_key_for_its_limit(owner, api_key):
    ApiKey.objects.filter(pk=api_key.pk).update(usage=Decimal("5"))

    key = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", {"usageLimit": "5"}).json()["apiKey"]

    assert (key["status"], key["disabledReason"]) == ("inactive", "usage_limit")


def test_a_manually_disabled_key_stays_disabled_when_its_limit_is_raised(owner, api_key):
    owner.api.patch(f"/api/v1/api-keys/{api_key.id}", {"status": "inactive"})

    key = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", {"usageLimit": "1000"}).json()["apiKey"]

    assert (key["status"], key["disabledReason"]) == ("inactive", "manual")


# --- who may -------------------------------------------------------------------------------------


def test_developers_can_create_patch_and_delete_keys_of_their_organizations_projects(developer, project):
    created = _create(developer, project, description="dev key")
    assert created.status_code == 201, created.json()
    key_id = created.json()["apiKey"]["id"]

    patched = developer.api.patch(f"/api/v1/api-keys/{key_id}", {"description": "dev key 2", "status": "inactive"})
    assert patched.status_code == 200, patched.json()
    assert patched.json()["apiKey"]["description"] == "dev key 2"

    assert developer.api.get("/api/v1/api-keys", projectId=project.id).json()["apiKeys"][0]["id"] == key_id
    assert developer.api.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    assert not ApiKey.objects.filter(pk=key_id).exists()


def test_outsiders_cannot_see_patch_or_delete_a_key(outsider, api_key):
    url = f"/api/v1/api-keys/{api_key.id}"

    assert outsider.api.get(url).status_code == 404
    assert outsider.api.patch(url, {"description": "mine"}).status_code == 404
    assert outsider.api.delete(url).status_code == 404
    assert outsider.api.get("/api/v1/api-keys").json()["apiKeys"] == []
    api_key.refresh_from_db()
    assert api_key.description == "Production API Key"


def test_anonymous_callers_cannot_list_or_create_keys(anonymous, project):
    assert anonymous.get("/api/v1/api-keys").status_code == 401
    assert anonymous.post("/api/v1/api-keys", {"projectId": project.id}).status_code == 401
    assert ApiKey.objects.count() == 0


# --- delete --------------------------------------------------------------------------------------


def test_a_deleted_key_is_gone(owner, api_key):
    url = f"/api/v1/api-keys/{api_key.id}"

    response = owner.api.delete(url)

    assert response.status_code == 204
    assert owner.api.get(url).status_code == 404
    assert owner.api.delete(url).status_code == 404
    assert not ApiKey.objects.filter(pk=api_key.pk).exists()
