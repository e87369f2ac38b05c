"""Seeds 1,000,000 usage log rows in PostgreSQL and times GET /api/v1/logs and /api/v1/usage.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmgateway_bench .venv/bin/python bench/analytics.py

The rows spread over 30 days, 5 models and 4 keys of one project; the rollups are built by
the same code the nightly task runs. Timings go through the whole Django/DRF stack
in-process (no network), 30 calls each, after a warm-up.
"""

import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from projects import services  # noqa: E402
from usage.models import UsageLog  # noqa: E402
from usage.rollups import rebuild_day  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))


def seed():
    suffix = str(int(time.time()))
    user, org = services.user_signup(email=f"bench{suffix}@example.com", password="a long enough password")
    project = services.project_create(organization=org, name="Bench", caching_enabled=True)
    token, _ = services.session_create(user=user)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO usage_usagelog (id, request_id, project_id, api_key_id, created_at, requested_model,
                used_model, used_provider, used_mode, streamed, cached, prompt_tokens, completion_tokens,
                total_tokens, cost, input_cost, output_cost, fee, duration, time_to_first_token, finish_reason,
                status_code, has_error, error_message, canceled, cache_status, saved_cost)
            SELECT 'log_b' || %(suffix)s || g, 'req_' || g, %(project)s, 'key_bench' || (g %% 4),
                now() - (g %% 2592000) * interval '1 second',
                (ARRAY['gpt-4o-mini','gpt-4o','claude-3-5-haiku','gemini-2.5-flash','deepseek-chat'])[1 + g %% 5],
                (ARRAY['gpt-4o-mini','gpt-4o','claude-3-5-haiku','gemini-2.5-flash','deepseek-chat'])[1 + g %% 5],
                (ARRAY['openai','openai','anthropic','google-ai-studio','deepseek'])[1 + g %% 5],
                'credits', g %% 2 = 0, g %% 10 = 0, 100 + g %% 50, 20 + g %% 30, 120 + g %% 80,
                0.0001, 0.00006, 0.00004, 0.000005, 50 + g %% 2000, 30 + g %% 500, 'stop',
                CASE WHEN g %% 50 = 0 THEN 502 ELSE 200 END, g %% 50 = 0, '', false,
                CASE WHEN g %% 10 = 0 THEN 'hit' ELSE 'miss' END, CASE WHEN g %% 10 = 0 THEN 0.0001 ELSE 0 END
            FROM generate_series(1, %(rows)s) AS g
            """,
            {"suffix": suffix, "project": project.id, "rows": ROWS},
        )
        cursor.execute("ANALYZE usage_usagelog")
    today = timezone.now().date()
    for days_ago in range(31):
        rebuild_day(today - timedelta(days=days_ago))
    return project, token


def timed(client, path, params) -> list[float]:
    for _ in range(3):
        client.get(path, params)
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        response = client.get(path, params)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.content[:300]
    return samples


def main():
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL database")
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    project, token = seed()
    print(f"seeded {ROWS:,} rows and their rollups in {time.perf_counter() - started:.1f} s "
          f"({UsageLog.objects.filter(project=project).count():,} rows for the project)")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    cursor = client.get("/api/v1/logs", {"projectId": project.id, "limit": 100}).json()["nextCursor"]
    cases = [
        ("usage 30 days", "/api/v1/usage", {"projectId": project.id, "days": 30}),
        ("logs first page", "/api/v1/logs", {"projectId": project.id, "limit": 100}),
        ("logs next page", "/api/v1/logs", {"projectId": project.id, "limit": 100, "cursor": cursor}),
        ("logs by model", "/api/v1/logs", {"projectId": project.id, "model": "claude-3-5-haiku", "limit": 100}),
        ("logs errors only", "/api/v1/logs", {"projectId": project.id, "hasError": "true", "limit": 100}),
        ("logs by key", "/api/v1/logs", {"projectId": project.id, "apiKeyId": "key_bench1", "limit": 100}),
    ]
    lines = ["| endpoint | p50 ms | p95 ms | max ms |", "|---|---|---|---|"]
    for name, path, params in cases:
        samples = sorted(timed(client, path, params))
        lines.append(f"| {name} | {statistics.median(samples):.1f} | {samples[int(len(samples) * 0.95) - 1]:.1f} | {samples[-1]:.1f} |")
    report = "\n".join(lines)
    print(report)
    out = Path(__file__).parent / "results" / "analytics.md"
    out.write_text(f"{ROWS:,} log rows, PostgreSQL, in-process Django test client\n\n{report}\n")


if __name__ == "__main__":
    main()
