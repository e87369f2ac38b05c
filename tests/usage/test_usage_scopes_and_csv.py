"""GET /api/v1/usage by organization and grouped, and GET /api/v1/logs as a streamed CSV
(docs/api.md §13–14)."""

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from rest_framework.fields import CharField

from apikeys import services as key_services
from core.money import format_money
from projects import services as project_services
from tests.usage.test_ingest import record
from usage import export
from usage.models import UsageLog
from usage.serializers import UsageLogOut
from usage.services import usage_ingest


@pytest.fixture
def staging(org, owner):
    """A second project of the organization, with a key of its own."""
    project = project_services.project_create(organization=org, name="Staging")
    _, key = key_services.api_key_create(project=project, description="Staging key", created_by=owner.user)
    return project, key


@pytest.fixture
def busy(project, api_key, staging, outsider):
    """Requests of two keys, three models, two providers and two projects of the
    organization, and one of another organization's that no sum may include."""
    other_key = key_services.api_key_create(project=project, description="Batch jobs")[1]
    staging_project, staging_key = staging
    usage_ingest(records=[
        record(project, api_key, cost="0.0123456789", prompt_tokens=100, completion_tokens=7),
        record(project, api_key, cost="0.5", used_model="claude-3-5-haiku", used_provider="anthropic", completion_tokens=40),
        record(project, other_key, cost="0.25", prompt_tokens=3),
        record(project, other_key, cost="0", has_error=True, status_code=502, used_model="", used_provider=""),
        record(staging_project, staging_key, cost="1.75", used_model="gemini-2.5-flash", used_provider="google-ai-studio"),
        record(staging_project, staging_key, cost="0.001"),
    ])
    theirs = project_services.project_create(organization=outsider.organization, name="Theirs")
    their_key = key_services.api_key_create(project=theirs, description="Their key")[1]
    usage_ingest(records=[record(theirs, their_key, cost="99")])


def _sums_of_logs(logs, column) -> dict:
    """What the groups must say, summed straight from the log rows."""
    sums: dict = defaultdict(lambda: {"requests": 0, "cost": Decimal(0), "promptTokens": 0, "completionTokens": 0})
    for log in logs:
        key = (log.used_model or log.requested_model) if column == "model" else getattr(log, column)
        sums[key]["requests"] += 1
        sums[key]["cost"] += log.cost
        sums[key]["promptTokens"] += log.prompt_tokens
        sums[key]["completionTokens"] += log.completion_tokens
    return {key: {**v, "cost": format_money(v["cost"])} for key, v in sums.items()}


COLUMNS = {"apiKey": "api_key_id", "model": "model", "project": "project_id", "provider": "used_provider"}


@pytest.mark.parametrize("group_by", list(COLUMNS))
@pytest.mark.parametrize("scope", ["projectId", "organizationId"])
def test_each_group_sums_exactly_its_logs(owner, org, project, busy, group_by, scope):
    scope_id = project.id if scope == "projectId" else org.id
    logs = UsageLog.objects.filter(project=project) if scope == "projectId" else UsageLog.objects.filter(project__organization=org)

    body = owner.api.get("/api/v1/usage", **{scope: scope_id, "groupBy": group_by, "days": 7}).json()

    groups = {g["key"]: {k: v for k, v in g.items() if k != "key"} for g in body["groups"]}
    assert groups == _sums_of_logs(logs, COLUMNS[group_by])
    assert sum(g["requests"] for g in body["groups"]) == body["summary"]["requests"] == logs.count()
    assert sum(Decimal(g["cost"]) for g in body["groups"]) == Decimal(body["summary"]["cost"])
    costs = [Decimal(g["cost"]) for g in body["groups"]]
    assert costs == sorted(costs, reverse=True)


def test_the_organization_covers_every_project_and_nothing_of_another(owner, org, project, staging, busy):
    body = owner.api.get("/api/v1/usage", organizationId=org.id, groupBy="project").json()

    assert body["summary"]["requests"] == 6
    assert body["summary"]["cost"] == "2.5133456789"
    assert {g["key"] for g in body["groups"]} == {project.id, staging[0].id}
    assert body["daily"][-1]["requests"] == 6 and len(body["daily"]) == 30
    assert {m["model"] for m in body["byModel"]} == {"gpt-4o-mini", "claude-3-5-haiku", "gemini-2.5-flash"}


