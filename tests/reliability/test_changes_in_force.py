"""A change is in force on every gateway process once its 2xx answer is out (issue 12, item 4).

The change goes through the REST API of one web process, the next gateway request through
another one (with Redis; the embedded defaults run one web process, which serves both). No
sleep in between: the event may not have arrived yet, and the configuration version the
spend script reports must make the second process reload the key on its own.
"""

import pytest
import requests

from apikeys.models import ApiKey, ProviderKey
from projects import services
from tests.reliability.conftest import send

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'


@pytest.fixture
def two_processes(gateway, live_gateway, processes):
    """(where the change is made, where the next request goes)."""
    if not live_gateway.env.get("REDIS_URL"):
        return gateway.url, gateway.url
    return gateway.url, processes.gateway(live_gateway.env, name="second").url


def _api(base: str, owner, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, f"{base}/api/v1{path}", json=body, timeout=10,
                            headers={"Authorization": f"Bearer {owner.token}"})


def _warm(url: str, token: str) -> None:
    for i in range(3):  # cached by the process, and by each of uvicorn's workers it reaches
        assert send(url, token, f"warm-{i}", BODY).status == 200


@pytest.fixture
def api_keys_project(project, own_openai_key):
    return services.project_update(project=project, mode="api-keys")


def test_a_deleted_api_key_stops_at_once_on_another_process(two_processes, owner, api_keys_project, key_for):
    changes_at, requests_at = two_processes
    token = key_for(api_keys_project)
    _warm(requests_at, token)
    key = ApiKey.objects.get(project=api_keys_project)

    assert _api(changes_at, owner, "DELETE", f"/api-keys/{key.pk}").status_code == 204
    answer = send(requests_at, token, "after-delete", BODY)

    assert (answer.status, answer.code) == (401, "invalid_api_key")


def test_a_disabled_api_key_stops_at_once_on_another_process(two_processes, owner, api_keys_project, key_for):
    changes_at, requests_at = two_processes
    token = key_for(api_keys_project)
    _warm(requests_at, token)
    key = ApiKey.objects.get(project=api_keys_project)

    assert _api(changes_at, owner, "PATCH", f"/api-keys/{key.pk}", {"status": "inactive"}).status_code == 200
    answer = send(requests_at, token, "after-disable", BODY)

    assert (answer.status, answer.code) == (401, "invalid_api_key")


def test_a_provider_key_just_added_serves_the_next_request(two_processes, owner, org, project, key_for):
    changes_at, requests_at = two_processes
    services.project_update(project=project, mode="api-keys")
    token = key_for(project)
    before = send(requests_at, token, "before-add", BODY)
    assert (before.status, before.code) == (400, "provider_key_missing")

    added = _api(changes_at, owner, "POST", "/provider-keys",
                 {"organizationId": org.pk, "provider": "openai", "token": "sk-just-added", "validate": False})
    assert added.status_code == 201
    answer = send(requests_at, token, "after-add", BODY)

    assert answer.status == 200, answer.text


def test_a_deleted_provider_key_stops_being_used_at_once(two_processes, owner, api_keys_project, key_for):
    changes_at, requests_at = two_processes
    token = key_for(api_keys_project)
    _warm(requests_at, token)
    provider_key = ProviderKey.objects.get(organization=api_keys_project.organization)

    assert _api(changes_at, owner, "DELETE", f"/provider-keys/{provider_key.pk}").status_code == 204
    answer = send(requests_at, token, "after-provider-delete", BODY)

    assert (answer.status, answer.code) == (400, "provider_key_missing")

