"""Every query parameter of the routes that take them, fuzzed with the values that broke them
once (NUL bytes, far dates and offsets, crafted cursors) and whatever hypothesis makes up:
the answer is a 2xx, or a 4xx naming the parameter, never a 500. The REST API and the
dashboard's pages alike, on real objects, so the values reach the code that reads them."""

import base64

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_person
from tests.test_schemathesis import in_process_requests  # noqa: F401  (fixture)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


NASTY = st.sampled_from([
    "\x00", "a\x00b", "9999-12-31", "0001-01-01", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
    "2026-02-30", "-1", "1e309", "NaN", "true", "", " ", "null", "[]", "{}", "%00", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "x" * 300,
    _cursor("2026-01-01T00:00:00+23:59|log_abc"), _cursor("0001-01-01T00:00:00+23:59|log_abc"),
    _cursor("9999-12-31T23:59:59-23:59|log_abc"), _cursor("2026-01-01T00:00:00|log_abc"),
    _cursor("2026-01-01T00:00:00+00:00|log_\x00"), _cursor("not a time|x"), "!!!!", "====",
])
VALUES = st.one_of(NASTY, st.text(max_size=40), st.dates().map(str), st.datetimes().map(lambda d: d.isoformat()))


@pytest.fixture
def world(db, in_process_requests):
    owner = make_person("fuzzer@example.com")
    from projects import services

    project = services.project_create(organization=owner.organization, name="Fuzzed")
    browser = Client()
    browser.force_login(owner.user)
    return owner, project, browser


def _routes(owner, project) -> list[tuple[str, str, list[str]]]:
    """(client kind, path, the query parameters it reads)."""
    org = owner.organization.pk
    return [
        ("api", f"/api/v1/logs?projectId={project.pk}", ["apiKeyId", "model", "provider", "cached", "hasError", "from", "to", "cursor", "limit"]),
        ("api", f"/api/v1/organizations/{org}/transactions?", ["cursor", "limit"]),
        ("api", f"/api/v1/usage?projectId={project.pk}", ["days"]),
        ("api", "/api/v1/projects?", ["organizationId"]),
        ("api", "/api/v1/api-keys?", ["projectId"]),
        ("api", "/api/v1/provider-keys?", ["organizationId"]),
        ("page", f"/projects/{project.pk}/logs/?", ["key", "model", "provider", "cached", "errors", "date_from", "date_to", "cursor"]),
        ("page", f"/projects/{project.pk}/?", ["days"]),
        ("page", f"/org/{org}/billing/?", ["cursor"]),
        ("page", "/login/?", ["next"]),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_query_value_gets_a_500(world, data):
    owner, project, browser = world
    kind, path, params = data.draw(st.sampled_from(_routes(owner, project)))
    chosen = data.draw(st.dictionaries(st.sampled_from(params), VALUES, min_size=1, max_size=3))
    client = owner.api.client if kind == "api" else browser
    query = "&".join(f"{k}={_quote(v)}" for k, v in chosen.items())

    response = client.get(f"{path}&{query}" if not path.endswith("?") else f"{path}{query}")

    assert response.status_code < 500, (path, chosen, response.content[:300])
    if kind == "api" and response.status_code == 400:
        assert response.json()["error"]["fields"], response.content


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
