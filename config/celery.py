"""The Celery app. The beat schedule lives in code, here, in one place."""

import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import celeryd_init, setup_logging, task_prerun

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
    "expire-log-content": {"task": "usage.tasks.expire_log_content", "schedule": 3600.0},
}


@setup_logging.connect
def _project_logging(loglevel: int | None = None, **kwargs) -> None:
    """The worker and beat log as the web processes do (settings.LOGGING: LOG_FORMAT, the ids
    of the usage record a line is about), not in Celery's own format: with a receiver here
    Celery leaves logging alone. The level is LOG_LEVEL when it is set, else --loglevel."""
    from copy import deepcopy
    from logging.config import dictConfig

    from django.conf import settings

    config: dict[str, Any] = deepcopy(settings.LOGGING)
    if loglevel and not os.environ.get("LOG_LEVEL"):
        config["root"]["level"] = loglevel
    dictConfig(config)


@celeryd_init.connect
def _warnings_as_log_lines(**kwargs) -> None:
    """Python warnings the worker meets before Celery sets logging up (its own, about running
    as root) go out as log lines too, in LOG_FORMAT, not as text on stderr."""
    import logging

    logging.captureWarnings(True)


@task_prerun.connect
def _drop_stale_connections(task: Any = None, **kwargs) -> None:
    """A connection kept across tasks (CELERY_DB_REUSE_MAX) is dropped, as Django drops it
    between requests, when it is broken or older than CONN_MAX_AGE. Not for a task run
    eagerly, inside the caller's transaction."""
    from django.db import close_old_connections

    if not getattr(getattr(task, "request", None), "is_eager", False):
        close_old_connections()
