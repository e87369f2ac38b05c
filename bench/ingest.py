"""Usage ingestion on its own: how many usage rows one ingesting process stores per second.

    .venv/bin/python bench/ingest.py [records]       # 50,000 by default

Puts `records` usage records (as the gateway's settle script writes them: 10 keys of 2
projects, a quarter paid with credits) on the Redis stream of BENCH_REDIS_URL, then times
usage/stream.py's ingest_stream in this one process against the PostgreSQL database BENCH_DB,
with the production batch settings. The figure is the capacity model's "ingestion rows per
worker-second" (docs/deploy.md).
"""

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{os.environ.get('BENCH_DB', 'llmgateway_bench')}")
os.environ.setdefault("REDIS_URL", os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

import orjson  # noqa: E402
from django.core.management import call_command  # noqa: E402

from apikeys import services as keys  # noqa: E402
from core.ids import make_id  # noqa: E402
from core.redis import sync_client  # noqa: E402
from gateway.record import USAGE_STREAM, UsageRecord  # noqa: E402
from projects import services  # noqa: E402
from usage import stream  # noqa: E402
from usage.models import UsageLog  # noqa: E402
from usage.services import credits_add  # noqa: E402


def seed(count: int) -> list[str]:
    """`count` records on the stream; returns their project ids."""
    user, org = services.user_signup(email=f"ingest{time.time_ns()}@example.com", password="a long enough password")
    credits_add(organization=org, amount="1000000")
    projects = [services.project_create(organization=org, name=f"Ingest {n}", mode="api-keys") for n in range(2)]
    api_keys = [(p, keys.api_key_create(project=p, description=f"ingest {n}")[1]) for p in projects for n in range(5)]
    pipe = sync_client().pipeline(transaction=False)
    for n in range(count):
        project, key = api_keys[n % len(api_keys)]
        record = UsageRecord(
            id=make_id("log"), request_id=make_id("req"), project_id=project.id, organization_id=org.id,
            api_key_id=key.id, created_at=datetime.now(UTC).isoformat(), requested_model="openai/gpt-4o-mini",
            used_model="gpt-4o-mini", used_provider="openai", used_mode="credits" if n % 4 == 0 else "api-keys",
            paid_with_credits=n % 4 == 0, prompt_tokens=12, completion_tokens=8, total_tokens=20, cost="0.0000066",
            input_cost="0.0000018", output_cost="0.0000048", duration=3, time_to_first_token=3, finish_reason="stop",
        )
        pipe.xadd(USAGE_STREAM, {"r": orjson.dumps(record)})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return [p.id for p in projects]


def main(count: int = 50_000) -> None:
    call_command("migrate", verbosity=0)
    sync_client().delete(USAGE_STREAM)
    project_ids = seed(count)
    started = time.perf_counter()
    stored = 0
    while stored < count:
        stored += stream.ingest_stream(max_seconds=600)
    elapsed = time.perf_counter() - started
    rows = UsageLog.objects.filter(project_id__in=project_ids).count()
    print(f"{rows} rows of {count} records in {elapsed:.1f} s: {rows / elapsed:.0f} rows per second, one process "
          f"(batches of up to {django.conf.settings.USAGE_INGEST_BATCH})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
