"""GET /metrics: the Prometheus text format of what the gateway did, counted once per usage
record (requests = log rows), summed over every web process and the Celery worker in
multiprocess mode; METRICS_TOKEN, or loopback clients only."""

import asyncio
import time
from collections import Counter

import httpx
import orjson
import pytest
import redis.asyncio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from apikeys import services as key_services
from gateway import metrics, usagelog
from gateway.record import USAGE_STREAM
from projects import services as project_services
from tests.gateway.conftest import eventually
from tests.reliability.conftest import RedisServer, base_env, processes, redis_server  # noqa: F401  (fixtures)
from usage.models import UsageLog

HI = [{"role": "user", "content": "Hi"}]
TOKEN = "metrics-token-for-tests"


def scrape(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}/metrics", headers=headers, timeout=10)


def samples(text: str) -> Counter:
    """(sample name, sorted labels) → value, of a scrape."""
    found: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] += s.value
    return found


def total(found: Counter, name: str, **labels: str) -> float:
    """The sum of a sample's values over the label sets that include `labels`."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def delta(after: Counter, before: Counter, name: str) -> Counter:
    """Per label set, how much a sample grew."""
    grown = Counter()
    for (n, ls), v in after.items():
        if n == name and v - before.get((n, ls), 0):
            grown[dict(ls).get("endpoint"), dict(ls).get("status"), dict(ls).get("provider"), dict(ls).get("model")] += \
                v - before.get((n, ls), 0)
    return grown


def post(url: str, path: str, token: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=20, headers={"Authorization": f"Bearer {token}", **headers})


# --- a mixed run through the live gateway --------------------------------------------------------


def test_metrics_after_a_mixed_run_show_what_the_run_made(gateway, org, fake_upstream):
    for provider in ("openai", "anthropic"):
        key_services.provider_key_create(organization=org, provider=provider, token=f"sk-own-{provider}", validate=False)
    cached = project_services.project_create(organization=org, name="Cached", caching_enabled=True,
                                             cache_duration_seconds=60)
    plain = project_services.project_create(organization=org, name="Plain")
    token, _ = key_services.api_key_create(project=cached)
    poor, _ = key_services.api_key_create(project=plain, usage_limit="0.000001")
    slow, _ = key_services.api_key_create(project=plain, rate_limit_rpm=1)
    before = samples(scrape(gateway.url).text)

    chat = {"model": "gpt-4o-mini", "messages": HI}
    statuses = [
        post(gateway.url, "/v1/chat/completions", token, chat).status_code,  # a miss, stored
        post(gateway.url, "/v1/chat/completions", token, chat).status_code,  # a hit
        post(gateway.url, "/v1/chat/completions", token, {**chat, "stream": True}).status_code,  # a streamed miss
        post(gateway.url, "/v1/embeddings", token, {"model": "text-embedding-3-small", "input": "Hi"}).status_code,
        post(gateway.url, "/v1/chat/completions", poor, chat).status_code,  # refused by its usage limit
        post(gateway.url, "/v1/chat/completions", slow, chat).status_code,
        post(gateway.url, "/v1/chat/completions", slow, chat).status_code,  # over 1 request a minute
    ]
    fake_upstream.fail("status", provider="openai", status=500, times=1)
    statuses.append(post(gateway.url, "/v1/chat/completions", token, {**chat, "models": ["claude-haiku-4-5"]},
                         **{"x-no-cache": "true"}).status_code)  # openai fails, claude answers
    assert statuses == [200, 200, 200, 200, 402, 200, 429, 200]

    projects = [cached, plain]
    rows = eventually(lambda: (r := list(UsageLog.objects.filter(project__in=projects))) and len(r) >= 8 and r)
    after = samples(scrape(gateway.url).text)

    expected = Counter((r.endpoint, str(r.status_code), r.used_provider, r.used_model) for r in rows)
    assert delta(after, before, "llmgw_requests_total") == expected
    assert expected == Counter({
        ("chat.completions", "200", "openai", "gpt-4o-mini"): 4, ("chat.completions", "402", "", ""): 1,
        ("chat.completions", "429", "", ""): 1, ("chat.completions", "200", "anthropic", "claude-haiku-4-5"): 1,
        ("embeddings", "200", "openai", "text-embedding-3-small"): 1,
    })

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("llmgw_requests_total") == len(rows) == 8  # eight requests, eight rows
    assert grew("llmgw_request_duration_seconds_count") == len(rows)
    assert grew("llmgw_time_to_first_token_seconds_count") == sum(r.time_to_first_token is not None for r in rows)
    assert grew("llmgw_cache_lookups_total", result="hit") == sum(r.cache_status == "hit" for r in rows) == 1
    assert grew("llmgw_cache_lookups_total", result="miss") == sum(r.cache_status == "miss" for r in rows) == 3
    assert grew("llmgw_reservations_refused_total", reason="usage_limit") == 1
    assert grew("llmgw_rate_limited_total", limit="rpm") == 1 and grew("llmgw_rate_limited_total", limit="tpm") == 0
    assert grew("llmgw_upstream_errors_total", provider="openai", kind="server_error") == 1
    assert grew("llmgw_upstream_errors_total") == 1
    assert grew("llmgw_upstream_fallbacks_total", provider="anthropic") == grew("llmgw_upstream_fallbacks_total") == 1
    assert grew("llmgw_upstream_latency_seconds_count") == len(fake_upstream.calls) == 6  # every call answered
    assert grew("llmgw_usage_records_queued_total") == len(rows)
    text = scrape(gateway.url).text
    assert "llmgw_usage_ingestion_lag_seconds" in text and 'llmgw_provider_cooldown_seconds{provider="openai"}' in text


# --- access ------------------------------------------------------------------------------------------


def _scope(client: str = "127.0.0.1", method: str = "GET", headers: dict | None = None) -> dict:
    return {"type": "http", "method": method, "path": "/metrics", "client": (client, 40000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}


def _call(scope: dict) -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(metrics.app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("client", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_without_a_token_loopback_clients_may_scrape(settings, client):
    settings.METRICS_TOKEN = ""
    status, headers, body = _call(_scope(client))
    assert status == 200 and headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    assert b"llmgw_provider_cooldown_seconds" in body


@pytest.mark.parametrize("scope", [_scope("10.0.0.7"), _scope("203.0.113.9"), _scope("::ffff:10.0.0.1"),
                                   _scope("127.0.0.1", headers={"X-Forwarded-For": "203.0.113.9"}),
                                   _scope("127.0.0.1", headers={"Forwarded": "for=203.0.113.9"}),
                                   {**_scope(), "client": None}])
def test_without_a_token_anyone_else_is_refused(settings, scope):
    settings.METRICS_TOKEN = ""
    status, _, body = _call(scope)
    assert status == 403 and b"METRICS_TOKEN" in body


def test_with_a_token_it_is_required_from_everyone(settings):
    settings.METRICS_TOKEN = TOKEN
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}]:
        status, sent, _ = _call(_scope("127.0.0.1", headers=headers))
        assert status == 401 and sent[b"www-authenticate"].startswith(b"Bearer")
    assert _call(_scope("203.0.113.9", headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 200
    assert _call(_scope("127.0.0.1", headers={"Authorization": f"bearer {TOKEN}"}))[0] == 200
    assert _call(_scope("127.0.0.1", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 405


# --- the ingestion lag ---------------------------------------------------------------------------------


def test_the_embedded_queue_gives_the_records_waiting_and_the_age_of_the_oldest(settings, monkeypatch):
    settings.REDIS_URL = ""
    queue = usagelog.UsagePipeline()
    monkeypatch.setattr(usagelog, "_pipeline", queue)
    assert asyncio.run(metrics._ingestion()) == (0.0, 0.0)
    queue.sink(b"{}")
    time.sleep(0.2)
    queue.sink(b"{}")
    waiting, lag = asyncio.run(metrics._ingestion())
    assert waiting == 2 and 0.2 <= lag < 5
    del queue.pending[:1], queue.queued_at[:1]  # the oldest stored
    assert asyncio.run(metrics._ingestion())[1] < 0.2


def test_the_redis_stream_gives_the_records_waiting_and_the_age_of_the_oldest(settings, monkeypatch, redis_server):
    settings.REDIS_URL = redis_server.url
    monkeypatch.setattr(metrics, "async_client", lambda: redis.asyncio.Redis.from_url(redis_server.url))
    assert asyncio.run(metrics._ingestion()) == (0.0, 0.0)
    seconds, micros = redis_server.client().time()
    added = (seconds * 1000 + micros // 1000) - 7000  # a record queued 7 s ago, on Redis's clock
    redis_server.client().xadd(USAGE_STREAM, {"r": "{}"}, id=f"{added}-0")
    redis_server.client().xadd(USAGE_STREAM, {"r": "{}"})
    waiting, lag = asyncio.run(metrics._ingestion())
    assert waiting == 2 and 7 <= lag < 9
    redis_server.stop()
    assert asyncio.run(metrics._ingestion()) is None  # Redis away: the gauges are left out, the scrape answers


# --- several processes ---------------------------------------------------------------------------------


def test_one_scrape_sums_every_gateway_process_and_the_worker(processes, base_env, org, fake_upstream):
    """Two gateway processes and a Celery worker as bin/run starts them (DATA_DIR/metrics/<role>)."""
    redis_server = RedisServer().start()
    try:
        web, worker = (processes.directory / "metrics" / "web"), (processes.directory / "metrics" / "worker")
        web.mkdir(parents=True), worker.mkdir(parents=True)
        env = processes.env(base_env, REDIS_URL=redis_server.url, CELERY_BROKER_URL=redis_server.url,
                            METRICS_TOKEN=TOKEN, GATEWAY_COOLDOWN_FAILURES="1", GATEWAY_COOLDOWN_SECONDS="120")
        processes.worker({**env, "PROMETHEUS_MULTIPROC_DIR": str(worker)})
        first, second = (processes.gateway({**env, "PROMETHEUS_MULTIPROC_DIR": str(web)}, f"gateway-{n}") for n in (1, 2))
        key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai", validate=False)
        key_services.provider_key_create(organization=org, provider="anthropic", token="sk-own-anth", validate=False)
        project = project_services.project_create(organization=org, name="Two processes")
        token, _ = key_services.api_key_create(project=project)
        chat = {"model": "gpt-4o-mini", "messages": HI}

        assert [post(first.url, "/v1/chat/completions", token, chat).status_code for _ in range(3)] == [200] * 3
        assert post(second.url, "/v1/chat/completions", token, chat).status_code == 200
        fake_upstream.fail("status", provider="openai", status=503, times=1)  # one failure: openai cools down
        assert post(second.url, "/v1/chat/completions", token, {**chat, "models": ["claude-haiku-4-5"]}).status_code == 200

        assert scrape(first.url).status_code == 401 and scrape(first.url, "wrong").status_code == 401

        def settled() -> Counter | None:
            found = samples(scrape(first.url, TOKEN).text)
            done = (total(found, "llmgw_usage_records_written_total") == 5
                    and total(found, "llmgw_usage_records_waiting") == 0
                    and total(found, "llmgw_provider_cooldown_seconds", provider="openai") > 0)
            return found if done else None

        found = eventually(settled, timeout=20, interval=0.2)
        assert found, scrape(first.url, TOKEN).text
        assert UsageLog.objects.filter(project=project).count() == 5
        assert total(found, "llmgw_requests_total") == 5  # 3 served by the first process, 2 by the second
        assert total(found, "llmgw_requests_total", provider="openai", status="200") == 4
        assert total(found, "llmgw_requests_total", provider="anthropic", model="claude-haiku-4-5") == 1
        assert total(found, "llmgw_usage_records_queued_total") == 5
        assert total(found, "llmgw_upstream_errors_total", provider="openai", kind="server_error") == 1
        assert total(found, "llmgw_usage_records_set_aside_total") == 0
        assert total(found, "llmgw_usage_ingestion_lag_seconds") == 0
        assert 0 < total(found, "llmgw_provider_cooldown_seconds", provider="openai") <= 120
        assert total(found, "llmgw_provider_cooldown_seconds", provider="anthropic") == 0
        again = samples(scrape(second.url, TOKEN).text)  # the other process's scrape: the same sums
        assert total(again, "llmgw_requests_total") == 5 and total(again, "llmgw_usage_records_written_total") == 5
        assert len({f.name for f in web.glob("counter_*.db")}) == 2  # one file per gateway process
        assert list(worker.glob("counter_*.db"))
    finally:
        processes.stop()
        redis_server.stop()


def test_a_record_that_cannot_be_stored_is_counted_as_set_aside(db):
    from usage import services as usage_services

    def set_aside() -> float:
        return REGISTRY.get_sample_value("llmgw_usage_records_set_aside_total") or 0.0

    before = set_aside()
    assert usage_services.usage_ingest_payloads([b"not json", orjson.dumps({"id": "log_x"})]) == 0
    assert set_aside() - before == 2


def test_a_reservation_the_store_cannot_check_is_counted_as_refused(monkeypatch):
    from gateway import chat
    from gateway.errors import GatewayError
    from gateway.store import Account

    class Away:
        async def reserve(self, *args):
            raise ConnectionError("Redis is away")

    def refused() -> float:
        return REGISTRY.get_sample_value("llmgw_reservations_refused_total", {"reason": "store_unavailable"}) or 0.0

    monkeypatch.setattr(chat, "get_store", Away)
    before = refused()
    account = Account(key_id="key_x", key_limit=10**9, key_usage=0, org_id="org_x", org_credited=None, org_spent=0)
    with pytest.raises(GatewayError) as error:
        asyncio.run(chat._reserve(chat.Exchange(snapshot=None, request_id="req_x"), account, 1000))  # type: ignore[arg-type]
    assert error.value.status == 503 and refused() - before == 1


def test_requests_are_noted_on_the_request_path_and_counted_within_a_second_or_at_a_scrape(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 0.2)
    labels = {"endpoint": "responses", "status": "418", "provider": "", "model": ""}

    def counted() -> float:
        return REGISTRY.get_sample_value("llmgw_requests_total", labels) or 0.0

    def exchange():
        return SimpleNamespace(endpoint="responses", status=418, cached_entry=None, candidate=None,
                               started=time.monotonic(), first_byte_at=None, cache_status="")

    async def run() -> list[float]:
        seen = [counted()]
        metrics.request_recorded(exchange())
        seen.append(counted())  # noted, not counted yet
        await asyncio.sleep(0.3)
        seen.append(counted())  # flushed by the event loop
        metrics.request_recorded(exchange())
        metrics.flush()  # what a scrape does first
        seen.append(counted())
        metrics.request_recorded(exchange())  # its flush is scheduled on a loop about to close
        return seen

    before, noted, flushed, scraped = asyncio.run(run())
    assert (noted - before, flushed - before, scraped - before) == (0, 1, 2)
    assert asyncio.run(run())[2] - scraped == 2  # a new loop: the last note and its own, flushed there
