"""GET /metrics: the Prometheus text format, for every process at once, and the gateway's
side of the metrics (core/metrics.py defines them; docs/deploy.md lists them).

Served by the ASGI app itself (config/asgi.py), not through Django. Access: with
METRICS_TOKEN set, `Authorization: Bearer <token>` (compared in constant time; 401
otherwise); without it, loopback clients only, and never a request a proxy forwarded (403).

What a scrape shows:
- With PROMETHEUS_MULTIPROC_DIR set (bin/run: DATA_DIR/metrics/<role>, emptied before the
  role starts), the sum of every process's files: the web processes' and, when the worker
  runs on this host with the same DATA_DIR, the Celery worker's (every role directory under
  DATA_DIR/metrics is read). Without it, this process's own registry.
- Gauges computed now, by the process answering: the usage records not yet stored and the
  age of the oldest (the Redis stream's first entry, whose id is the time it was added, on
  Redis's clock; the process's own queue on the embedded defaults), and each provider's
  cool-down as this process sees it (gateway/health.py, shared through Redis).
"""

import asyncio
import atexit
import hmac
import ipaddress
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from core import metrics
from core.redis import async_client
from gateway import health, http, usagelog
from gateway.catalog import ALIASES, GENAI_PROVIDERS, Offer, model_ids
from gateway.providers import PROVIDERS
from gateway.record import USAGE_STREAM
from gateway.routing import Candidate
from gateway.store import INSUFFICIENT_CREDITS, PERIOD_LIMIT, USAGE_LIMIT
from gateway.upstream import UpstreamFailure

if TYPE_CHECKING:
    from gateway.chat import Exchange

log = logging.getLogger(__name__)

OTHER = "other"  # the model label of anything outside the catalog
REFUSALS = {USAGE_LIMIT: "usage_limit", PERIOD_LIMIT: "period_limit", INSUFFICIENT_CREDITS: "insufficient_credits"}
FORWARDED = (b"x-forwarded-for", b"forwarded", b"x-real-ip")
SCRAPE_REDIS_TIMEOUT = 2.0


# --- labels --------------------------------------------------------------------------------------


@cache
def _catalog_models() -> frozenset[str]:
    """Every model id the price database and our catalog know, for our providers: the model
    label's values (bounded whatever clients send)."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    ids = {*model_ids(), *(a.model for a in ALIASES)}
    for genai_id in GENAI_PROVIDERS.values():
        ids.update(m.id for m in snapshot.find_provider(None, genai_id, None).models)
    return frozenset(ids)


def model_label(provider: str, model: str, ids: Iterable[str] = ()) -> str:
    """A model as the metrics name it: its id when the catalog knows it (else the catalog id it
    answers to), `other` for a custom provider's or an unknown pinned model."""
    if provider == "custom" or not model:
        return OTHER if model else ""
    known = _catalog_models()
    if model in known:
        return model
    return min((i for i in ids if i in known), default=OTHER)


def provider_label(provider: str) -> str:
    """A built-in provider id; `custom` for every organization's own custom provider."""
    return provider if provider in PROVIDERS else "custom"


def _served(served: dict[str, Any] | Offer | None) -> tuple[str, str]:
    """(provider, model) labels of an answer: from the cache entry it replayed, from the offer
    that served it, or ("", "") when none was chosen."""
    if served is None:
        return "", ""
    if isinstance(served, dict):
        provider = provider_label(served["provider"])
        return provider, model_label(provider, served["model"])
    return served.provider, model_label(served.provider, served.model, served.ids)


# --- what the request path counts ------------------------------------------------------------------


# The request path only notes what happened (an append to a list); the metrics are updated
# from these notes at most FLUSH_SECONDS later, in one pass on the event loop (counters once per
# label set, however many requests), and at once before this process answers a scrape. A
# process that stops flushes what it noted (atexit).
FLUSH_SECONDS = 1.0
# (endpoint, status, what served it: cache entry or offer, duration, time to first token, cache status)
_requests: list[tuple[str, int, dict[str, Any] | Offer | None, float, float | None, str]] = []
_latencies: list[tuple[str, float]] = []
_flush_loop: asyncio.AbstractEventLoop | None = None  # where the next flush is scheduled
# The labelled series a request updates, by (endpoint, status, provider, model), and the
# upstream latency series by provider: looked up once per label set (bounded like the labels).
_request_series: dict[tuple[str, int, str, str], tuple[Any, Any, Any]] = {}
_upstream_series: dict[str, Any] = {}


