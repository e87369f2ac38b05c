"""One API key: its description and limit, its IAM rules, and the check "would this key be
allowed to call model X?" (the key's active rules applied to the catalog's offers)."""

from decimal import Decimal

from apikeys import services as key_services
from apikeys.models import ApiKey, IamRule
from gateway import catalog, iam
from tests.dashboard.conftest import text
from usage import services as usage_services


def _url(project, key, rest=""):
    return f"/projects/{project.pk}/keys/{key.pk}/{rest}"


def test_the_page_shows_the_key_with_its_rules(owner, project, api_key, as_user):
    key_services.iam_rule_create(api_key=api_key, rule_type="allow_models", rule_value={"models": ["gpt-4o-mini"]})

    page = text(as_user(owner).get(_url(project, api_key)))

    assert api_key.masked_token in page and "Allow only these models" in page and "gpt-4o-mini" in page


def test_editing_the_limit_and_description(owner, project, api_key, as_user):
    response = as_user(owner).post(_url(project, api_key), {"description": "Renamed", "usage_limit": "12.5"}, htmx=True)

    api_key.refresh_from_db()
    assert (api_key.description, api_key.usage_limit) == ("Renamed", Decimal("12.5"))
    assert "Key saved." in text(response)


def test_raising_the_limit_brings_back_a_key_disabled_by_it(owner, project, api_key, as_user):
    ApiKey.objects.filter(pk=api_key.pk).update(usage=5, usage_limit=5, status="inactive", disabled_reason="usage_limit")

    as_user(owner).post(_url(project, api_key), {"description": "x", "usage_limit": "50"}, htmx=True)

    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("active", None)


def test_an_empty_limit_means_no_limit(owner, project, api_key, as_user):
    key_services.api_key_update(api_key=api_key, usage_limit="3")

    as_user(owner).post(_url(project, api_key), {"description": "x", "usage_limit": ""})

    assert ApiKey.objects.get(pk=api_key.pk).usage_limit is None


def test_adding_rules_of_each_kind(owner, project, api_key, as_user):
    browser = as_user(owner)

    browser.post(_url(project, api_key, "rules"), {"rule_type": "allow_models", "models": "gpt-4o-mini, openai/gpt-4o"}, htmx=True)
    browser.post(_url(project, api_key, "rules"), {"rule_type": "deny_providers", "providers": ["anthropic", "xai"]}, htmx=True)
    added = browser.post(_url(project, api_key, "rules"), {"rule_type": "allow_pricing", "pricing_type": "paid", "max_output_price": "5"}, htmx=True)

    assert "Rule added." in text(added)
    assert [(r.rule_type, r.rule_value) for r in api_key.iam_rules.order_by("created_at")] == [
        ("allow_models", {"models": ["gpt-4o-mini", "openai/gpt-4o"]}),
        ("deny_providers", {"providers": ["anthropic", "xai"]}),
        ("allow_pricing", {"pricingType": "paid", "maxOutputPrice": "5"}),
    ]


def test_a_rule_without_values_shows_the_services_error_in_place(owner, project, api_key, as_user):
    response = as_user(owner).post(_url(project, api_key, "rules"), {"rule_type": "allow_models", "models": " , "}, htmx=True)

    assert response.status_code == 400
    assert "must be a list of 1 to 500 names" in text(response)
    assert not api_key.iam_rules.exists()


def test_deactivating_and_deleting_a_rule(owner, project, api_key, as_user):
    rule = key_services.iam_rule_create(api_key=api_key, rule_type="deny_models", rule_value={"models": ["gpt-4o"]})
    browser = as_user(owner)

    browser.post(_url(project, api_key, f"rules/{rule.pk}/status"), htmx=True)
    assert IamRule.objects.get(pk=rule.pk).status == "inactive"
    deleted = browser.post(_url(project, api_key, f"rules/{rule.pk}/delete"), htmx=True)

    assert "Rule deleted." in text(deleted)
    assert not IamRule.objects.filter(pk=rule.pk).exists()


