"""Usage ingestion: rows exactly once, and key usage, credits and rollups moving with them."""

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from apikeys.models import ApiKey
from core.ids import make_id
from gateway.record import UsageRecord
from projects import services as project_services
from usage import tasks
from usage.models import CreditTransaction, DailyUsage, RejectedUsageRecord, UsageLog
from usage.services import credits_add, rejected_usage_retry, usage_ingest


def record(project, key, *, cost="0.001", credits=False, **overrides) -> UsageRecord:
    return UsageRecord(**{
        "id": make_id("log"), "request_id": make_id("req"), "project_id": project.id,
        "organization_id": project.organization_id, "api_key_id": key.id,
        "created_at": datetime.now(UTC).isoformat(), "requested_model": "gpt-4o-mini",
        "used_model": "gpt-4o-mini", "used_provider": "openai", "used_mode": "credits" if credits else "api-keys",
        "paid_with_credits": credits, "streamed": False, "cached": False, "prompt_tokens": 10,
        "completion_tokens": 5, "total_tokens": 15, "cost": cost, "input_cost": cost, "output_cost": "0",
        "fee": "0", "duration": 120, "time_to_first_token": 100, "finish_reason": "stop", "status_code": 200,
        "has_error": False, "error_message": "", "canceled": False, "cache_status": "", "saved_cost": "0",
        **overrides,
    })


def test_a_batch_becomes_rows_and_moves_key_usage(project, api_key):
    batch = [record(project, api_key) for _ in range(3)]
    assert usage_ingest(records=batch) == 3
    api_key.refresh_from_db()
    assert UsageLog.objects.filter(project=project).count() == 3
    assert api_key.usage == Decimal("0.003")


def test_the_same_batch_twice_stores_and_bills_once(project, api_key, org):
    credits_add(organization=org, amount="1")
    batch = [record(project, api_key, credits=True) for _ in range(4)]
    usage_ingest(records=batch)
    assert usage_ingest(records=batch) == 0
    org.refresh_from_db()
    api_key.refresh_from_db()
    assert UsageLog.objects.count() == 4
    assert api_key.usage == Decimal("0.004")
    assert org.credits == Decimal("0.996") and org.credits_spent == Decimal("0.004")
    debits = CreditTransaction.objects.filter(kind="usage")
    assert sum(d.amount for d in debits) == Decimal("-0.004")


def test_overlapping_batches_store_each_record_once(project, api_key):
    records = [record(project, api_key) for _ in range(6)]
    usage_ingest(records=records[:4])
    usage_ingest(records=records[2:])
    assert UsageLog.objects.count() == 6
    api_key.refresh_from_db()
    assert api_key.usage == Decimal("0.006")


def test_a_repeated_request_id_is_still_two_rows(project, api_key):
    first, second = record(project, api_key), record(project, api_key)
    second = dataclasses.replace(second, request_id=first.request_id)  # a client reusing x-request-id
    usage_ingest(records=[first, second])
    assert UsageLog.objects.filter(request_id=first.request_id).count() == 2


def test_a_deleted_projects_records_still_debit_credits_once(project, api_key, org):
    credits_add(organization=org, amount="1")
    batch = [record(project, api_key, credits=True, cost="0.25")]
    project_services.project_delete(project=project)
    usage_ingest(records=batch)
    usage_ingest(records=batch)
    org.refresh_from_db()
    assert org.credits == Decimal("0.75")
    assert not UsageLog.objects.exists()


def test_a_key_reaching_its_limit_is_disabled_for_usage_limit(project, api_key):
    ApiKey.objects.filter(pk=api_key.pk).update(usage_limit=Decimal("0.002"))
    usage_ingest(records=[record(project, api_key), record(project, api_key)])
    api_key.refresh_from_db()
    assert (api_key.status, api_key.disabled_reason) == ("inactive", "usage_limit")


def test_rollups_add_up_to_the_rows(project, api_key):
    usage_ingest(records=[record(project, api_key, duration=40), record(project, api_key, has_error=True, status_code=502, cost="0")])
    usage_ingest(records=[record(project, api_key, cache_status="hit", cost="0", saved_cost="0.001", cached=True)])
    row = DailyUsage.objects.get(project=project)
    assert (row.requests, row.errors, row.cache_hits, row.prompt_tokens) == (3, 1, 1, 30)
    assert row.cost == Decimal("0.001") and row.saved_cost == Decimal("0.001")
    assert sum(row.duration_histogram) == 3


@pytest.mark.parametrize("field", ["id", "project_id", "created_at"])
def test_a_record_missing_a_required_field_is_set_aside_and_the_rest_stored(project, api_key, field):
    bad = dataclasses.asdict(record(project, api_key))
    del bad[field]
    good = dataclasses.asdict(record(project, api_key))

    assert tasks.ingest_usage.run(orjson.dumps([good, bad]).decode()) == 1

    assert list(UsageLog.objects.values_list("id", flat=True)) == [good["id"]]
    (rejected,) = RejectedUsageRecord.objects.all()
    assert "unreadable record" in rejected.reason and field in rejected.reason


def test_a_record_the_database_refuses_is_set_aside_and_other_tenants_are_billed(project, api_key, org, outsider):
    """A NUL byte in a text field: PostgreSQL refuses it (SQLite stores it), so a record that
    got past the gateway's own cleaning must not block its batch."""
    from apikeys import services as key_services

    theirs = project_services.project_create(organization=outsider.organization, name="Theirs")
    their_key = key_services.api_key_create(project=theirs)[1]
    credits_add(organization=outsider.organization, amount="10")
    poison = dataclasses.asdict(record(project, api_key, requested_model="gpt-4o-mini\x00x", cost="1"))
    innocent = dataclasses.asdict(record(theirs, their_key, credits=True, cost="2"))

    tasks.ingest_usage.run(orjson.dumps([poison, innocent]).decode())

    assert UsageLog.objects.filter(id=innocent["id"]).exists()
    outsider.organization.refresh_from_db()
    assert outsider.organization.credits == Decimal("8")
    if not UsageLog.objects.filter(id=poison["id"]).exists():  # PostgreSQL
        (rejected,) = RejectedUsageRecord.objects.all()
        assert "\\u0000" in rejected.payload and "\x00" not in rejected.payload


def test_a_set_aside_record_is_ingested_again_once_fixed(project, api_key):
    good = record(project, api_key)
    rejected = RejectedUsageRecord.objects.create(payload=orjson.dumps(dataclasses.asdict(good)).decode(), reason="test")

    assert rejected_usage_retry(rejected=rejected) is True
    assert UsageLog.objects.filter(id=good.id).exists() and not RejectedUsageRecord.objects.exists()
