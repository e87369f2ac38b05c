"""The Celery app. The beat schedule lives in code, here, in one place."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Usage-log ingestion is not scheduled: the gateway sends each batch as a task.
    "reconcile-usage": {"task": "usage.tasks.reconcile_usage", "schedule": 300.0},
    "check-spend-alerts": {"task": "usage.tasks.check_spend_alerts", "schedule": 60.0},
    "rebuild-yesterdays-rollups": {"task": "usage.tasks.rebuild_rollups", "schedule": crontab(hour=0, minute=30)},
    "expire-response-cache": {"task": "gateway.tasks.expire_response_cache", "schedule": 60.0},
    "purge-events": {"task": "core.tasks.purge_events", "schedule": 600.0},
    "expire-session-tokens": {"task": "projects.tasks.expire_session_tokens", "schedule": 3600.0},
}
