"""The Celery app. The beat schedule lives in code, here, in one place."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "expire-session-tokens": {"task": "projects.tasks.expire_session_tokens", "schedule": 3600.0},
}
