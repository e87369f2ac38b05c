"""Browser applications and a key's own state: CORS preflights on every /v1 route answer 204
for the allowed origins, answers carry the CORS headers, and GET /v1/key tells a key what it
has spent and has left."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from apikeys import services as key_services
from core import periods
from gateway import cors
from tests.gateway.conftest import eventually
from usage.models import UsageLog

HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/v1/models/gpt-4o-mini", "/v1/key"])
def test_a_preflight_on_any_v1_route_is_a_204_with_the_cors_headers(gateway, path):
    response = httpx.options(f"{gateway.url}{path}", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"  # CORS_ALLOWED_ORIGINS defaults to *
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert "access-control-allow-credentials" not in response.headers  # API keys, never cookies


def test_an_answer_to_a_browser_carries_the_cors_headers_and_exposes_the_gateways(gateway, org, project, key_for, fake_upstream):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI},
                          headers={"Authorization": f"Bearer {key_for(project)}", "Origin": "https://app.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "x-gateway-cost" in response.headers["access-control-expose-headers"]


def test_only_listed_origins_are_allowed(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    scope = {"headers": [(b"origin", b"https://app.example")]}
    assert cors.allowed_origin(scope) == "https://app.example"
    assert cors.allowed_origin({"headers": [(b"origin", b"https://evil.example")]}) is None
    assert cors.allowed_origin({"headers": []}) is None


def test_the_key_endpoint_tells_a_key_its_limit_usage_and_what_remains(gateway, org, project, fake_upstream):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
    token, key = key_services.api_key_create(project=project, usage_limit="1")
    fake_upstream.usage = (1000, 500)
    httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI, "max_tokens": 500},
               headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    eventually(lambda: UsageLog.objects.filter(project=project).exists())

    data = httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    spent = (Decimal(1000) * Decimal("0.15") + Decimal(500) * Decimal("0.6")) / 1_000_000
    assert (data["id"], data["projectId"], data["usageLimit"]) == (key.id, project.id, "1.00")
    assert (Decimal(data["usage"]), Decimal(data["remaining"])) == (spent, 1 - spent)
    assert data["expiresAt"] is None and data["rateLimitRpm"] is None


def test_the_key_endpoint_tells_a_key_its_window_rate_limits_and_expiry(gateway, org, project, fake_upstream):
    key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
    expires = datetime.now(UTC) + timedelta(days=3)
    token, key = key_services.api_key_create(project=project, period_usage_limit="2", period_usage_duration="week",
                                             rate_limit_rpm=100, expires_at=expires)
    fake_upstream.usage = (1000, 500)
    httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI, "max_tokens": 500},
               headers={"Authorization": f"Bearer {token}"}).raise_for_status()

    data = httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    spent = (Decimal(1000) * Decimal("0.15") + Decimal(500) * Decimal("0.6")) / 1_000_000
    assert (data["periodUsageLimit"], data["periodUsageDuration"], Decimal(data["periodUsage"])) == ("2.00", "week", spent)
    assert data["periodResetsAt"] == periods.window("week")[1].isoformat()
    assert (data["rateLimitRpm"], data["rateLimitTpm"], data["expiresAt"]) == (100, None, expires.isoformat())


def test_the_key_endpoint_refuses_an_unknown_key(gateway):
    response = httpx.get(f"{gateway.url}/v1/key", headers={"Authorization": "Bearer llmgw_nope"})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_api_key")