def test_without_group_by_there_are_no_groups(owner, project, busy):
    assert "groups" not in owner.api.get("/api/v1/usage", projectId=project.id).json()


def test_an_organization_without_projects_has_zero_usage(outsider):
    body = outsider.api.get("/api/v1/usage", organizationId=outsider.organization.id, groupBy="model").json()
    assert body["summary"]["requests"] == 0 and body["groups"] == [] and body["byModel"] == []


@pytest.mark.parametrize("query,fields", [
    (lambda p, o: {"projectId": p, "groupBy": "user"}, {"groupBy"}),
    (lambda p, o: {"organizationId": o, "groupBy": ""}, {"groupBy"}),
    (lambda p, o: {"days": 7}, {"projectId", "organizationId"}),
    (lambda p, o: {"projectId": p, "organizationId": o}, {"projectId", "organizationId"}),
    (lambda p, o: {"organizationId": "org_\x00"}, {"organizationId"}),
], ids=["unknown groupBy", "empty groupBy", "neither id", "both ids", "a NUL"])
def test_bad_usage_queries_are_400_naming_the_parameter(owner, project, org, query, fields):
    response = owner.api.get("/api/v1/usage", **query(project.id, org.id))

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == fields


def test_logs_of_the_whole_organization(owner, org, project, staging, busy):
    body = owner.api.get("/api/v1/logs", organizationId=org.id, limit=100).json()
    assert len(body["logs"]) == 6 and {log["projectId"] for log in body["logs"]} == {project.id, staging[0].id}
    assert len(owner.api.get("/api/v1/logs", organizationId=org.id, model="gemini-2.5-flash").json()["logs"]) == 1


@pytest.mark.parametrize("query,fields", [
    (lambda p, o: {"projectId": p, "format": "xml"}, {"format"}),
    (lambda p, o: {"projectId": p, "organizationId": o, "format": "csv"}, {"projectId", "organizationId"}),
    (lambda p, o: {"format": "csv"}, {"projectId", "organizationId"}),
], ids=["unknown format", "both ids", "neither id"])
def test_bad_log_queries_are_400_naming_the_parameter(owner, project, org, query, fields):
    response = owner.api.get("/api/v1/logs", **query(project.id, org.id))

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert set(response.json()["error"]["fields"]) == fields


# --- CSV -----------------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.content[:300]
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body, newline="")))


