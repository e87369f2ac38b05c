"""The Prometheus metrics every process updates (served at GET /metrics: gateway/metrics.py).

With PROMETHEUS_MULTIPROC_DIR set (bin/run sets it, under DATA_DIR, and empties it before
the processes start), prometheus-client keeps each process's values in memory-mapped files
in that directory, and /metrics sums the files of every web process and Celery worker; the
variable must be set before this module is first imported. Without it (tests, a bare
`uvicorn`), values live in this process's default registry and /metrics shows those alone.

An update is a dictionary lookup and a write into a mapped page. The gateway's request path
makes none of the per-request ones itself: it notes what happened and gateway/metrics.py
turns the notes into updates once a second (never anything per chunk of a stream). Labels are
bounded: endpoint, status code, provider (built-in ids, `custom` for every organization's
own), model (catalog ids, `other` for anything else), reasons and kinds from fixed lists.

Gauges computed when scraped (ingestion lag, records waiting, provider cool-downs) are in
gateway/metrics.py: they read Redis or the process's own state and need no file.
"""

from prometheus_client import Counter, Histogram

PREFIX = "llmgw_"

# Seconds: a request may stream for minutes; a time to first token is usually under 10 s.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

# --- requests (web processes; one per usage record, counted where chat.conclude builds it) ---

REQUESTS = Counter(
    PREFIX + "requests", "Gateway API requests, one per usage log row",
    ["endpoint", "status", "provider", "model"],
)
REQUEST_DURATION = Histogram(
    PREFIX + "request_duration_seconds", "Time from a request's arrival to its usage record (the log's duration)",
    ["endpoint", "provider"], buckets=DURATION_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    PREFIX + "time_to_first_token_seconds", "Time from a request's arrival to the first byte of its answer",
    ["endpoint", "provider"], buckets=FIRST_TOKEN_BUCKETS,
)
UPSTREAM_LATENCY = Histogram(
    PREFIX + "upstream_latency_seconds", "Time from sending a call to a provider to its response headers",
    ["provider"], buckets=UPSTREAM_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    PREFIX + "upstream_errors", "Calls to a provider that failed before their first byte, by kind",
    ["provider", "kind"],
)
FALLBACKS = Counter(
    PREFIX + "upstream_fallbacks", "Calls to a provider made after a request's first attempt failed",
    ["provider"],
)
RESERVATIONS_REFUSED = Counter(
    PREFIX + "reservations_refused", "Requests refused by the spend reservation, by reason",
    ["reason"],
)
RATE_LIMITED = Counter(
    PREFIX + "rate_limited", "Requests refused by a key's rate limit (rpm: requests, tpm: tokens)",
    ["limit"],
)
CACHE_LOOKUPS = Counter(
    PREFIX + "cache_lookups", "Response cache lookups of projects that cache, by result (hit, miss)",
    ["endpoint", "result"],
)

# --- the usage record pipeline -----------------------------------------------------------------

USAGE_QUEUED = Counter(
    PREFIX + "usage_records_queued", "Usage records put on their way to the database (the Redis stream, "
    "or the web process's own queue on the embedded defaults)",
)
USAGE_WRITTEN = Counter(PREFIX + "usage_records_written", "Usage records stored as usage log rows")
USAGE_SET_ASIDE = Counter(
    PREFIX + "usage_records_set_aside", "Usage records that could not be read or stored, kept as RejectedUsageRecord",
)
USAGE_DROPPED = Counter(
    PREFIX + "usage_records_dropped", "Usage records stored as no row: buffer_full (the embedded queue was full), "
    "project_deleted (billed, but the project is gone)",
    ["reason"],
)
