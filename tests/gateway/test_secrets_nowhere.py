"""A provider key and an API key in plaintext appear nowhere but the one response that
creates them: not in the database, not in a log line, not in any error body."""

import io
import subprocess

import requests
from django.core.management import call_command
from django.db import connection

from tests.gateway.conftest import eventually
from usage.models import UsageLog

PROVIDER_SECRET = "sk-live-Zq8TOP4SECRETprovider7731"


def _database_dump() -> str:
    if connection.vendor == "sqlite":
        return "\n".join(connection.connection.iterdump())
    db = connection.settings_dict
    return subprocess.run(
        ["pg_dump", "-h", db.get("HOST") or "127.0.0.1", "-U", db.get("USER") or "postgres", db["NAME"]],
        capture_output=True, text=True, check=True,
    ).stdout


def test_plaintext_keys_appear_only_in_their_creation_response(gateway, owner, org, project, fake_upstream):
    bodies = []

    def keep(response):
        bodies.append(response.content.decode(errors="replace"))
        return response

    created = keep(owner.api.post("/api/v1/api-keys", {"projectId": project.id, "usageLimit": "5"})).json()["apiKey"]
    api_token = created["token"]
    bodies.pop()  # the one response allowed to carry it
    keep(owner.api.post("/api/v1/provider-keys", {
        "organizationId": org.id, "provider": "openai", "token": PROVIDER_SECRET, "validate": False,
    }))
    keep(owner.api.get("/api/v1/provider-keys", organizationId=org.id))
    keep(owner.api.get(f"/api/v1/api-keys/{created['id']}"))
    keep(owner.api.post("/api/v1/provider-keys", {  # refused: the provider echoes the key back
        "organizationId": org.id, "provider": "anthropic", "token": PROVIDER_SECRET + "x", "validate": True,
    }))

    url = f"{gateway.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {api_token}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    keep(requests.post(url, json=body, headers=headers, timeout=10))
    fake_upstream.fail("status", provider="openai", status=401,
                       body={"error": {"message": f"Incorrect API key provided: {PROVIDER_SECRET}"}})
    keep(requests.post(url, json=body, headers=headers, timeout=10))
    fake_upstream.fail("status", provider="openai", status=500, body={"error": {"message": f"boom {PROVIDER_SECRET}"}})
    keep(requests.post(url, json=body, headers=headers, timeout=10))
    keep(requests.post(url, json={"model": "nope", "messages": []}, headers=headers, timeout=10))
    keep(requests.post(url, data="{not json", headers=headers, timeout=10))
    assert eventually(lambda: UsageLog.objects.filter(project=project).count() == 5)

    assert fake_upstream.calls[0].headers["authorization"] == f"Bearer {PROVIDER_SECRET}"  # it was used upstream
    logs = (gateway.data_dir / "server.log").read_text() + (gateway.data_dir / "worker.log").read_text()
    places = {"error and answer bodies": "\n".join(bodies), "server and worker logs": logs, "database": _database_dump()}
    for where, text in places.items():
        for secret in (api_token, PROVIDER_SECRET):
            assert secret not in text, f"a plaintext key is in the {where}"
            assert secret[-12:] not in text, f"part of a plaintext key is in the {where}"


def test_dumpdata_carries_no_plaintext(owner, org, project):
    created = owner.api.post("/api/v1/api-keys", {"projectId": project.id}).json()["apiKey"]
    owner.api.post("/api/v1/provider-keys", {"organizationId": org.id, "provider": "openai", "token": PROVIDER_SECRET, "validate": False})
    out = io.StringIO()
    call_command("dumpdata", "apikeys", stdout=out)
    assert created["token"] not in out.getvalue() and PROVIDER_SECRET not in out.getvalue()