def _at(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def test_csv_has_every_matching_row_not_one_page(owner, project, api_key):
    usage_ingest(records=[record(project, api_key, created_at=_at(i)) for i in range(130)]
                 + [record(project, api_key, has_error=True, status_code=500, created_at=_at(200 + i)) for i in range(7)])

    rows = _csv(owner.api.client.get("/api/v1/logs", {"projectId": project.id, "format": "csv"}))
    errors = _csv(owner.api.client.get("/api/v1/logs", {"projectId": project.id, "hasError": "false"}, HTTP_ACCEPT="text/csv"))

    assert rows[0] == list(UsageLogOut().fields) and rows[0][:3] == ["id", "requestId", "projectId"]
    assert len(rows) == 1 + 137
    assert len(errors) == 1 + 130
    assert len({row[0] for row in rows[1:]}) == 137
    times = [row[rows[0].index("createdAt")] for row in rows[1:]]
    assert times == sorted(times, reverse=True)  # newest first, like the pages


def test_csv_cells_are_the_jsons_values(owner, project, api_key):
    usage_ingest(records=[record(project, api_key, cost="0.0000045", time_to_first_token=None, streamed=True)])
    log = owner.api.get("/api/v1/logs", projectId=project.id).json()["logs"][0]

    header, row = _csv(owner.api.client.get("/api/v1/logs", {"projectId": project.id, "format": "csv"}))

    expected = {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in log.items()}
    assert dict(zip(header, row, strict=True)) == expected
    assert expected["cost"] == "0.0000045" and expected["streamed"] == "true" and expected["timeToFirstToken"] == ""


def test_csv_defuses_formulas_and_quotes_newlines_commas_and_quotes(owner, project, api_key):
    usage_ingest(records=[record(
        project, api_key, request_id="@SUM(1+1)", requested_model="-2+3", used_model="+cmd", user="=HYPERLINK(\"http://x\")",
        error_message='line one,\r\nline "two"\n=1+1', finish_reason="\tstop", has_error=True, status_code=400,
    )])

    header, row = _csv(owner.api.client.get("/api/v1/logs", {"projectId": project.id, "format": "csv"}))
    cell = dict(zip(header, row, strict=True))

    assert cell["requestId"] == "'@SUM(1+1)"
    assert cell["requestedModel"] == "'-2+3" and cell["usedModel"] == "'+cmd"
    assert cell["user"] == "'=HYPERLINK(\"http://x\")"
    assert cell["finishReason"] == "'\tstop"
    assert cell["errorMessage"] == 'line one,\r\nline "two"\n=1+1'  # quoted whole: one cell, not a formula


@pytest.mark.parametrize("value,cell", [
    ("a\x00b", "a\ufffdb"),  # NUL: many CSV readers refuse it
    ("\ud800x", "\ufffdx"),  # a lone surrogate cannot be UTF-8
    ("\uff1dcmd", "'\uff1dcmd"),  # a full-width equals sign
    ("\n=1", "'\n=1"),
    ("plain - text", "plain - text"),
])
def test_a_cell_is_text_a_reader_and_a_spreadsheet_take_as_it_is(value, cell):
    assert export._cell(CharField(), value) == cell


def test_csv_is_an_attachment_with_a_file_name(owner, project, api_key):
    usage_ingest(records=[record(project, api_key)])

    response = owner.api.client.get("/api/v1/logs", {"projectId": project.id}, HTTP_ACCEPT="text/csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8" and "Accept" in response["Vary"]
    disposition = response["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="usage-logs-{project.id}-') and disposition.endswith('.csv"')


def test_csv_of_the_organization_covers_its_projects(owner, org, project, staging, busy):
    header, *rows = _csv(owner.api.client.get("/api/v1/logs", {"organizationId": org.id, "format": "csv"}))
    assert len(rows) == 6
    assert {row[header.index("projectId")] for row in rows} == {project.id, staging[0].id}


def test_csv_of_nothing_is_the_header(owner, project):
    assert _csv(owner.api.client.get("/api/v1/logs", {"projectId": project.id, "format": "csv"})) == [list(UsageLogOut().fields)]


def test_an_error_asked_for_as_csv_is_the_apis_json(owner, anonymous, project):
    bad = owner.api.client.get("/api/v1/logs", {"projectId": project.id, "from": "yesterday"}, HTTP_ACCEPT="text/csv")
    unsigned = anonymous.client.get("/api/v1/logs", {"projectId": project.id, "format": "csv"})

    assert bad.status_code == 400 and bad["Content-Type"] == "application/json" and "from" in bad.json()["error"]["fields"]
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "not_authenticated"


def test_under_asgi_the_csv_is_pulled_chunk_by_chunk(owner, project, api_key):
    """Django reads a synchronous iterator whole before sending under ASGI (uvicorn): the
    export hands it an asynchronous one instead."""
    usage_ingest(records=[record(project, api_key) for _ in range(export.ROWS_PER_CHUNK + 20)])

    async def export_over_asgi():
        response = await AsyncClient().get("/api/v1/logs", {"projectId": project.id, "format": "csv"},
                                           headers={"Authorization": f"Bearer {owner.token}"})
        assert response.status_code == 200 and response.is_async, response.content
        return [chunk async for chunk in response.streaming_content]

    chunks = async_to_sync(export_over_asgi)()

    assert len(chunks) == 2
    assert b"".join(chunks).count(b"\r\n") == 1 + export.ROWS_PER_CHUNK + 20
