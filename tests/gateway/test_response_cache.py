"""Response caching through the OpenAI SDK: identical requests of a caching project get the
stored answer, free, with the HIT header; nothing crosses projects; failures are never kept."""

import time

import openai
import pytest

from apikeys import services as key_services
from projects import services
from tests.gateway.conftest import eventually
from usage.models import UsageLog

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def caching_project(org):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
    return services.project_create(organization=org, name="Cached", caching_enabled=True, cache_duration_seconds=60)


def _ask(client, **kwargs):
    return client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)


def _rows(project, n):
    return eventually(lambda: (rows := list(UsageLog.objects.filter(project=project).order_by("created_at"))) and len(rows) >= n and rows)


def test_a_repeated_request_is_answered_from_the_cache_for_free(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    first = _ask(client)
    second = _ask(client)
    assert first.headers["x-gateway-cache"] == "MISS" and second.headers["x-gateway-cache"] == "HIT"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.parse().usage.total_tokens == 15
    assert len(fake_upstream.calls) == 1
    miss, hit = _rows(caching_project, 2)
    assert (miss.cached, hit.cached) == (False, True)
    assert hit.cost == 0 and (hit.prompt_tokens, hit.completion_tokens) == (10, 5)
    assert hit.saved_cost == miss.cost > 0
    assert hit.used_provider == "openai"


def test_a_small_change_of_a_parameter_misses(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    _ask(client, temperature=0.5)
    assert _ask(client, temperature=0.6).headers["x-gateway-cache"] == "MISS"
    assert len(fake_upstream.calls) == 2


def test_streams_are_cached_once_complete_and_replayed_as_streams(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    first = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True) if c.choices)
    response = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert response.headers["x-gateway-cache"] == "HIT"
    replay = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert replay == first == "Hello from the fake upstream."
    assert len(fake_upstream.calls) == 1


def test_two_projects_with_identical_bodies_never_share_an_entry(gateway, org, caching_project, key_for, fake_upstream):
    other = services.project_create(organization=org, name="Other", caching_enabled=True)
    _ask(gateway.client(key_for(caching_project)))
    assert _ask(gateway.client(key_for(other))).headers["x-gateway-cache"] == "MISS"
    assert len(fake_upstream.calls) == 2


def test_two_organizations_with_identical_bodies_never_see_each_others_answers(gateway, caching_project, outsider, key_for, fake_upstream):
    theirs = services.project_create(organization=outsider.organization, name="Theirs", caching_enabled=True)
    key_services.provider_key_create(organization=outsider.organization, provider="openai", token="sk-theirs", validate=False)
    _ask(gateway.client(key_for(caching_project)))
    fake_upstream.reply = "Their own answer."
    answer = _ask(gateway.client(key_for(theirs)))
    assert answer.headers["x-gateway-cache"] == "MISS"
    assert answer.parse().choices[0].message.content == "Their own answer."


def test_entries_expire_after_the_projects_duration(gateway, caching_project, key_for, fake_upstream):
    services.project_update(project=caching_project, cache_duration_seconds=10)
    client = gateway.client(key_for(caching_project))
    _ask(client)
    assert _ask(client).headers["x-gateway-cache"] == "HIT"
    time.sleep(10.5)
    assert _ask(client).headers["x-gateway-cache"] == "MISS"


def test_changing_the_duration_or_turning_caching_off_makes_old_entries_unreachable(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    _ask(client)
    services.project_update(project=caching_project, cache_duration_seconds=120)
    assert eventually(lambda: _ask(client).headers.get("x-gateway-cache") == "MISS", timeout=5)
    services.project_update(project=caching_project, caching_enabled=False)
    assert eventually(lambda: "x-gateway-cache" not in _ask(client).headers, timeout=5)
    services.project_update(project=caching_project, caching_enabled=True)
    assert eventually(lambda: _ask(client).headers.get("x-gateway-cache") == "MISS", timeout=5)


def test_failed_answers_are_never_cached(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    fake_upstream.fail("status", status=500, times=1)  # gpt-4o-mini has one provider: one call
    with pytest.raises(openai.InternalServerError):
        _ask(client)
    assert _ask(client).headers["x-gateway-cache"] == "MISS"


def test_an_interrupted_stream_is_never_cached(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    fake_upstream.fail("cut_mid_stream", after=2)
    with pytest.raises(Exception):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    response = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert response.headers["x-gateway-cache"] == "MISS"
    list(response.parse())


def test_x_no_cache_skips_reading_and_writing(gateway, caching_project, key_for, fake_upstream):
    client = gateway.client(key_for(caching_project))
    _ask(client, extra_headers={"x-no-cache": "true"})
    assert _ask(client).headers["x-gateway-cache"] == "MISS"
    assert _ask(client, extra_headers={"x-no-cache": "true"}).headers["x-gateway-cache"] == "MISS"
    assert len(fake_upstream.calls) == 3


def test_a_hit_still_obeys_the_keys_status_and_iam_rules(gateway, caching_project, key_for, fake_upstream):
    token = key_for(caching_project)
    client = gateway.client(token)
    _ask(client)
    key = caching_project.api_keys.get()
    key_services.iam_rule_create(api_key=key, rule_type="deny_models", rule_value={"models": ["gpt-4o-mini"]})
    assert eventually(lambda: _status(client) == 403, timeout=5)
    key_services.api_key_update(api_key=key, status="inactive")
    assert eventually(lambda: _status(client) == 401, timeout=5)


def _status(client) -> int:
    try:
        return _ask(client).status_code
    except openai.APIStatusError as e:
        return e.status_code


def test_a_cached_answer_is_served_only_to_a_key_allowed_its_provider(gateway, org, key_for, fake_upstream):
    """The answer of one provider is never handed to a key whose rules deny that provider:
    the request goes to a provider it may use, and is logged against that one."""
    from usage.services import credits_add

    credits_add(organization=org, amount="10")
    project = services.project_create(organization=org, name="Cached credits", mode="credits", caching_enabled=True)
    model = "llama-3.3-70b-instruct"  # offered by two providers; the cheaper one answers first
    first = gateway.client(key_for(project)).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    cheapest = first.headers["x-gateway-provider"]
    token, strict = key_services.api_key_create(project=project, description="denies the cheapest")
    key_services.iam_rule_create(api_key=strict, rule_type="deny_providers", rule_value={"providers": [cheapest]})

    again = gateway.client(token).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)

    assert again.headers["x-gateway-cache"] == "MISS"
    assert again.headers["x-gateway-provider"] != cheapest
    row = eventually(lambda: UsageLog.objects.filter(project=project, api_key_id=strict.pk).first())
    assert row.used_provider != cheapest and not row.cached

