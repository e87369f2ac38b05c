"""Several keys per provider, through the live gateway and the fake provider's faults: the
next key of the same provider on 401, 403, 429, 5xx or a timeout, then the next provider; a
key the provider keeps refusing marked invalid (and the dashboard saying so); a provider that
keeps failing tried last while it cools down, and first again after."""

import tempfile
import time
from pathlib import Path

import openai
import pytest
import requests
from django.test import Client

from apikeys import services as key_services
from apikeys.models import ProviderKey
from projects import services as project_services
from tests.gateway.conftest import _env, _stop, eventually
from tests.reliability.conftest import start_gateway
from usage.models import UsageLog
from usage.services import credits_add

HI = [{"role": "user", "content": "Hi"}]
LLAMA = "llama-3.3-70b-instruct"  # groq ($0.59 + $0.79 /M), then together-ai ($0.88 + $0.88 /M)


def own_key(org, provider, name, priority=0, token=None):
    return key_services.provider_key_create(
        organization=org, provider=provider, name=name, priority=priority, token=token or f"sk-{provider}-{name}",
        validate=False,
    )


def _generate_calls(fake):
    return [c for c in fake.calls if c.endpoint == "generate"]


def _tokens(fake) -> list[tuple[str, str]]:
    return [(c.provider, c.headers["authorization"].removeprefix("Bearer ")) for c in _generate_calls(fake)]


@pytest.fixture
def api_keys_project(project):
    return project_services.project_update(project=project, mode="api-keys")


@pytest.fixture
def two_openai_keys(org):
    """`main` (tried first) and `backup`."""
    return own_key(org, "openai", "main", priority=0), own_key(org, "openai", "backup", priority=1)


# --- the next key, then the next provider -------------------------------------------------------


def test_a_key_the_provider_refuses_is_followed_by_the_next_key_of_the_same_provider(
        gateway, api_keys_project, key_for, fake_upstream, two_openai_keys):
    fake_upstream.valid_tokens = {"sk-openai-backup"}  # `main` is refused: 401

    response = gateway.client(key_for(api_keys_project)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI)

    assert response.parse().choices[0].message.content == "Hello from the fake upstream."
    assert response.headers["x-gateway-provider"] == "openai"
    assert _tokens(fake_upstream) == [("openai", "sk-openai-main"), ("openai", "sk-openai-backup")]
    log = eventually(lambda: UsageLog.objects.filter(project=api_keys_project).first(), timeout=5)
    assert (log.status_code, log.used_provider, log.used_mode) == (200, "openai", "api-keys")


@pytest.mark.parametrize("fault", [{"status": 403}, {"status": 429}, {"status": 500}, {"status": 503}, "hang"],
                         ids=["403", "429", "500", "503", "timeout"])
def test_every_retryable_failure_moves_to_the_next_key(gateway, api_keys_project, key_for, fake_upstream, two_openai_keys, fault):
    if fault == "hang":
        fake_upstream.fail("hang", provider="openai")  # no answer within UPSTREAM_FIRST_BYTE_TIMEOUT (3 s here)
    else:
        fake_upstream.fail("status", provider="openai", **fault)

    gateway.client(key_for(api_keys_project)).chat.completions.create(model="gpt-4o-mini", messages=HI)

    assert _tokens(fake_upstream) == [("openai", "sk-openai-main"), ("openai", "sk-openai-backup")]


def test_when_every_key_of_a_provider_fails_the_next_provider_serves(gateway, org, api_keys_project, key_for, fake_upstream):
    own_key(org, "groq", "a", priority=0)
    own_key(org, "groq", "b", priority=1)
    own_key(org, "together-ai", "main")
    fake_upstream.valid_tokens = {"sk-together-ai-main"}  # both groq keys are refused

    response = gateway.client(key_for(api_keys_project)).chat.completions.with_raw_response.create(model=LLAMA, messages=HI)

    assert response.headers["x-gateway-provider"] == "together-ai"
    assert _tokens(fake_upstream) == [("groq", "sk-groq-a"), ("groq", "sk-groq-b"), ("together-ai", "sk-together-ai-main")]


def test_a_400_is_not_tried_on_the_next_key(gateway, api_keys_project, key_for, fake_upstream, two_openai_keys):
    fake_upstream.fail("status", provider="openai", status=400)

    with pytest.raises(openai.BadRequestError):
        gateway.client(key_for(api_keys_project)).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert _tokens(fake_upstream) == [("openai", "sk-openai-main")]


# --- a key the provider keeps refusing ---------------------------------------------------------------


