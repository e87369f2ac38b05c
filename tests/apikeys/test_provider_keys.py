"""Provider keys of an organization: encrypted at rest, never shown, checked against the
provider, kept off private networks, and re-encrypted when ENCRYPTION_KEYS rotate."""

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.utils import quote
from django.core.exceptions import ImproperlyConfigured

from apikeys import crypto
from apikeys import services as key_services
from apikeys.models import ProviderKey
from gateway.snapshot import snapshot_of

FIELDS = {"id", "organizationId", "provider", "name", "baseUrl", "prices", "maskedToken", "priority", "status",
          "invalidReason", "createdAt", "updatedAt"}
TOKEN = "sk-proj-Q7hV2mX9pL4sK8dR1tY6wZ3nB5cF0gJ"


def _create(person, org, **body):
    payload = {"organizationId": org.id, "provider": "openai", "token": TOKEN, "validate": False, **body}
    return person.api.post("/api/v1/provider-keys", payload)


def _pieces(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def _leaks(text: str, secret: str) -> bool:
    """Whether the text holds the secret or any 8 characters of it in a row."""
    return any(piece in text for piece in _pieces(secret))


# --- create and read -----------------------------------------------------------------------------


def test_it_creates_a_provider_key_with_the_contract_fields_and_no_token(owner, org):
    response = _create(owner, org, name="main")

    assert response.status_code == 201, response.json()
    key = response.json()["providerKey"]
    assert set(key) == FIELDS
    assert key["id"].startswith("pk_")
    assert key["organizationId"] == org.id
    assert key["provider"] == "openai"
    assert key["name"] == "main"
    assert key["baseUrl"] is None
    assert key["prices"] == {}
    assert (key["priority"], key["status"], key["invalidReason"]) == (0, "active", None)
    assert not _leaks(response.content.decode(), TOKEN)


def test_the_token_appears_in_no_response_get_list_or_patch(owner, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]

    responses = [
        owner.api.get(f"/api/v1/provider-keys/{key_id}"),
        owner.api.get("/api/v1/provider-keys", organizationId=org.id),
        owner.api.get("/api/v1/provider-keys"),
        owner.api.patch(f"/api/v1/provider-keys/{key_id}", {"name": "renamed", "status": "inactive"}),
    ]

    for response in responses:
        assert response.status_code == 200, response.json()
        assert "token" not in json.dumps(response.json()).replace("maskedToken", "")
        assert not _leaks(response.content.decode(), TOKEN)
    assert [k["id"] for k in responses[1].json()["providerKeys"]] == [key_id]
    assert responses[3].json()["providerKey"]["name"] == "renamed"
    assert responses[3].json()["providerKey"]["status"] == "inactive"


def test_a_new_token_given_by_patch_is_not_returned_either(owner, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]
    new_token = "sk-proj-NEWTOKEN1234567890abcdefghij"

    response = owner.api.patch(f"/api/v1/provider-keys/{key_id}", {"token": new_token, "validate": False})

    assert response.status_code == 200, response.json()
    assert not _leaks(response.content.decode(), new_token)
    assert ProviderKey.objects.get(pk=key_id).plaintext_token() == new_token


def test_the_token_is_stored_encrypted_and_decrypts_back(owner, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]
    key = ProviderKey.objects.get(pk=key_id)

    assert key.encrypted_token != TOKEN
    assert not _leaks(key.encrypted_token, TOKEN)
    row = ProviderKey.objects.filter(pk=key_id).values().get()
    assert not any(_leaks(str(value), TOKEN) for value in row.values())
    assert crypto.decrypt(key.encrypted_token) == TOKEN
    assert key.plaintext_token() == TOKEN


def test_the_masked_token_reveals_at_most_the_last_four_characters(owner, org):
    masked = _create(owner, org).json()["providerKey"]["maskedToken"]

    assert masked.endswith(TOKEN[-4:])
    shown = masked.replace("…", "").replace("*", "").replace(".", "")
    assert len(shown) <= 4, f"{masked!r} shows {shown!r} of the token"
    assert TOKEN.endswith(shown)


# --- validation of the input ---------------------------------------------------------------------


def test_an_unknown_provider_is_refused_naming_provider(owner, org):
    response = _create(owner, org, provider="openia")

    assert response.status_code == 400
    assert "provider" in response.json()["error"]["fields"]
    assert ProviderKey.objects.count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"baseUrl": "http://127.0.0.1:9/v1"}, "name"),
        ({"name": "local"}, "baseUrl"),
        ({"name": "Local-LLM", "baseUrl": "http://127.0.0.1:9/v1"}, "name"),
        ({"name": "local llm", "baseUrl": "http://127.0.0.1:9/v1"}, "name"),
        ({"name": "openai", "baseUrl": "http://127.0.0.1:9/v1"}, "name"),
    ],
    ids=["no_name", "no_base_url", "uppercase_name", "name_with_space", "builtin_name"],
)
def test_a_custom_provider_needs_a_lowercase_name_and_a_base_url(owner, org, settings, body, field):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = _create(owner, org, provider="custom", **body)

    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert ProviderKey.objects.count() == 0


