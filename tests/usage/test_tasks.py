"""The Celery tasks, called as the worker calls them, each run twice to the same result."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core import mail

from apikeys import services as key_services
from apikeys.models import ApiKey
from core import tasks as core_tasks
from core.models import Event
from gateway import tasks as gateway_tasks
from gateway.cache import cache_key
from gateway.models import CachedResponse, CacheStats
from projects import services as project_services
from projects.models import Organization, Project
from tests.usage.test_ingest import record
from usage import services as usage_services
from usage import tasks
from usage.models import AlertNotice, DailyUsage
from usage.services import alert_create, credits_add, usage_ingest


def test_reconcile_repairs_drifted_key_usage_and_credits(project, api_key, org):
    credits_add(organization=org, amount="5")
    usage_ingest(records=[record(project, api_key, credits=True, cost="0.5")])
    ApiKey.objects.filter(pk=api_key.pk).update(usage=Decimal("9"))
    Organization.objects.filter(pk=org.pk).update(credits=Decimal("100"))
    first = tasks.reconcile_usage()
    second = tasks.reconcile_usage()
    api_key.refresh_from_db()
    org.refresh_from_db()
    assert api_key.usage == Decimal("0.5")
    assert (org.credits, org.credits_spent) == (Decimal("4.5"), Decimal("0.5"))
    assert first["keys"] == 1 and first["organizations"] == 1
    assert second == {"keys": 0, "organizations": 0, "enabled": 0}


def test_reconcile_disables_keys_at_their_limit_and_enables_raised_ones(project, api_key):
    usage_ingest(records=[record(project, api_key, cost="1")])
    ApiKey.objects.filter(pk=api_key.pk).update(usage_limit=Decimal("1"))
    tasks.reconcile_usage()
    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("inactive", "usage_limit")
    ApiKey.objects.filter(pk=api_key.pk).update(usage_limit=Decimal("2"))
    assert tasks.reconcile_usage()["enabled"] == 1
    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("active", None)


def test_reconcile_leaves_keys_disabled_by_hand_alone(project, api_key):
    ApiKey.objects.filter(pk=api_key.pk).update(status="inactive", disabled_reason="manual")
    tasks.reconcile_usage()
    api_key.refresh_from_db()
    assert api_key.disabled_reason == "manual"


def test_rebuilding_a_day_gives_the_same_rollups_as_ingestion(project, api_key):
    when = datetime(2026, 1, 15, 12, tzinfo=UTC).isoformat()
    usage_ingest(records=[record(project, api_key, created_at=when, duration=d) for d in (10, 200, 4000)])
    before = list(DailyUsage.objects.values())
    tasks.rebuild_rollups("2026-01-15")
    tasks.rebuild_rollups("2026-01-15")
    after = list(DailyUsage.objects.values())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "id"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)
    assert after[0]["requests"] == 3


def test_an_alert_fires_once_per_period_with_one_email(project, api_key, org, owner, admin, developer):
    alert_create(organization=org, threshold_usd="1", period="day")
    usage_ingest(records=[record(project, api_key, cost="0.6")])
    assert tasks.check_spend_alerts() == 0
    usage_ingest(records=[record(project, api_key, cost="0.6")])
    tasks.check_spend_alerts()
    tasks.check_spend_alerts()
    assert AlertNotice.objects.count() == 1
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["admin@example.com", "owner@example.com"]
    assert "1.20" in mail.outbox[0].body


def test_a_project_alert_counts_only_that_project(project, api_key, org):
    other = project_services.project_create(organization=org, name="Other")
    alert_create(organization=org, threshold_usd="1", period="month", project=other)
    usage_ingest(records=[record(project, api_key, cost="5")])
    tasks.check_spend_alerts()
    assert not AlertNotice.objects.exists()


def test_a_new_period_fires_again(project, api_key, org):
    alert_create(organization=org, threshold_usd="0.5", period="day")
    today = datetime.now(UTC).date()
    usage_ingest(records=[record(project, api_key, cost="1")])
    from usage.services import alerts_check

    alerts_check(today=today)
    yesterday_row = DailyUsage.objects.get()
    DailyUsage.objects.filter(pk=yesterday_row.pk).update(day=today + timedelta(days=1))
    alerts_check(today=today + timedelta(days=1))
    assert AlertNotice.objects.count() == 2


def _cached(project, version, expires_in=60) -> str:
    key = cache_key(project.id, version, b'{"model":"x"}' + str(expires_in).encode())
    CachedResponse.objects.create(
        key=key, project_id=project.id, value=b"{}", size=2,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )
    return key


def test_the_cache_sweep_removes_expired_stale_and_orphaned_entries_and_measures(project, org, settings):
    settings.REDIS_URL = ""
    project_services.project_update(project=project, caching_enabled=True)
    project.refresh_from_db()
    keep = _cached(project, project.cache_version)
    _cached(project, project.cache_version, expires_in=-1)
    _cached(project, project.cache_version - 1)
    gone = project_services.project_create(organization=org, name="Gone", caching_enabled=True)
    _cached(gone, gone.cache_version)
    project_services.project_delete(project=gone)
    assert gateway_tasks.expire_response_cache() == 3
    assert gateway_tasks.expire_response_cache() == 0
    assert list(CachedResponse.objects.values_list("key", flat=True)) == [keep]
    stats = CacheStats.objects.get(project=project)
    assert (stats.entries, stats.bytes) == (1, 2)


def test_old_events_are_purged(db):
    event = Event.objects.create(data={"kind": "config"})
    Event.objects.filter(pk=event.pk).update(created_at=datetime.now(UTC) - timedelta(hours=2))
    Event.objects.create(data={"kind": "config"})
    assert core_tasks.purge_events() == 1
    assert Event.objects.count() == 1


def test_the_beat_schedule_names_real_tasks():
    from config.celery import app

    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_yesterday_is_the_default_day_to_rebuild(project, api_key):
    yesterday = datetime.now(UTC) - timedelta(days=1)
    usage_ingest(records=[record(project, api_key, created_at=yesterday.isoformat())])
    DailyUsage.objects.all().delete()
    assert tasks.rebuild_rollups() == 1
    assert DailyUsage.objects.get().day == yesterday.date()
    assert isinstance(DailyUsage.objects.get().day, date)


def test_tasks_run_outside_a_transaction_as_the_worker_runs_them(transactional_db, project, api_key, org):
    usage_ingest(records=[record(project, api_key)])
    alert_create(organization=org, threshold_usd="0.0001", period="day")
    assert tasks.rebuild_rollups(datetime.now(UTC).date().isoformat()) == 1
    assert tasks.reconcile_usage()["keys"] == 0
    assert tasks.check_spend_alerts() == 1
    # With Redis this also sweeps entries other tests left there: any count, but no error.
    assert gateway_tasks.expire_response_cache() >= 0


def test_a_tenant_name_with_a_newline_never_stops_the_alerts_of_others(project, api_key, org, owner, outsider):
    # Stored before names were checked (or by hand): the mail header would refuse it.
    Project.objects.filter(pk=project.pk).update(name="Evil\r\nBcc: victim@example.com")
    alert_create(organization=org, threshold_usd="0.5", period="day", project=project)
    theirs = project_services.project_create(organization=outsider.organization, name="Innocent")
    their_key = key_services.api_key_create(project=theirs)[1]
    alert_create(organization=outsider.organization, threshold_usd="0.5", period="day")
    usage_ingest(records=[record(project, api_key, cost="1"), record(theirs, their_key, cost="1")])

    assert tasks.check_spend_alerts() == 2

    subjects = sorted(m.subject for m in mail.outbox)
    assert len(subjects) == 2 and all("\n" not in s and "\r" not in s for s in subjects)
    assert any("Evil Bcc: victim@example.com" in s for s in subjects)


def test_one_alert_failing_is_logged_and_the_others_still_fire(project, api_key, org, outsider, monkeypatch, caplog):
    theirs = project_services.project_create(organization=outsider.organization, name="Theirs")
    their_key = key_services.api_key_create(project=theirs)[1]
    alert_create(organization=org, threshold_usd="0.5", period="day")
    alert_create(organization=outsider.organization, threshold_usd="0.5", period="day")
    usage_ingest(records=[record(project, api_key, cost="1"), record(theirs, their_key, cost="1")])
    real = usage_services.spend_since

    def broken_for_one(*, organization_id, **kwargs):
        if organization_id == org.pk:
            raise ValueError("this tenant's data is broken")
        return real(organization_id=organization_id, **kwargs)

    monkeypatch.setattr(usage_services, "spend_since", broken_for_one)

    tasks.check_spend_alerts()

    assert [m.to for m in mail.outbox] == [["outsider@example.com"]]
    assert "spending alert failed" in caplog.text


def test_names_with_control_characters_are_refused_where_they_are_made(owner, org):
    response = owner.api.post("/api/v1/projects", {"name": "Two\nlines", "organizationId": org.pk})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"name": ["must be one line of text, without control characters"]}


def test_a_worker_keeps_its_database_connection_across_tasks(transactional_db):
    """Celery's Django fixup closes the connection around every task unless told how often
    to reuse it (CELERY_DB_REUSE_MAX): with it, one PostgreSQL session serves many batches."""
    from types import SimpleNamespace

    from celery.fixups.django import DjangoWorkerFixup
    from django.db import connection

    from config.celery import app

    fixup = DjangoWorkerFixup(app)
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection.ensure_connection()
    opened = connection.connection
    for _ in range(20):
        fixup.on_task_prerun(task)
        connection.ensure_connection()
        fixup.on_task_postrun(task)
    assert connection.connection is opened