def _noted() -> None:
    """Schedules the flush of what was just noted, unless one is coming on this event loop."""
    global _flush_loop
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop (a synchronous caller): now
        flush()
        return
    if _flush_loop is not loop:
        _flush_loop = loop
        loop.call_later(FLUSH_SECONDS, flush)


def flush() -> None:
    """Updates the metrics from the notes taken since the last flush."""
    global _flush_loop
    _flush_loop = None
    requests, latencies = _requests[:], _latencies[:]
    del _requests[:], _latencies[:]
    counts: Counter[Any] = Counter()
    for endpoint, status, served, duration, first_token, cache_status in requests:
        provider, model = _served(served)
        key = (endpoint, status, provider, model)
        series = _request_series.get(key)
        if series is None:
            series = _request_series[key] = (metrics.REQUESTS.labels(endpoint, str(status), provider, model),
                                             metrics.REQUEST_DURATION.labels(endpoint, provider),
                                             metrics.TIME_TO_FIRST_TOKEN.labels(endpoint, provider))
        counts[series[0]] += 1
        series[1].observe(duration)
        if first_token is not None:
            series[2].observe(first_token)
        if cache_status in ("hit", "miss"):
            counts[metrics.CACHE_LOOKUPS.labels(endpoint, cache_status)] += 1
    for counter, n in counts.items():
        counter.inc(n)
    for provider, seconds in latencies:
        latency = _upstream_series.get(provider)
        if latency is None:
            latency = _upstream_series[provider] = metrics.UPSTREAM_LATENCY.labels(provider)
        latency.observe(seconds)


atexit.register(flush)


def request_recorded(exchange: "Exchange") -> None:
    """One request, noted where its usage record is made (chat.conclude): once each."""
    first_byte_at, candidate = exchange.first_byte_at, exchange.candidate
    served = exchange.cached_entry if exchange.cached_entry is not None else candidate.offer if candidate else None
    _requests.append((exchange.endpoint, exchange.status, served, time.monotonic() - exchange.started,
                      None if first_byte_at is None else first_byte_at - exchange.started, exchange.cache_status))
    _noted()


def upstream_kind(failure: UpstreamFailure) -> str:
    """A failure's kind: timeout, connection, refused_address, rate_limited, auth,
    server_error, redirect, bad_request."""
    status = failure.status
    if status is None:
        if failure.error.code == "upstream_timeout":
            return "timeout"
        return "connection" if failure.unreachable else "refused_address"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server_error"
    return "redirect" if 300 <= status < 400 else "bad_request"


def upstream_called(candidate: Candidate, attempt: int, seconds: float, failure: UpstreamFailure | None) -> None:
    """One call to a provider (`attempt` 0 is the request's first): its latency to response
    headers when the provider answered, its failure's kind, and whether it was a fallback."""
    provider = candidate.offer.provider
    if attempt:
        metrics.FALLBACKS.labels(provider).inc()
    if failure is None or failure.status is not None:
        _latencies.append((provider, seconds))
        _noted()
    if failure is not None:
        metrics.UPSTREAM_ERRORS.labels(provider, upstream_kind(failure)).inc()


def reservation_refused(reason: int | str) -> None:
    """A reservation refused: the store's outcome (gateway/store.py), or `store_unavailable`."""
    metrics.RESERVATIONS_REFUSED.labels(REFUSALS.get(reason, str(reason)) if isinstance(reason, int) else reason).inc()


# --- the scrape ------------------------------------------------------------------------------------


def _directories() -> list[Path]:
    """The multiprocess directories to sum: PROMETHEUS_MULTIPROC_DIR and, when it is one of
    bin/run's role directories (DATA_DIR/metrics/<role>), the other roles' too."""
    own = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).resolve()
    root = (Path(settings.DATA_DIR) / "metrics").resolve()
    if own.parent == root and root.is_dir():
        return sorted(p for p in root.iterdir() if p.is_dir())
    return [own]


