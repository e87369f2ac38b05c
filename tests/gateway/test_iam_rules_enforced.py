"""An API key's IAM rules at the gateway: each rule type on a pinned model, on a bare model
the router picks a provider for, and on fallback; inactive rules; rules changed while the
gateway holds the key in its cache."""

import time

import openai
import pytest
import requests

from apikeys import services as key_services
from gateway import catalog
from tests.gateway.conftest import eventually
from usage.models import UsageLog
from usage.services import credits_add

HI = [{"role": "user", "content": "Hi"}]
LLAMA = "llama-3.3-70b-instruct"  # groq: $0.59 in / $0.79 out per 1M; together-ai: $0.88 / $0.88
DENIED = (403, "permission_denied")


@pytest.fixture
def paying_project(org, project, fake_upstream, settings):
    """A hybrid project with credits (every built-in provider is usable through the gateway's
    keys) and a custom provider "my-llm" of its own, which is free through the gateway."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake listens on loopback
    credits_add(organization=org, amount="10")
    key_services.provider_key_create(
        organization=org, provider="custom", name="my-llm", token="sk-own-my-llm",
        base_url=fake_upstream.base_url("my-llm"), validate=False,
    )
    return project


def key_with_rules(project, *rules):
    """A new API key with the given (rule_type, rule_value[, status]) rules; returns (token, key)."""
    token, key = key_services.api_key_create(project=project)
    for rule in rules:
        rule_type, value, *status = rule
        key_services.iam_rule_create(api_key=key, rule_type=rule_type, rule_value=value, status=(status or ["active"])[0])
    return token, key


def outcome(gateway, token, model):
    """The provider that served the request, or (status, error code) when it was refused."""
    try:
        response = gateway.client(token).chat.completions.with_raw_response.create(model=model, messages=HI)
    except openai.APIStatusError as e:
        return e.status_code, e.code
    return response.headers["x-gateway-provider"]


@pytest.fixture
def ask(gateway, paying_project):
    """`outcome`, counting the requests: each leaves a usage row, and the test ends once they
    are all written (the worker must not be writing while the database is emptied)."""
    made = []

    def ask(token, model):
        made.append(model)
        return outcome(gateway, token, model)

    yield ask
    eventually(lambda: UsageLog.objects.filter(project=paying_project).count() >= len(made), timeout=5)


def _generate_providers(fake):
    return [c.provider for c in fake.calls if c.endpoint == "generate"]


# --- each rule type on pinned and routed models ---------------------------------------------------

RULE_CASES = {
    "allow_models": (
        {"models": ["gpt-4o-mini", f"together-ai/{LLAMA}"]},
        {
            "openai/gpt-4o-mini": "openai",  # pinned, allowed by its bare id
            "openai/gpt-4o": DENIED,  # pinned, not in the list
            "gpt-4o": DENIED,
            f"groq/{LLAMA}": DENIED,  # only together-ai's offer of it is allowed
            LLAMA: "together-ai",  # routed past the cheaper groq
        },
    ),
    "deny_models": (
        {"models": ["gpt-4o", f"groq/{LLAMA}"]},
        {
            "gpt-4o": DENIED,
            "openai/gpt-4o": DENIED,
            "openai/gpt-4o-mini": "openai",
            f"groq/{LLAMA}": DENIED,
            f"together-ai/{LLAMA}": "together-ai",
            LLAMA: "together-ai",
        },
    ),
    "allow_providers": (
        {"providers": ["together-ai", "openai"]},
        {
            "openai/gpt-4o-mini": "openai",
            "anthropic/claude-3-5-haiku": DENIED,
            "claude-3-5-haiku": DENIED,
            f"groq/{LLAMA}": DENIED,
            LLAMA: "together-ai",
        },
    ),
    "deny_providers": (
        {"providers": ["groq", "anthropic"]},
        {
            "claude-3-5-haiku": DENIED,
            f"groq/{LLAMA}": DENIED,
            f"together-ai/{LLAMA}": "together-ai",
            LLAMA: "together-ai",
            "gpt-4o-mini": "openai",
        },
    ),
    "allow_pricing": (
        {"maxInputPrice": "0.60"},
        {
            "openai/gpt-4o-mini": "openai",  # $0.15
            "openai/gpt-4o": DENIED,  # $2.50
            "gpt-4o": DENIED,
            f"together-ai/{LLAMA}": DENIED,  # $0.88
            f"groq/{LLAMA}": "groq",  # $0.59
            LLAMA: "groq",
        },
    ),
    "deny_pricing": (
        {"pricingType": "paid"},
        {
            "openai/gpt-4o-mini": DENIED,
            "gpt-4o-mini": DENIED,
            LLAMA: DENIED,
            f"groq/{LLAMA}": DENIED,
            "my-llm/some-model": "my-llm",  # a custom provider costs nothing through the gateway
        },
    ),
}


@pytest.mark.parametrize("rule_type", list(RULE_CASES))
def test_each_rule_type_is_enforced_on_pinned_and_routed_models(ask, paying_project, fake_upstream, rule_type):
    value, expected = RULE_CASES[rule_type]
    token, _ = key_with_rules(paying_project, (rule_type, value))

    seen = {model: ask(token, model) for model in expected}
    assert seen == expected
    served = [provider for provider in expected.values() if isinstance(provider, str)]
    assert _generate_providers(fake_upstream) == served  # a refused request never reached a provider
    # and each request, refused or served, left its usage row
    eventually(lambda: UsageLog.objects.filter(project=paying_project).count() >= len(expected), timeout=5)
    rows = UsageLog.objects.filter(project=paying_project).values_list("requested_model", "status_code")
    assert sorted(rows) == sorted((model, 200 if isinstance(o, str) else 403) for model, o in expected.items())


def test_an_allow_pricing_rule_that_no_provider_meets_refuses_the_bare_model(ask, paying_project, fake_upstream):
    token, _ = key_with_rules(paying_project, ("allow_pricing", {"maxInputPrice": "0.50"}))
    assert ask(token, LLAMA) == DENIED
    assert _generate_providers(fake_upstream) == []


# --- each rule type on fallback --------------------------------------------------------------------

FALLBACK_CASES = {
    "no rule": None,
    "allow_models": ("allow_models", {"models": [f"groq/{LLAMA}"]}),
    "deny_models": ("deny_models", {"models": [f"together-ai/{LLAMA}"]}),
    "allow_providers": ("allow_providers", {"providers": ["groq"]}),
    "deny_providers": ("deny_providers", {"providers": ["together-ai"]}),
    "allow_pricing": ("allow_pricing", {"maxInputPrice": "0.60"}),
    "deny_pricing": ("deny_pricing", {"maxInputPrice": "0.60"}),
}


def test_fallback_only_goes_to_providers_the_rules_allow(ask, paying_project, fake_upstream):
    fake_upstream.fail("status", provider="groq", status=500, times=None)
    for case, rule in FALLBACK_CASES.items():
        token, _ = key_with_rules(paying_project, *([rule] if rule else []))
        before = len(_generate_providers(fake_upstream))
        seen = ask(token, LLAMA)
        tried = _generate_providers(fake_upstream)[before:]
        if rule is None:  # the control: without a rule the next provider takes over
            assert (case, seen, tried) == (case, "together-ai", ["groq", "together-ai"])
        else:
            assert (case, seen, tried) == (case, (502, "upstream_error"), ["groq"])


# --- the refusal -----------------------------------------------------------------------------------


def test_a_denied_model_is_a_403_permission_denied_in_openais_shape_and_is_logged(gateway, paying_project, fake_upstream):
    token, key = key_with_rules(paying_project, ("deny_models", {"models": ["gpt-4o"]}))
    response = requests.post(
        f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt-4o", "messages": HI}, timeout=20,
    )

    assert response.status_code == 403
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "permission_denied" and "gpt-4o" in error["message"]
    assert fake_upstream.calls == []
    logs = eventually(lambda: list(UsageLog.objects.filter(project=paying_project)))
    assert len(logs) == 1
    assert (logs[0].api_key_id, logs[0].status_code, logs[0].has_error, logs[0].requested_model) == (key.id, 403, True, "gpt-4o")


def test_the_models_list_shows_only_what_the_rules_allow(gateway, paying_project):
    token, _ = key_with_rules(paying_project, ("allow_providers", {"providers": ["anthropic"]}))
    models = gateway.client(token).models.list().data
    assert {m.id for m in models} == {o.model for o in catalog.listed("anthropic")}
    assert {"claude-3-5-haiku", "claude-sonnet-4", "claude-sonnet-4-5"} <= {m.id for m in models}


# --- inactive and changed rules ----------------------------------------------------------------------


def test_an_inactive_rule_is_ignored(ask, paying_project):
    token, _ = key_with_rules(
        paying_project,
        ("deny_models", {"models": ["gpt-4o-mini"]}, "inactive"),
        ("allow_providers", {"providers": ["anthropic"]}, "inactive"),
    )
    assert ask(token, "gpt-4o-mini") == "openai"
    assert ask(token, LLAMA) == "groq"


def test_rules_changed_after_the_key_was_used_take_effect_at_once(ask, paying_project):
    token, key = key_with_rules(paying_project)
    assert ask(token, "gpt-4o-mini") == "openai"  # the gateway now holds the key in its cache

    def becomes(model, expected):
        return eventually(lambda: ask(token, model) == expected, timeout=5, interval=0.1)

    started = time.monotonic()
    rule = key_services.iam_rule_create(api_key=key, rule_type="deny_models", rule_value={"models": ["gpt-4o-mini"]})
    assert becomes("gpt-4o-mini", DENIED)

    key_services.iam_rule_update(rule=rule, status="inactive")
    assert becomes("gpt-4o-mini", "openai")

    key_services.iam_rule_update(rule=rule, rule_value={"models": ["gpt-4o"]}, status="active")
    assert becomes("gpt-4o", DENIED)
    assert ask(token, "gpt-4o-mini") == "openai"

    key_services.iam_rule_delete(rule=rule)
    assert becomes("gpt-4o", "openai")
    # heard through events, well before the cache's own expiry would have refreshed the key
    assert time.monotonic() - started < 8