def test_a_custom_provider_with_a_name_and_base_url_is_saved(owner, org, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = _create(owner, org, provider="custom", name="local-llm", baseUrl="http://127.0.0.1:9/v1/")

    assert response.status_code == 201, response.json()
    key = response.json()["providerKey"]
    assert (key["provider"], key["name"], key["baseUrl"]) == ("custom", "local-llm", "http://127.0.0.1:9/v1")


def test_a_second_openai_key_in_the_same_organization_is_a_conflict(owner, org):
    assert _create(owner, org).status_code == 201

    response = _create(owner, org, token="sk-proj-another-key-0123456789")

    assert response.status_code == 409
    assert ProviderKey.objects.filter(organization=org).count() == 1


def test_two_custom_providers_need_different_names(owner, org, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    body = {"provider": "custom", "baseUrl": "http://127.0.0.1:9/v1"}

    assert _create(owner, org, name="one", **body).status_code == 201
    assert _create(owner, org, name="two", **body).status_code == 201
    assert _create(owner, org, name="one", **body).status_code == 409


def test_another_organization_may_have_its_own_openai_key(owner, org, outsider):
    assert _create(owner, org).status_code == 201
    assert _create(outsider, outsider.organization).status_code == 201


# --- several keys of one provider: names, priority, invalid -------------------------------------


def test_several_keys_of_one_provider_are_told_apart_by_name(owner, org):
    assert _create(owner, org, name="main").status_code == 201
    backup = _create(owner, org, name="backup", priority=1, token="sk-proj-backup-key-0123456789")
    assert backup.status_code == 201, backup.json()

    same_name = _create(owner, org, name="backup", token="sk-proj-third-key-0123456789")
    assert same_name.status_code == 409
    assert same_name.json()["error"]["code"] == "provider_key_exists"
    assert list(same_name.json()["error"]["fields"]) == ["name"]
    assert "named 'backup'" in same_name.json()["error"]["message"]
    assert ProviderKey.objects.filter(organization=org, provider="openai").count() == 2


def test_a_second_unnamed_key_is_asked_for_a_name(owner, org):
    assert _create(owner, org).status_code == 201

    response = _create(owner, org, token="sk-proj-another-key-0123456789")

    assert response.status_code == 409
    assert "name this one to tell them apart" in response.json()["error"]["message"]


def test_renaming_a_key_to_a_name_its_provider_already_has_is_a_conflict(owner, org):
    _create(owner, org, name="main")
    other = _create(owner, org, name="backup", token="sk-proj-backup-key-0123456789").json()["providerKey"]

    response = owner.api.patch(f"/api/v1/provider-keys/{other['id']}", {"name": "main"})

    assert response.status_code == 409 and list(response.json()["error"]["fields"]) == ["name"]
    assert _create(owner, org, provider="anthropic", name="main").status_code == 201  # another provider may


def test_priority_is_set_on_create_and_patch_and_orders_the_list(owner, org):
    late = _create(owner, org, name="late", priority=5).json()["providerKey"]
    early = _create(owner, org, name="early", priority=-1, token="sk-proj-early-key-0123456789").json()["providerKey"]
    assert (late["priority"], early["priority"]) == (5, -1)
    listed = owner.api.get("/api/v1/provider-keys", organizationId=org.id).json()["providerKeys"]
    assert [k["name"] for k in listed] == ["early", "late"]

    patched = owner.api.patch(f"/api/v1/provider-keys/{late['id']}", {"priority": -2})

    assert patched.status_code == 200 and patched.json()["providerKey"]["priority"] == -2
    listed = owner.api.get("/api/v1/provider-keys", organizationId=org.id).json()["providerKeys"]
    assert [k["name"] for k in listed] == ["late", "early"]


@pytest.mark.parametrize("priority", ["high", 1.5, True, None, [1], 10**7, -(10**7)])
def test_a_priority_that_is_not_an_integer_in_range_is_a_400_naming_it(owner, org, priority):
    created = _create(owner, org, name="x", priority=priority)
    key_id = _create(owner, org, name="y").json()["providerKey"]["id"]
    patched = owner.api.patch(f"/api/v1/provider-keys/{key_id}", {"priority": priority})

    for response in (created, patched):
        assert response.status_code == 400, response.json()
        assert list(response.json()["error"]["fields"]) == ["priority"]
    assert ProviderKey.objects.get(pk=key_id).priority == 0


def test_developers_cannot_set_a_priority_and_outsiders_cannot_see_the_key(owner, developer, outsider, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]
    url = f"/api/v1/provider-keys/{key_id}"

    assert developer.api.patch(url, {"priority": 3}).status_code == 403
    assert outsider.api.patch(url, {"priority": 3}).status_code == 404
    assert developer.api.get(url).json()["providerKey"]["priority"] == 0


def _marked_invalid(key_id: str) -> None:
    assert key_services.provider_key_mark_invalid(key_id=key_id, rejections=3, status=401)


def test_a_key_the_gateway_marked_invalid_shows_why(owner, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]

    _marked_invalid(key_id)

    key = owner.api.get(f"/api/v1/provider-keys/{key_id}").json()["providerKey"]
    assert key["status"] == "invalid"
    assert key["invalidReason"] == "The provider rejected this key 3 times in a row (HTTP 401); fix or replace it."
    assert not key_services.provider_key_mark_invalid(key_id=key_id, rejections=4, status=401)  # once


@pytest.mark.parametrize("change", [{"status": "active"}, {"token": "sk-proj-fixed-key-0123456789"},
                                    {"baseUrl": "http://127.0.0.1:9/v1"}], ids=["status", "token", "baseUrl"])
def test_setting_the_status_or_a_new_token_clears_invalid(owner, org, change, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    key_id = _create(owner, org).json()["providerKey"]["id"]
    _marked_invalid(key_id)

    response = owner.api.patch(f"/api/v1/provider-keys/{key_id}", {**change, "validate": False})

    assert response.status_code == 200, response.json()
    key = response.json()["providerKey"]
    assert (key["status"], key["invalidReason"]) == ("active", None)
    assert ProviderKey.objects.get(pk=key_id).rejections == 0


def test_renaming_an_invalid_key_leaves_it_invalid_and_a_user_cannot_set_invalid(owner, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]
    url = f"/api/v1/provider-keys/{key_id}"
    _marked_invalid(key_id)

    assert owner.api.patch(url, {"name": "old"}).json()["providerKey"]["status"] == "invalid"
    assert owner.api.patch(url, {"status": "inactive"}).json()["providerKey"]["invalidReason"] is None

    refused = owner.api.patch(url, {"status": "invalid"})
    assert refused.status_code == 400 and list(refused.json()["error"]["fields"]) == ["status"]


def test_marking_a_key_invalid_tells_the_gateways(owner, org, monkeypatch):
    key_id = _create(owner, org).json()["providerKey"]["id"]
    changed = []
    monkeypatch.setattr(key_services.events, "config_changed", changed.append)

    _marked_invalid(key_id)

    assert changed == [org.id]


def test_the_snapshot_holds_every_active_key_of_a_provider_in_priority_order(owner, org, project):
    for name, priority in [("c", 2), ("a", 0), ("b", 1), ("off", -1)]:
        _create(owner, org, name=name, priority=priority, token=f"sk-proj-{name}-key-0123456789")
    _create(owner, org, provider="anthropic", name="claude")
    off = ProviderKey.objects.get(name="off")
    key_services.provider_key_update(provider_key=off, status="inactive")
    _marked_invalid(ProviderKey.objects.get(name="c").id)
    active = ProviderKey.objects.filter(status="active").order_by("created_at")

    snapshot = snapshot_of(key=None, project=project, rules=(), provider_keys=active)

    assert [(c.name, c.token) for c in snapshot.own_key_lists["openai"]] == [
        ("a", "sk-proj-a-key-0123456789"), ("b", "sk-proj-b-key-0123456789")]
    assert snapshot.own_keys["openai"].name == "a"  # the first, for callers that want one
    assert [c.key_id for c in snapshot.own_key_lists["anthropic"]] == [ProviderKey.objects.get(name="claude").id]


# --- who may -------------------------------------------------------------------------------------


def test_developers_cannot_create_patch_or_delete_provider_keys_but_can_read_them(developer, owner, org):
    assert _create(developer, org).status_code == 403
    assert ProviderKey.objects.count() == 0

    key_id = _create(owner, org).json()["providerKey"]["id"]
    url = f"/api/v1/provider-keys/{key_id}"
    assert developer.api.patch(url, {"name": "mine"}).status_code == 403
    assert developer.api.delete(url).status_code == 403
    assert ProviderKey.objects.get(pk=key_id).name == ""
    assert developer.api.get(url).status_code == 200
    assert [k["id"] for k in developer.api.get("/api/v1/provider-keys").json()["providerKeys"]] == [key_id]


def test_admins_create_patch_and_delete_provider_keys(admin, org):
    created = _create(admin, org)
    assert created.status_code == 201, created.json()
    url = f"/api/v1/provider-keys/{created.json()['providerKey']['id']}"

    patched = admin.api.patch(url, {"name": "team key"})
    assert patched.status_code == 200
    assert patched.json()["providerKey"]["name"] == "team key"
    assert admin.api.delete(url).status_code == 204
    assert admin.api.get(url).status_code == 404
    assert ProviderKey.objects.count() == 0


def test_outsiders_see_another_organizations_provider_key_as_missing(outsider, owner, org):
    key_id = _create(owner, org).json()["providerKey"]["id"]

    assert outsider.api.get(f"/api/v1/provider-keys/{key_id}").status_code == 404
    assert outsider.api.delete(f"/api/v1/provider-keys/{key_id}").status_code == 404
    assert _create(outsider, org).status_code == 404
    assert outsider.api.get("/api/v1/provider-keys").json()["providerKeys"] == []


# --- prices of a custom provider -----------------------------------------------------------------

CUSTOM = {"provider": "custom", "name": "local-llm", "baseUrl": "http://127.0.0.1:9/v1"}
PRICES = {"llama-3-70b": {"inputPrice": "0.50", "outputPrice": 1.5}, "qwen/qwen-2.5": {"inputPrice": 0, "outputPrice": "0.000000001"}}


@pytest.fixture
def custom_key(owner, org, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    response = _create(owner, org, **CUSTOM, prices=PRICES)
    assert response.status_code == 201, response.json()
    return response.json()["providerKey"]


def test_a_custom_provider_key_is_created_with_its_prices_as_decimal_strings(custom_key):
    assert custom_key["prices"] == {
        "llama-3-70b": {"inputPrice": "0.5", "outputPrice": "1.5"},
        "qwen/qwen-2.5": {"inputPrice": "0", "outputPrice": "0.000000001"},
    }
    stored = ProviderKey.objects.get(pk=custom_key["id"]).prices
    assert stored == custom_key["prices"]


def test_a_custom_provider_key_without_prices_has_none(owner, org, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = _create(owner, org, **CUSTOM)

    assert response.status_code == 201, response.json()
    assert response.json()["providerKey"]["prices"] == {}


def test_patching_prices_replaces_them_all_and_an_empty_object_removes_them(owner, custom_key):
    url = f"/api/v1/provider-keys/{custom_key['id']}"

    replaced = owner.api.patch(url, {"prices": {"mistral-7b": {"inputPrice": "0.1", "outputPrice": "0.2"}}})
    untouched = owner.api.patch(url, {"name": "renamed"})

    assert replaced.status_code == 200, replaced.json()
    assert replaced.json()["providerKey"]["prices"] == {"mistral-7b": {"inputPrice": "0.1", "outputPrice": "0.2"}}
    assert untouched.json()["providerKey"]["prices"] == {"mistral-7b": {"inputPrice": "0.1", "outputPrice": "0.2"}}
    removed = owner.api.patch(url, {"prices": {}})
    assert removed.json()["providerKey"]["prices"] == {}
    assert owner.api.get(url).json()["providerKey"]["prices"] == {}


@pytest.mark.parametrize(
    "prices, field",
    [
        (["gpt"], "prices"),
        ("0.5", "prices"),
        (None, "prices"),
        ({f"m{i}": {"inputPrice": "1", "outputPrice": "1"} for i in range(501)}, "prices"),
        ({"": {"inputPrice": "1", "outputPrice": "1"}}, "prices"),
        ({"   ": {"inputPrice": "1", "outputPrice": "1"}}, "prices"),
        ({"m" * 201: {"inputPrice": "1", "outputPrice": "1"}}, "prices"),
        ({"bad\nmodel": {"inputPrice": "1", "outputPrice": "1"}}, "prices"),
        ({"m": "0.5"}, "prices.m"),
        ({"m": ["0.5", "1.5"]}, "prices.m"),
        ({"m": {"inputPrice": "1", "outputPrice": "1", "cachedPrice": "1"}}, "prices.m"),
        ({"m": {"outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": "1"}}, "prices.m.outputPrice"),
        ({"m": {"inputPrice": "-1", "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": -0.5, "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": "1", "outputPrice": "10000.000000001"}}, "prices.m.outputPrice"),
        ({"m": {"inputPrice": "1", "outputPrice": 10001}}, "prices.m.outputPrice"),
        ({"m": {"inputPrice": "0.0000000001", "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": 1e-10, "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": "abc", "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": "1e3", "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": " 1", "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": "", "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": None, "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": True, "outputPrice": "1"}}, "prices.m.inputPrice"),
        ({"m": {"inputPrice": "1", "outputPrice": {"usd": 1}}}, "prices.m.outputPrice"),
        ({"gpt-4.1": {"inputPrice": "NaN", "outputPrice": "1"}}, "prices.gpt-4.1.inputPrice"),
    ],
    ids=["list", "string", "null", "501_models", "empty_model", "blank_model", "long_model", "control_char_model",
         "entry_string", "entry_list", "extra_key", "no_input", "no_output", "negative_string", "negative_number",
         "too_many_places_above_max", "above_max", "ten_places", "ten_places_number", "not_a_number", "exponent_string",
         "padded_string", "empty_string", "null_price", "boolean", "object_price", "nan_dotted_model"],
)
def test_malformed_prices_are_a_400_naming_the_field(owner, org, custom_key, prices, field):
    created = _create(owner, org, **{**CUSTOM, "name": "other"}, prices=prices)
    patched = owner.api.patch(f"/api/v1/provider-keys/{custom_key['id']}", {"prices": prices})

    for response in (created, patched):
        assert response.status_code == 400, response.json()
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert list(error["fields"]) == [field]
        assert error["message"].startswith(f"{field}: ")
    assert ProviderKey.objects.filter(organization=org).count() == 1
    assert ProviderKey.objects.get(pk=custom_key["id"]).prices == custom_key["prices"]


@pytest.mark.parametrize("price, stored", [("10000", "10000"), (10000, "10000"), ("0.123456789", "0.123456789"),
                                           (0.1, "0.1"), ("1.500000000000", "1.5"), ("007", "7"), (-0.0, "0")])
def test_prices_at_the_limits_are_stored_as_plain_decimals(owner, custom_key, price, stored):
    response = owner.api.patch(f"/api/v1/provider-keys/{custom_key['id']}", {"prices": {"m": {"inputPrice": price, "outputPrice": price}}})

    assert response.status_code == 200, response.json()
    assert response.json()["providerKey"]["prices"] == {"m": {"inputPrice": stored, "outputPrice": stored}}


def test_prices_for_a_built_in_provider_are_refused_naming_prices(owner, org):
    created = _create(owner, org, prices={"gpt-4o": {"inputPrice": "1", "outputPrice": "2"}})
    key_id = _create(owner, org).json()["providerKey"]["id"]
    patched = owner.api.patch(f"/api/v1/provider-keys/{key_id}", {"prices": {"gpt-4o": {"inputPrice": "1", "outputPrice": "2"}}})
    emptied = owner.api.patch(f"/api/v1/provider-keys/{key_id}", {"prices": {}})

    for response in (created, patched):
        assert response.status_code == 400, response.json()
        assert list(response.json()["error"]["fields"]) == ["prices"]
    assert emptied.status_code == 200 and emptied.json()["providerKey"]["prices"] == {}
    assert ProviderKey.objects.get(pk=key_id).prices == {}


def test_owners_set_prices_developers_and_outsiders_cannot(owner, developer, outsider, org, custom_key):
    url = f"/api/v1/provider-keys/{custom_key['id']}"
    theirs = {"m": {"inputPrice": "9", "outputPrice": "9"}}

    assert developer.api.patch(url, {"prices": theirs}).status_code == 403
    assert outsider.api.patch(url, {"prices": theirs}).status_code == 404
    assert _create(developer, org, **{**CUSTOM, "name": "dev"}, prices=theirs).status_code == 403
    assert _create(outsider, org, **{**CUSTOM, "name": "out"}, prices=theirs).status_code == 404
    assert ProviderKey.objects.get(pk=custom_key["id"]).prices == custom_key["prices"]
    assert developer.api.get(url).json()["providerKey"]["prices"] == custom_key["prices"]  # developers read them

    mine = owner.api.patch(url, {"prices": theirs})
    assert mine.status_code == 200, mine.json()
    assert ProviderKey.objects.get(pk=custom_key["id"]).prices == theirs


def test_the_snapshot_carries_a_custom_providers_prices_as_decimals(owner, org, project, custom_key):
    key_services.provider_key_create(organization=org, provider="openai", token=TOKEN, validate=False)

    snapshot = snapshot_of(key=None, project=project, rules=(), provider_keys=ProviderKey.objects.order_by("created_at"),
                           with_tokens=False)

    prices = snapshot.custom_keys["local-llm"].prices
    assert prices == {"llama-3-70b": (Decimal("0.5"), Decimal("1.5")), "qwen/qwen-2.5": (Decimal("0"), Decimal("0.000000001"))}
    assert all(isinstance(price, Decimal) for pair in prices.values() for price in pair)
    assert snapshot.own_keys["openai"].prices == {}


def test_the_admin_sets_prices_through_the_service(admin_client, custom_key):
    key = ProviderKey.objects.get(pk=custom_key["id"])
    url = f"/admin/apikeys/providerkey/{quote(key.pk)}/change/"
    form = {"name": key.name, "priority": key.priority, "base_url": key.base_url, "status": key.status}

    bad = admin_client.post(url, {**form, "prices": '{"m": {"inputPrice": "-1", "outputPrice": "1"}}'})
    good = admin_client.post(url, {**form, "prices": '{"m": {"inputPrice": 2, "outputPrice": "3.10"}}'})

    assert bad.status_code == 200 and "prices.m.inputPrice" in bad.content.decode()
    assert good.status_code == 302, good.content.decode()[:2000]
    assert ProviderKey.objects.get(pk=key.pk).prices == {"m": {"inputPrice": "2", "outputPrice": "3.1"}}


# --- private addresses (SSRF) --------------------------------------------------------------------

PRIVATE_URLS = [
    "http://127.0.0.1:8000/v1",
    "http://localhost/v1",
    "http://10.0.0.1/v1",
    "http://192.168.1.10/v1",
    "http://169.254.169.254/latest",
    "http://[::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0.0.0.0/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_base_url_at_a_private_address_is_refused_naming_base_url(owner, org, settings, url):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False

    response = _create(owner, org, provider="custom", name="internal", baseUrl=url)

    assert response.status_code == 400, response.json()
    assert "baseUrl" in response.json()["error"]["fields"]
    assert ProviderKey.objects.count() == 0


def test_patching_a_base_url_to_a_private_address_is_refused(owner, org, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    key_id = _create(owner, org, provider="custom", name="box", baseUrl="http://127.0.0.1:9/v1").json()["providerKey"]["id"]
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False

    response = owner.api.patch(
        f"/api/v1/provider-keys/{key_id}", {"baseUrl": "http://169.254.169.254/", "validate": False}
    )

    assert response.status_code == 400
    assert "baseUrl" in response.json()["error"]["fields"]
    assert ProviderKey.objects.get(pk=key_id).base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@example.com/", "not a url"])
def test_a_base_url_that_is_not_a_plain_http_url_is_refused(owner, org, settings, url):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = _create(owner, org, provider="custom", name="odd", baseUrl=url)

    assert response.status_code == 400
    assert "baseUrl" in response.json()["error"]["fields"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://10.0.0.1/v1", "http://[::ffff:127.0.0.1]/v1"])
def test_private_base_urls_are_allowed_when_the_operator_allows_them(owner, org, settings, url):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = _create(owner, org, provider="custom", name="internal", baseUrl=url)

    assert response.status_code == 201, response.json()
    assert response.json()["providerKey"]["baseUrl"] == url


# --- validation against the provider -------------------------------------------------------------

GOOD = "sk-good-4f9a2c7e1b8d3a6f0e5c9b2d7a1f4e8c"
BAD = "sk-bad-9e1d7c3b5a0f2e8d4c6b1a9f7e3d5c2b"
ANTHROPIC_GOOD = "sk-ant-api03-good-7c1e9a3f5b2d8e4a6c0f"


class _Provider(BaseHTTPRequestHandler):
    """Answers the model listing of the OpenAI and Anthropic formats, like the real ones."""

    seen: list = []

    def do_GET(self):
        type(self).seen.append((self.path, dict(self.headers)))
        if self.path == "/v1/models" and self.headers.get("Authorization") == f"Bearer {GOOD}":
            return self._answer(200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})
        if self.path == "/v1/models" and self.headers.get("x-api-key") == ANTHROPIC_GOOD:
            return self._answer(200, {"data": [{"id": "claude-3-5-sonnet", "type": "model"}], "has_more": False})
        presented = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
        self._answer(401, {"error": {"message": f"Incorrect API key provided: {presented}", "type": "invalid_request_error"}})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def provider(settings, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Provider.seen = []
    settings.PROVIDER_BASE_URLS = {
        **settings.PROVIDER_BASE_URLS, "openai": f"{base}/v1", "anthropic": base,
    }
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    settings.PROVIDER_VALIDATION_TIMEOUT = 5
    yield base
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_key_the_provider_accepts_is_saved(owner, org, provider):
    response = _create(owner, org, token=GOOD, validate=True)

    assert response.status_code == 201, response.json()
    assert [path for path, _ in _Provider.seen] == ["/v1/models"]
    assert ProviderKey.objects.get().plaintext_token() == GOOD


def test_keys_are_validated_by_default(owner, org, provider):
    body = {"organizationId": org.id, "provider": "openai", "token": BAD}

    response = owner.api.post("/api/v1/provider-keys", body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_key_rejected"
    assert len(_Provider.seen) == 1


def test_a_key_the_provider_rejects_is_refused_with_its_reason_and_never_echoed(owner, org, provider):
    response = _create(owner, org, token=BAD, validate=True)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "provider_key_rejected"
    assert "Incorrect API key provided" in error["message"]
    assert "401" in error["message"]
    assert "token" in error["fields"]
    body = response.content.decode()
    assert BAD not in body
    assert not _leaks(body, BAD)
    assert ProviderKey.objects.count() == 0


def test_an_anthropic_key_is_checked_with_the_x_api_key_header(owner, org, provider):
    good = _create(owner, org, provider="anthropic", token=ANTHROPIC_GOOD, validate=True)
    path, headers = _Provider.seen[-1]

    assert good.status_code == 201, good.json()
    assert path == "/v1/models"
    assert {k.lower(): v for k, v in headers.items()}["x-api-key"] == ANTHROPIC_GOOD
    assert "anthropic-version" in {k.lower() for k in headers}


def test_an_anthropic_key_the_provider_rejects_is_refused_without_the_key(owner, org, provider):
    token = "sk-ant-api03-bad-5d2b8f1a7c4e9d3b6a0e"

    bad = _create(owner, org, provider="anthropic", token=token, validate=True)

    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "provider_key_rejected"
    assert "Incorrect API key provided" in bad.json()["error"]["message"]
    assert not _leaks(bad.content.decode(), token)
    assert ProviderKey.objects.count() == 0


def test_a_custom_provider_is_checked_at_its_own_base_url(owner, org, provider):
    response = _create(owner, org, provider="custom", name="local", baseUrl=f"{provider}/v1", token=GOOD, validate=True)

    assert response.status_code == 201, response.json()
    assert _Provider.seen[-1][0] == "/v1/models"


def test_a_provider_that_cannot_be_reached_is_a_clear_400(owner, org, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    settings.PROVIDER_VALIDATION_TIMEOUT = 2

    # Port 9 (discard) is closed on the loopback: the connection is refused at once.
    response = _create(owner, org, provider="custom", name="down", baseUrl="http://127.0.0.1:9/v1", validate=True)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_key_rejected"
    assert not _leaks(response.content.decode(), TOKEN)


def test_a_new_token_given_by_patch_is_validated_too(owner, org, provider):
    key_id = _create(owner, org, token=GOOD, validate=True).json()["providerKey"]["id"]

    response = owner.api.patch(f"/api/v1/provider-keys/{key_id}", {"token": BAD})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_key_rejected"
    assert not _leaks(response.content.decode(), BAD)
    assert ProviderKey.objects.get(pk=key_id).plaintext_token() == GOOD


# --- rotation of ENCRYPTION_KEYS -----------------------------------------------------------------


def test_rotating_the_encryption_keys_keeps_every_provider_key_readable(owner, org, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    key_id = _create(owner, org).json()["providerKey"]["id"]
    before = ProviderKey.objects.get(pk=key_id).encrypted_token

    # Without the old key the token cannot be read: rotation is what keeps it.
    settings.ENCRYPTION_KEYS = [new]
    with pytest.raises(ImproperlyConfigured):
        ProviderKey.objects.get(pk=key_id).plaintext_token()

    settings.ENCRYPTION_KEYS = [new, old]
    assert key_services.provider_keys_reencrypt() == 1
    after = ProviderKey.objects.get(pk=key_id).encrypted_token
    assert after != before

    settings.ENCRYPTION_KEYS = [new]
    assert ProviderKey.objects.get(pk=key_id).plaintext_token() == TOKEN
    assert key_services.provider_keys_reencrypt() == 1  # safe to run again
    assert ProviderKey.objects.get(pk=key_id).plaintext_token() == TOKEN


def test_with_several_encryption_keys_the_first_one_encrypts(owner, org, settings):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [first, second]
    key_id = _create(owner, org).json()["providerKey"]["id"]

    stored = ProviderKey.objects.get(pk=key_id).encrypted_token

    assert Fernet(first.encode()).decrypt(stored.encode()).decode() == TOKEN
