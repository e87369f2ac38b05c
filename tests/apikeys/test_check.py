"""POST /api/v1/api-keys/{id}/check: what the gateway would do with this key and model, from
the same decisions the gateway makes (gateway/allow.py), without calling any provider."""

import pytest

from apikeys import services as key_services
from usage import services as usage_services


def _check(person, key, model):
    response = person.api.post(f"/api/v1/api-keys/{key.id}/check", {"model": model})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def gateway_keys(settings):
    settings.PROVIDER_API_KEYS = {provider: "gw-key" for provider in settings.PROVIDER_API_KEYS}


def test_an_allowed_model_names_the_provider_and_how_it_is_paid(owner, org, api_key):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own", validate=False)

    assert _check(owner, api_key, "gpt-4o-mini") == {
        "allowed": True, "provider": "openai", "mode": "api-keys", "reasons": [],
    }


def test_credits_pay_when_the_organization_has_no_key_of_its_own(owner, org, api_key, gateway_keys):
    usage_services.credits_add(organization=org, amount="5")

    verdict = _check(owner, api_key, "gpt-4o-mini")

    assert (verdict["allowed"], verdict["mode"]) == (True, "credits")


def test_a_new_organization_is_told_it_has_neither_credits_nor_keys(owner, api_key, gateway_keys):
    verdict = _check(owner, api_key, "gpt-4o-mini")

    assert verdict["allowed"] is False and verdict["provider"] is None and verdict["mode"] == "hybrid"
    assert verdict["reasons"] == [
        "only credits could pay, and the organization has $0.00 of credits (402 insufficient_credits): "
        "add credits or a provider key"
    ]


def test_iam_rules_refusing_the_model_are_the_reason(owner, org, api_key):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own", validate=False)
    key_services.iam_rule_create(api_key=api_key, rule_type="deny_models", rule_value={"models": ["gpt-4o-mini"]})

    verdict = _check(owner, api_key, "gpt-4o-mini")

    assert verdict["allowed"] is False
    assert verdict["reasons"] == ["This API key's IAM rules do not allow the model 'gpt-4o-mini'."]


def test_a_key_at_its_limit_and_a_disabled_key_say_so(owner, org, api_key):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own", validate=False)
    key_services.api_key_update(api_key=api_key, status="inactive")

    assert _check(owner, api_key, "gpt-4o-mini")["reasons"] == ["This API key is disabled."]


def test_an_unknown_model_and_a_missing_provider_key_say_what_to_do(owner, project, api_key):
    project.mode = "api-keys"
    project.save()

    assert _check(owner, api_key, "no-such-model")["reasons"] == [
        "The model 'no-such-model' does not exist or you do not have access to it."
    ]
    assert "No provider key for openai in this organization" in _check(owner, api_key, "gpt-4o-mini")["reasons"][0]


def test_the_model_is_required_and_outsiders_get_404(owner, outsider, api_key):
    assert owner.api.post(f"/api/v1/api-keys/{api_key.id}/check", {}).json()["error"]["fields"] == {
        "model": ["This field is required."]
    }
    assert outsider.api.post(f"/api/v1/api-keys/{api_key.id}/check", {"model": "gpt-4o"}).status_code == 404