class _Collected:
    """What generate_latest reads: the processes' metrics, then the gauges computed now."""

    def __init__(self, gauges: list[Metric]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            files = [str(f) for d in _directories() for f in sorted(d.glob("*.db"))]
            yield from cast(Any, MultiProcessCollector).merge(files, accumulate=True)
        else:
            yield from REGISTRY.collect()
        yield from self.gauges


async def _ingestion() -> tuple[float, float] | None:
    """(records not yet stored, seconds since the oldest of them was queued), or None when
    Redis does not answer. Redis: entries leave the stream once their rows are committed
    (usage/stream.py), so its first entry is the oldest record not stored, and its id is the
    time it was added. Embedded: this process's own queue (gateway/usagelog.py)."""
    if not settings.REDIS_URL:
        return usagelog.pipeline().backlog()
    try:
        async with asyncio.timeout(SCRAPE_REDIS_TIMEOUT):
            pipe = async_client().pipeline(transaction=False)
            pipe.time()
            pipe.xlen(USAGE_STREAM)
            pipe.xrange(USAGE_STREAM, count=1)
            (seconds, micros), waiting, first = await pipe.execute()
    except Exception:
        log.warning("could not read the usage stream for /metrics", exc_info=True)
        return None
    if not first:
        return float(waiting), 0.0
    added_ms = int(cast(bytes, first[0][0]).split(b"-")[0])
    return float(waiting), max(0.0, int(seconds) + int(micros) / 1e6 - added_ms / 1000)


async def _gauges() -> list[Metric]:
    gauges: list[Metric] = []
    ingestion = await _ingestion()
    if ingestion is not None:
        waiting, lag = ingestion
        gauges.append(GaugeMetricFamily(metrics.PREFIX + "usage_records_waiting",
                                        "Usage records queued and not yet stored", value=waiting))
        gauges.append(GaugeMetricFamily(metrics.PREFIX + "usage_ingestion_lag_seconds",
                                        "Seconds since the oldest usage record not yet stored was queued (0: none)",
                                        value=lag))
    cooling = health.cooling_down()
    cooldowns = GaugeMetricFamily(metrics.PREFIX + "provider_cooldown_seconds",
                                  "Seconds left of a provider's cool-down (0: not cooling down)", labels=["provider"])
    for provider in sorted(p for p in PROVIDERS if p != "custom"):
        cooldowns.add_metric([provider], max(cooling.get(provider, 0.0), 0.0))
    gauges.append(cooldowns)
    return gauges


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _bearer(scope: http.Scope) -> str | None:
    value = http.header(scope, b"authorization")
    return value[7:].strip() if value and value[:7].lower() == "bearer " else None


def refusal(scope: http.Scope) -> tuple[int, str, dict[str, str]] | None:
    """Why this request may not read the metrics (status, message, headers), or None."""
    token = settings.METRICS_TOKEN
    if token:
        presented = _bearer(scope) or ""
        if hmac.compare_digest(presented.encode(), token.encode()):
            return None
        return 401, "Send 'Authorization: Bearer <METRICS_TOKEN>'.", {"www-authenticate": 'Bearer realm="metrics"'}
    client = (scope.get("client") or ("",))[0]
    forwarded = any(name in FORWARDED for name, _ in scope.get("headers", ()))
    if _loopback(client) and not forwarded:
        return None
    return 403, "Without METRICS_TOKEN, /metrics answers loopback clients only; set METRICS_TOKEN to scrape it remotely.", {}


async def _plain(send: http.Send, status: int, text: str, headers: dict[str, str] | None = None) -> None:
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": http.encode_headers(
        {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store", **(headers or {})})}
    await send(start)
    await send({"type": "http.response.body", "body": text.encode()})


async def app(scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
    """GET /metrics (ASGI)."""
    if scope["method"] not in ("GET", "HEAD"):
        return await _plain(send, 405, "Use GET for /metrics.\n", {"allow": "GET, HEAD"})
    refused = refusal(scope)
    if refused is not None:
        status, message, headers = refused
        return await _plain(send, status, message + "\n", headers)
    flush()  # this process's latest requests (the others flush theirs within FLUSH_SECONDS)
    collected = _Collected(await _gauges())
    body = await asyncio.to_thread(generate_latest, cast(Any, collected))  # reads files: off the event loop
    await send({"type": "http.response.start", "status": 200, "headers": http.encode_headers(
        # The classic text format every Prometheus reads (our names need none of 1.0.0's escaping).
        {"content-type": CONTENT_TYPE_PLAIN_0_0_4, "cache-control": "no-store"})})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