def test_a_key_refused_three_times_in_a_row_is_marked_invalid_and_no_longer_tried(
        gateway, owner, org, api_keys_project, key_for, fake_upstream, two_openai_keys):
    main, _ = two_openai_keys
    fake_upstream.valid_tokens = {"sk-openai-backup"}
    client = gateway.client(key_for(api_keys_project))

    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    time.sleep(0.3)
    assert ProviderKey.objects.get(pk=main.pk).status == "active"  # two are not enough
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)

    assert eventually(lambda: ProviderKey.objects.get(pk=main.pk).status == "invalid", timeout=5)
    main.refresh_from_db()
    assert (main.rejections, main.rejected_status) == (3, 401)
    before = len(_generate_calls(fake_upstream))
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert _tokens(fake_upstream)[before:] == [("openai", "sk-openai-backup")]  # straight to the next key

    browser = Client()
    browser.force_login(owner.user)
    keys_page = browser.get(f"/org/{org.pk}/provider-keys/").content.decode()
    assert "The provider rejected this key 3 times in a row (HTTP 401); fix or replace it." in keys_page
    assert 'id="invalid-provider-keys"' in keys_page and ">invalid</span>" in keys_page
    other_page = browser.get(f"/projects/{api_keys_project.pk}/keys/").content.decode()
    assert 'id="invalid-provider-keys-banner"' in other_page and "fix or replace it" in other_page

    # Fixed through the live server's API (whose process is the gateway's, so the change is in force at once):
    # the key is tried again.
    fixed = requests.patch(f"{gateway.url}/api/v1/provider-keys/{main.pk}", json={"token": "sk-openai-fixed", "validate": False},
                           headers={"Authorization": f"Bearer {owner.token}"}, timeout=10)
    assert fixed.status_code == 200 and fixed.json()["providerKey"]["status"] == "active"
    fake_upstream.valid_tokens = {"sk-openai-fixed"}
    before = len(_generate_calls(fake_upstream))
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert _tokens(fake_upstream)[before:] == [("openai", "sk-openai-fixed")]
    assert 'id="invalid-provider-keys-banner"' not in browser.get(f"/projects/{api_keys_project.pk}/keys/").content.decode()


def test_when_the_only_key_is_marked_invalid_api_keys_mode_names_the_missing_key(
        gateway, org, api_keys_project, key_for, fake_upstream):
    only = own_key(org, "openai", "only")
    fake_upstream.valid_tokens = set()
    client = gateway.client(key_for(api_keys_project))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert eventually(lambda: ProviderKey.objects.get(pk=only.pk).status == "invalid", timeout=5)

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert raised.value.code == "provider_key_missing"


# --- a provider that keeps failing cools down ----------------------------------------------------------

COOLDOWN_SECONDS = 2.0


@pytest.fixture
def cooling_gateway(transactional_db, fake_upstream):
    """A gateway process of its own that cools providers down (the shared one never does):
    5 failures within 30 s, then COOLDOWN_SECONDS tried last."""
    directory = Path(tempfile.mkdtemp(prefix="llmgw-cooling-"))
    env = {**_env(fake_upstream, str(directory)), "GATEWAY_COOLDOWN_FAILURES": "5", "GATEWAY_COOLDOWN_WINDOW": "30",
           "GATEWAY_COOLDOWN_SECONDS": str(COOLDOWN_SECONDS)}
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):  # its own process memory counts
        env.pop(name, None)
    started = start_gateway(env, directory / "gateway.log")
    try:
        yield started
    finally:
        _stop(started.process)
        tail = (directory / "gateway.log").read_text(errors="replace")[-3000:]
        if "Traceback" in tail:
            print(tail)


def test_a_provider_failing_five_times_is_tried_last_then_first_again_after_its_cool_down(
        cooling_gateway, org, project, fake_upstream):
    credits_add(organization=org, amount="10")
    project = project_services.project_update(project=project, mode="credits")
    token, _ = key_services.api_key_create(project=project)
    client = openai.OpenAI(base_url=f"{cooling_gateway.url}/v1", api_key=token, max_retries=0, timeout=20)

    def served_by(model: str = LLAMA) -> tuple[str, list[str]]:
        before = len(_generate_calls(fake_upstream))
        response = client.chat.completions.with_raw_response.create(model=model, messages=HI)
        return response.headers["x-gateway-provider"], [c.provider for c in _generate_calls(fake_upstream)[before:]]

    fake_upstream.fail("status", provider="groq", status=500, times=5)
    for _ in range(5):
        assert served_by() == ("together-ai", ["groq", "together-ai"])  # each failed over
    cooled_at = time.monotonic()

    assert served_by() == ("together-ai", ["together-ai"])  # groq cools down: tried last
    fake_upstream.fail("status", provider="together-ai", status=500)
    assert served_by() == ("groq", ["together-ai", "groq"])  # still tried, only last
    assert served_by(f"groq/{LLAMA}") == ("groq", ["groq"])  # a pinned provider is never moved

    time.sleep(max(COOLDOWN_SECONDS - (time.monotonic() - cooled_at), 0) + 0.2)
    assert served_by() == ("groq", ["groq"])  # the cool-down is over: cheapest first again
