"""IAM rules of an API key: the six rule types, their values, edits and validation."""

import pytest

from apikeys import services
from apikeys.models import IamRule

VALID = [
    ("allow_models", {"models": ["gpt-4o", "openai/gpt-4o-mini"]}),
    ("deny_models", {"models": ["claude-3-opus"]}),
    ("allow_providers", {"providers": ["openai", "anthropic", "my-local-llm"]}),
    ("deny_providers", {"providers": ["deepseek"]}),
    ("allow_pricing", {"pricingType": "free"}),
    ("deny_pricing", {"pricingType": "paid", "maxInputPrice": "10", "maxOutputPrice": 30}),
]


def _url(api_key, rule_id=None):
    base = f"/api/v1/api-keys/{api_key.id}/iam-rules"
    return f"{base}/{rule_id}" if rule_id else base


def _create(person, api_key, rule_type, rule_value, **extra):
    return person.api.post(_url(api_key), {"ruleType": rule_type, "ruleValue": rule_value, **extra})


@pytest.mark.parametrize("rule_type, rule_value", VALID, ids=[t for t, _ in VALID])
def test_it_creates_each_rule_type_with_a_valid_value(owner, api_key, rule_type, rule_value):
    response = _create(owner, api_key, rule_type, rule_value)

    assert response.status_code == 201, response.json()
    rule = response.json()["iamRule"]
    assert {"id", "ruleType", "ruleValue", "status"} <= set(rule)
    assert rule["id"].startswith("iam_")
    assert rule["ruleType"] == rule_type
    assert rule["status"] == "active"
    assert set(rule["ruleValue"]) == set(rule_value)
    for name in ("models", "providers", "pricingType"):
        if name in rule_value:
            assert rule["ruleValue"][name] == rule_value[name]
    stored = IamRule.objects.get(pk=rule["id"])
    assert (stored.api_key_id, stored.rule_type) == (api_key.id, rule_type)


def test_prices_in_a_pricing_rule_come_back_as_the_same_decimal_amounts(owner, api_key):
    rule = _create(owner, api_key, "deny_pricing", {"maxInputPrice": "2.5", "maxOutputPrice": 10}).json()["iamRule"]

    assert float(rule["ruleValue"]["maxInputPrice"]) == 2.5
    assert float(rule["ruleValue"]["maxOutputPrice"]) == 10


def test_it_creates_a_rule_that_starts_inactive(owner, api_key):
    response = _create(owner, api_key, "deny_models", {"models": ["gpt-4o"]}, status="inactive")

    assert response.status_code == 201
    assert response.json()["iamRule"]["status"] == "inactive"


def test_it_lists_the_rules_of_one_key_only(owner, project, api_key):
    first = _create(owner, api_key, "allow_models", {"models": ["gpt-4o"]}).json()["iamRule"]
    second = _create(owner, api_key, "deny_providers", {"providers": ["xai"]}).json()["iamRule"]
    _, other_key = services.api_key_create(project=project)
    services.iam_rule_create(api_key=other_key, rule_type="deny_models", rule_value={"models": ["x"]})

    response = owner.api.get(_url(api_key))

    assert response.status_code == 200
    rules = response.json()["iamRules"]
    assert [r["id"] for r in rules] == [first["id"], second["id"]]
    assert rules[1] == {**second, "updatedAt": rules[1]["updatedAt"]}


def test_it_patches_the_value_and_the_status_of_a_rule(owner, api_key):
    rule = _create(owner, api_key, "allow_models", {"models": ["gpt-4o"]}).json()["iamRule"]

    response = owner.api.patch(_url(api_key, rule["id"]), {"ruleValue": {"models": ["gpt-4o", "o3-mini"]}})
    assert response.status_code == 200, response.json()
    assert response.json()["iamRule"]["ruleValue"] == {"models": ["gpt-4o", "o3-mini"]}

    response = owner.api.patch(_url(api_key, rule["id"]), {"status": "inactive"})
    assert response.status_code == 200
    assert response.json()["iamRule"]["status"] == "inactive"
    assert response.json()["iamRule"]["ruleValue"] == {"models": ["gpt-4o", "o3-mini"]}

    stored = IamRule.objects.get(pk=rule["id"])
    assert (stored.rule_value, stored.status) == ({"models": ["gpt-4o", "o3-mini"]}, "inactive")


