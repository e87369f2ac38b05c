"""The usage record crossing the Celery boundary is one explicit type whose fields are the
usage log's columns: a renamed column or field fails here, not silently in production."""

import dataclasses

import orjson
import pytest

from gateway.record import FIELD_NAMES, NOT_STORED, UsageRecord
from usage.models import UsageLog


def test_the_records_fields_are_the_usage_logs_columns_two_for_billing_and_the_content():
    columns = {f.attname for f in UsageLog._meta.concrete_fields}

    assert set(FIELD_NAMES) - NOT_STORED == columns
    assert NOT_STORED == {"organization_id", "paid_with_credits", "content"}  # content: usage.LogContent


def test_a_record_round_trips_through_the_json_the_gateway_sends():
    record = UsageRecord(id="log_1", request_id="req_1", project_id="proj_1", organization_id="org_1",
                         api_key_id="key_1", created_at="2026-11-30T12:00:00+00:00", cost="0.0000045",
                         time_to_first_token=12)

    (back,) = [UsageRecord.from_dict(d) for d in orjson.loads(orjson.dumps([record]))]

    assert back == record


def test_fields_a_newer_gateway_adds_are_ignored_and_a_missing_id_is_refused():
    data = dataclasses.asdict(UsageRecord(id="log_1", request_id="r", project_id="p", organization_id="o",
                                          api_key_id="k", created_at="2026-11-30T12:00:00+00:00"))

    assert UsageRecord.from_dict({**data, "reasoning_tokens": 7}).id == "log_1"
    del data["id"]
    with pytest.raises(TypeError):
        UsageRecord.from_dict(data)
    with pytest.raises(TypeError):
        UsageRecord.from_dict(["not", "an", "object"])
