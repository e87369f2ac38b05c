"""The Celery app. The beat schedule lives in code, here, in one place."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # The gateway rings the ingester as it writes records; this reads what nobody rang for.
    "ingest-usage-stream": {"task": "usage.tasks.ingest_stream", "schedule": 5.0, "options": {"expires": 5}},
    "expire-spend-holds": {"task": "gateway.tasks.expire_holds", "schedule": 30.0},
    "reconcile-usage": {"task": "usage.tasks.reconcile_usage", "schedule": 300.0},
    "check-spend-alerts": {"task": "usage.tasks.check_spend_alerts", "schedule": 60.0},
    "rebuild-yesterdays-rollups": {"task": "usage.tasks.rebuild_rollups", "schedule": crontab(hour=0, minute=30)},
    "expire-response-cache": {"task": "gateway.tasks.expire_response_cache", "schedule": 60.0},
    "purge-events": {"task": "core.tasks.purge_events", "schedule": 600.0},
    "expire-session-tokens": {"task": "projects.tasks.expire_session_tokens", "schedule": 3600.0},
}
