"""Health checks, the OpenAPI schema and its docs page (served without a CDN)."""

import re

from django.test import Client


def test_healthz_answers_without_a_database(client: Client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_cache_and_broker(client: Client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


def test_readyz_is_503_when_a_part_is_down(client: Client, db, monkeypatch):
    from core import health

    def broken():
        raise ConnectionError("down")

    monkeypatch.setitem(health.CHECKS, "cache", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"] == "error: ConnectionError"


def test_the_schema_documents_every_route(client: Client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/api/v1/projects", "/api/v1/projects/{project_id}", "/api/v1/api-keys/{key_id}/iam-rules",
                 "/api/v1/provider-keys", "/api/v1/organizations/{organization_id}/transactions", "/api/v1/logs"]:
        assert path in paths
    assert "ProjectIn" in str(response.json()["components"]["schemas"]) or "ProjectInRequest" in response.json()["components"]["schemas"]


def test_the_docs_page_loads_its_assets_from_this_server(client: Client, db):
    page = client.get("/api/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page loads nothing"
    assert all(s.startswith("/") and not s.startswith("//") for s in sources), sources
    for asset in sources:
        if asset.endswith(".js"):
            assert client.get(asset).status_code == 200, asset


def test_unknown_api_paths_answer_json_404(client: Client, db):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