def test_the_check_says_yes_for_an_allowed_model_and_names_the_route(owner, org, project, api_key, as_user):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai-key", validate=False)
    key_services.iam_rule_create(api_key=api_key, rule_type="allow_models", rule_value={"models": ["gpt-4o-mini"]})

    page = text(as_user(owner).get(_url(project, api_key, "check"), {"model": "gpt-4o-mini"}, htmx=True))

    assert ("<strong>Yes.</strong> This key may call “gpt-4o-mini”: the gateway would use openai, paid with the "
            "organization's own provider key.") in page


def test_the_check_says_no_and_why_for_a_refused_model(owner, project, api_key, as_user):
    key_services.iam_rule_create(api_key=api_key, rule_type="allow_models", rule_value={"models": ["gpt-4o-mini"]})
    key_services.iam_rule_create(api_key=api_key, rule_type="deny_providers", rule_value={"providers": ["groq"]})

    page = text(as_user(owner).get(_url(project, api_key, "check"), {"model": "llama-3.3-70b-instruct"}, htmx=True))

    assert "<strong>No.</strong> A request for “llama-3.3-70b-instruct” with this key would be refused" in page
    assert "IAM rules do not allow the model" in page
    assert "denied by the rule “Deny these providers”" in page
    assert "not admitted by any rule “Allow only these models”" in page


def test_the_check_agrees_with_the_gateways_iam_for_every_catalog_model(owner, org, project, api_key, as_user, settings):
    # Credits and the gateway's own key for every provider: only the rules can refuse.
    settings.PROVIDER_API_KEYS = {provider: "gw-key" for provider in settings.PROVIDER_API_KEYS}
    usage_services.credits_add(organization=org, amount="5")
    key_services.iam_rule_create(api_key=api_key, rule_type="allow_pricing", rule_value={"maxInputPrice": "1"})
    key_services.iam_rule_create(api_key=api_key, rule_type="deny_models", rule_value={"models": ["gpt-4o-mini"]})
    rules = (iam.Rule("allow_pricing", {"maxInputPrice": "1"}), iam.Rule("deny_models", {"models": ["gpt-4o-mini"]}))
    browser = as_user(owner)

    for model in catalog.model_ids():
        page = text(browser.get(_url(project, api_key, "check"), {"model": model}, htmx=True))
        expected = any(iam.allows(rules, offer) for offer in catalog.offers_of(model))
        assert ("<strong>Yes.</strong>" in page) == expected, model


def test_an_inactive_rule_is_left_out_of_the_check(owner, org, project, api_key, as_user):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai-key", validate=False)
    key_services.iam_rule_create(api_key=api_key, rule_type="deny_models", rule_value={"models": ["gpt-4o"]}, status="inactive")

    page = text(as_user(owner).get(_url(project, api_key, "check"), {"model": "gpt-4o"}, htmx=True))

    assert "<strong>Yes.</strong>" in page


def test_the_check_of_an_unknown_model_says_so(owner, project, api_key, as_user):
    page = text(as_user(owner).get(_url(project, api_key, "check"), {"model": "no-such-model"}, htmx=True))

    assert "The model &#x27;no-such-model&#x27; does not exist or you do not have access to it." in page


def test_developers_edit_keys_and_outsiders_get_404(developer, outsider, project, api_key, as_user):
    rule = key_services.iam_rule_create(api_key=api_key, rule_type="deny_models", rule_value={"models": ["gpt-4o"]})
    assert as_user(developer).get(_url(project, api_key)).status_code == 200

    browser = as_user(outsider)
    assert browser.get(_url(project, api_key)).status_code == 404
    assert browser.post(_url(project, api_key), {"description": "x"}).status_code == 404
    assert browser.post(_url(project, api_key, "rules"), {"rule_type": "deny_models", "models": "x"}).status_code == 404
    assert browser.post(_url(project, api_key, f"rules/{rule.pk}/status")).status_code == 404
    assert browser.post(_url(project, api_key, f"rules/{rule.pk}/delete")).status_code == 404
    assert browser.get(_url(project, api_key, "check"), {"model": "gpt-4o"}).status_code == 404
    assert IamRule.objects.filter(pk=rule.pk, status="active").exists()