def test_a_patch_with_an_invalid_value_is_refused_and_changes_nothing(owner, api_key):
    rule = _create(owner, api_key, "allow_providers", {"providers": ["openai"]}).json()["iamRule"]

    response = owner.api.patch(_url(api_key, rule["id"]), {"ruleValue": {"providers": ["OpenAI"]}})

    assert response.status_code == 400
    assert "ruleValue.providers" in response.json()["error"]["fields"]
    assert IamRule.objects.get(pk=rule["id"]).rule_value == {"providers": ["openai"]}


def test_changing_the_type_of_a_rule_checks_its_value_against_the_new_type(owner, api_key):
    rule = _create(owner, api_key, "allow_models", {"models": ["gpt-4o"]}).json()["iamRule"]

    response = owner.api.patch(_url(api_key, rule["id"]), {"ruleType": "allow_pricing"})

    assert response.status_code == 400
    assert any(name.startswith("ruleValue") for name in response.json()["error"]["fields"])
    assert IamRule.objects.get(pk=rule["id"]).rule_type == "allow_models"


def test_it_deletes_a_rule(owner, api_key):
    rule = _create(owner, api_key, "deny_models", {"models": ["gpt-4o"]}).json()["iamRule"]

    assert owner.api.delete(_url(api_key, rule["id"])).status_code == 204
    assert owner.api.get(_url(api_key)).json()["iamRules"] == []
    assert owner.api.delete(_url(api_key, rule["id"])).status_code == 404
    assert owner.api.patch(_url(api_key, rule["id"]), {"status": "active"}).status_code == 404


INVALID = [
    ("unknown_rule_type", "allow_everything", {"models": ["gpt-4o"]}, "ruleType"),
    ("models_not_a_list", "allow_models", {"models": "gpt-4o"}, "ruleValue.models"),
    ("models_empty", "deny_models", {"models": []}, "ruleValue.models"),
    ("models_of_blank_names", "deny_models", {"models": ["  "]}, "ruleValue.models"),
    ("providers_uppercase", "allow_providers", {"providers": ["OpenAI"]}, "ruleValue.providers"),
    ("providers_wrong_key", "deny_providers", {"models": ["openai"]}, "ruleValue"),
    ("pricing_type_cheap", "allow_pricing", {"pricingType": "cheap"}, "ruleValue.pricingType"),
    ("pricing_negative_input", "deny_pricing", {"maxInputPrice": -1}, "ruleValue.maxInputPrice"),
    ("pricing_price_not_a_number", "deny_pricing", {"maxOutputPrice": "lots"}, "ruleValue.maxOutputPrice"),
    ("pricing_empty", "allow_pricing", {}, "ruleValue"),
    ("extra_key_in_models", "allow_models", {"models": ["gpt-4o"], "note": "x"}, "ruleValue"),
    ("extra_key_in_pricing", "deny_pricing", {"pricingType": "paid", "maxTokens": 5}, "ruleValue"),
    ("value_not_an_object", "allow_models", ["gpt-4o"], "ruleValue"),
]


@pytest.mark.parametrize("rule_type, rule_value, field", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_it_refuses_an_invalid_rule_naming_the_field(owner, api_key, rule_type, rule_value, field):
    response = _create(owner, api_key, rule_type, rule_value)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert field in error["message"]
    assert IamRule.objects.count() == 0


def test_it_refuses_an_unknown_rule_status(owner, api_key):
    response = _create(owner, api_key, "allow_models", {"models": ["gpt-4o"]}, status="paused")

    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_it_refuses_unknown_fields_in_the_body(owner, api_key):
    response = _create(owner, api_key, "allow_models", {"models": ["gpt-4o"]}, apiKeyId="key_other")

    assert response.status_code == 400
    assert "apiKeyId" in response.json()["error"]["fields"]
    assert IamRule.objects.count() == 0


def test_developers_manage_the_rules_of_their_organizations_keys(developer, api_key):
    created = _create(developer, api_key, "allow_providers", {"providers": ["openai"]})
    assert created.status_code == 201
    rule_id = created.json()["iamRule"]["id"]

    assert developer.api.patch(_url(api_key, rule_id), {"status": "inactive"}).status_code == 200
    assert developer.api.delete(_url(api_key, rule_id)).status_code == 204


def test_outsiders_cannot_read_or_add_rules_of_another_organizations_key(outsider, api_key):
    assert outsider.api.get(_url(api_key)).status_code == 404
    assert _create(outsider, api_key, "allow_models", {"models": ["gpt-4o"]}).status_code == 404
    assert IamRule.objects.count() == 0
