"""An organization's provider base URL is checked when used, not only when saved (issue 12,
item 12): the gateway connects only to the public addresses its resolver checked, so a name
that resolved to a public address when the key was saved and to a private one now (DNS
rebinding), or a private address stored some other way, is never called."""

import pytest

from apikeys import crypto
from apikeys.models import ProviderKey, mask
from projects import services
from tests.reliability.conftest import send

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_a_provider_key_pointing_at_a_private_address_is_never_called(processes, base_env, org, project, key_for,
                                                                      fake_upstream, host):
    services.project_update(project=project, mode="api-keys")
    # As it would stand after a rebinding: saved when the name was public, private now.
    ProviderKey.objects.create(organization=org, provider="openai", masked_token=mask("sk-own"),
                               encrypted_token=crypto.encrypt("sk-own"),
                               base_url=f"http://{host}:{fake_upstream.port}/openai/v1")
    gateway = processes.gateway(processes.env(base_env, ALLOW_PRIVATE_PROVIDER_URLS="false"))

    answer = send(gateway.url, key_for(project), "to-private", BODY)

    assert (answer.status, answer.code) == (502, "upstream_error")
    assert "private address" in answer.json()["error"]["message"]
    assert fake_upstream.calls == []


def test_the_operators_own_provider_urls_are_trusted(processes, base_env, org, project, key_for, fake_upstream):
    """OPENAI_BASE_URL is the operator's setting (here the fake on loopback): not checked."""
    services.project_update(project=project, mode="api-keys")
    ProviderKey.objects.create(organization=org, provider="openai", masked_token=mask("sk-own"),
                               encrypted_token=crypto.encrypt("sk-own"))
    gateway = processes.gateway(processes.env(base_env, ALLOW_PRIVATE_PROVIDER_URLS="false"))

    assert send(gateway.url, key_for(project), "to-operator-url", BODY).status == 200
