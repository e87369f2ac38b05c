"""GET /api/v1/logs and GET /api/v1/usage."""

from datetime import UTC, datetime, timedelta

from tests.usage.test_ingest import record
from usage.services import usage_ingest


def _at(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def test_usage_sums_requests_cost_tokens_cache_and_errors(owner, project, api_key):
    usage_ingest(records=[
        record(project, api_key, cost="0.002", cache_status="miss", duration=100),
        record(project, api_key, cost="0", cached=True, cache_status="hit", saved_cost="0.002", duration=5),
        record(project, api_key, cost="0", has_error=True, status_code=502, duration=3000),
        record(project, api_key, cost="0.001", used_model="claude-3-5-haiku", used_provider="anthropic", duration=200),
    ])
    body = owner.api.get("/api/v1/usage", projectId=project.id, days=7).json()
    summary = body["summary"]
    assert summary["requests"] == 4
    assert summary["cost"] == "0.003"
    assert summary["promptTokens"] == 40 and summary["completionTokens"] == 20
    assert summary["cacheHitRate"] == 0.5
    assert summary["cacheSavings"] == "0.002"
    assert summary["errorRate"] == 0.25
    assert summary["p50Duration"] == 100 and summary["p95Duration"] == 3000
    assert len(body["daily"]) == 7 and body["daily"][-1]["requests"] == 4
    assert body["daily"][0]["requests"] == 0
    assert [m["model"] for m in body["byModel"]] == ["gpt-4o-mini", "claude-3-5-haiku"]


def test_usage_of_an_empty_project_is_zero_not_an_error(owner, project):
    summary = owner.api.get("/api/v1/usage", projectId=project.id).json()["summary"]
    assert summary["requests"] == 0 and summary["p50Duration"] is None and summary["cacheHitRate"] == 0.0


def test_usage_names_a_bad_days_value(owner, project):
    response = owner.api.get("/api/v1/usage", projectId=project.id, days=0)
    assert response.status_code == 400 and "days" in response.json()["error"]["fields"]


def test_logs_filter_by_key_model_provider_cached_errors_and_dates(owner, project, api_key):
    usage_ingest(records=[
        record(project, api_key, created_at=_at(50)),
        record(project, api_key, created_at=_at(40), used_model="gemini-2.5-flash", used_provider="google-ai-studio"),
        record(project, api_key, created_at=_at(30), cached=True, cache_status="hit", cost="0"),
        record(project, api_key, created_at=_at(20), has_error=True, status_code=504),
        record(project, api_key, created_at=_at(10), api_key_id="key_other"),
    ])

    def ids(**query):
        return len(owner.api.get("/api/v1/logs", projectId=project.id, **query).json()["logs"])

    assert ids() == 5
    assert ids(apiKeyId=api_key.id) == 4
    assert ids(model="gemini-2.5-flash") == 1
    assert ids(provider="google-ai-studio") == 1
    assert ids(cached="true") == 1
    assert ids(hasError="true") == 1 and ids(hasError="false") == 4
    assert ids(**{"from": _at(35)}) == 3
    assert ids(to=_at(35)) == 2


def test_a_log_carries_the_contracts_fields(owner, project, api_key):
    usage_ingest(records=[record(project, api_key)])
    log = owner.api.get("/api/v1/logs", projectId=project.id).json()["logs"][0]
    assert set(log) >= {
        "id", "requestId", "projectId", "apiKeyId", "createdAt", "requestedModel", "usedModel", "usedProvider",
        "usedMode", "streamed", "cached", "promptTokens", "completionTokens", "totalTokens", "cost", "inputCost",
        "outputCost", "fee", "duration", "timeToFirstToken", "finishReason", "statusCode", "hasError",
        "errorMessage", "canceled",
    }
    assert log["cost"] == "0.001" and log["id"].startswith("log_")


def test_cursor_pages_walk_every_row_once_even_while_rows_arrive(owner, project, api_key):
    usage_ingest(records=[record(project, api_key, created_at=_at(100 - i)) for i in range(7)])
    seen, cursor = [], None
    for page in range(10):
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = owner.api.get("/api/v1/logs", projectId=project.id, **query).json()
        seen += [log["id"] for log in body["logs"]]
        if page == 0:  # newer rows arrive mid-walk: they must not shift the pages
            usage_ingest(records=[record(project, api_key, created_at=_at(1)) for _ in range(2)])
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7


def test_logs_refuse_a_limit_over_100_and_a_forged_cursor(owner, project):
    assert owner.api.get("/api/v1/logs", projectId=project.id, limit=101).status_code == 400
    response = owner.api.get("/api/v1/logs", projectId=project.id, cursor="not-a-cursor")
    assert response.status_code == 400 and "cursor" in response.json()["error"]["fields"]


def test_logs_need_a_project_id(owner):
    response = owner.api.get("/api/v1/logs")
    assert response.status_code == 400 and "projectId" in response.json()["error"]["fields"]


def test_cache_savings_include_what_the_providers_prompt_cache_saved(owner, project, api_key):
    usage_ingest(records=[
        record(project, api_key, cost="0.001", cache_status="hit", cached=True, saved_cost="0.002"),
        record(project, api_key, cost="0.01", cached_tokens=10_000, saved_cost="0.027"),  # prompt cache read
    ])
    summary = owner.api.get("/api/v1/usage", projectId=project.id, days=7).json()["summary"]
    assert summary["cacheSavings"] == "0.029"
