"""A key's recurring limit, expiry and rate limits, and rolling its token: the REST API and
the dashboard through the same services, the windows as core/periods.py cuts them, each bad
value a 400 naming its field."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apikeys import services as key_services
from apikeys.models import ApiKey
from core import periods
from core.hashing import sha256_hex
from usage.models import UsageLog

# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("duration", "now", "start", "end"), [
    ("hour", "2026-12-31T23:59:59", "2026-12-31T23:00:00", "2027-01-01T00:00:00"),
    ("day", "2026-12-01T00:00:00", "2026-12-01T00:00:00", "2026-12-02T00:00:00"),
    ("week", "2026-12-06T23:59:00", "2026-11-30T00:00:00", "2026-12-07T00:00:00"),  # Sunday → Monday's week
    ("week", "2026-11-30T00:00:00", "2026-11-30T00:00:00", "2026-12-07T00:00:00"),
    ("month", "2026-12-31T12:00:00", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
    ("month", "2028-02-29T12:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
])
def test_windows_are_aligned_to_utc(duration, now, start, end):
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert periods.window(duration, at) == (datetime.fromisoformat(start).replace(tzinfo=UTC),
                                            datetime.fromisoformat(end).replace(tzinfo=UTC))


@given(st.sampled_from(periods.DURATIONS), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                                                         timezones=st.just(UTC)))
def test_every_moment_lies_in_exactly_one_window_and_the_next_starts_where_it_ends(duration, at):
    start, end = periods.window(duration, at)
    assert start <= at < end
    assert periods.window(duration, end)[0] == end and periods.window(duration, end - timedelta(microseconds=1)) == (start, end)


# --- REST --------------------------------------------------------------------------------------


def test_a_key_is_created_with_every_limit_and_shows_its_window(owner, project):
    expires = "2030-01-01T00:00:00Z"
    response = owner.api.post("/api/v1/api-keys", {
        "projectId": project.id, "periodUsageLimit": "5", "periodUsageDuration": "day", "expiresAt": expires,
        "rateLimitRpm": 60, "rateLimitTpm": 100000})
    assert response.status_code == 201, response.json()
    key = response.json()["apiKey"]
    assert (key["periodUsageLimit"], key["periodUsageDuration"], key["periodUsage"]) == ("5.00", "day", "0.00")
    assert key["periodResetsAt"] == periods.window("day")[1].isoformat().replace("+00:00", "Z")
    assert (key["expiresAt"], key["rateLimitRpm"], key["rateLimitTpm"]) == (expires, 60, 100000)


def test_the_period_usage_counts_only_the_current_window(owner, project):
    _, key = key_services.api_key_create(project=project, period_usage_limit="10", period_usage_duration="hour")
    start, _ = periods.window("hour")
    for created, cost in ((start - timedelta(seconds=1), "3"), (start, "1.25"), (start + timedelta(minutes=5), "0.5")):
        UsageLog.objects.create(project=project, api_key_id=key.id, request_id="r", cost=Decimal(cost),
                                requested_model="m", created_at=created)
    shown = owner.api.get(f"/api/v1/api-keys/{key.id}").json()["apiKey"]
    assert shown["periodUsage"] == "1.75"


@pytest.mark.parametrize(("body", "field"), [
    ({"periodUsageLimit": "5"}, "periodUsageDuration"),
    ({"periodUsageLimit": "-1", "periodUsageDuration": "day"}, "periodUsageLimit"),
    ({"periodUsageLimit": "5", "periodUsageDuration": "year"}, "periodUsageDuration"),
    ({"expiresAt": "tomorrow"}, "expiresAt"),
    ({"rateLimitRpm": 0}, "rateLimitRpm"),
    ({"rateLimitTpm": "many"}, "rateLimitTpm"),
])
def test_a_bad_limit_is_a_400_naming_its_field(owner, project, api_key, body, field):
    created = owner.api.post("/api/v1/api-keys", {"projectId": project.id, **body})
    patched = owner.api.patch(f"/api/v1/api-keys/{api_key.id}", body)
    for response in (created, patched):
        assert response.status_code == 400, response.json()
        assert field in str(response.json()), response.json()


def test_limits_are_cleared_with_null(owner, project):
    _, key = key_services.api_key_create(project=project, period_usage_limit="5", period_usage_duration="week",
                                         rate_limit_rpm=10)
    response = owner.api.patch(f"/api/v1/api-keys/{key.id}", {
        "periodUsageLimit": None, "periodUsageDuration": None, "rateLimitRpm": None})
    shown = response.json()["apiKey"]
    assert (shown["periodUsageLimit"], shown["periodUsage"], shown["periodResetsAt"], shown["rateLimitRpm"]) == \
        (None, None, None, None)


def test_an_expired_key_shows_it(owner, project):
    _, key = key_services.api_key_create(project=project, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    shown = owner.api.get(f"/api/v1/api-keys/{key.id}").json()["apiKey"]
    assert (shown["status"], shown["disabledReason"]) == ("inactive", "expired")


def test_rolling_gives_a_new_token_once_and_keeps_the_key(owner, project):
    old, key = key_services.api_key_create(project=project, description="backend", usage_limit="7")
    response = owner.api.post(f"/api/v1/api-keys/{key.id}/roll", {"graceSeconds": 600})
    assert response.status_code == 201, response.json()
    rolled = response.json()["apiKey"]
    assert rolled["id"] == key.id and rolled["token"].startswith("llmgw_") and rolled["token"] != old
    assert (rolled["description"], rolled["usageLimit"]) == ("backend", "7.00")
    key.refresh_from_db()
    assert key.token_hash == sha256_hex(rolled["token"]) and key.previous_token_hash == sha256_hex(old)
    assert 590 < (key.previous_token_expires_at - datetime.now(UTC)).total_seconds() <= 600
    assert "token" not in owner.api.get(f"/api/v1/api-keys/{key.id}").json()["apiKey"]


@pytest.mark.parametrize("grace", [-1, 86401, "soon"])
def test_a_bad_grace_is_a_400_naming_it(owner, api_key, grace):
    response = owner.api.post(f"/api/v1/api-keys/{api_key.id}/roll", {"graceSeconds": grace})
    assert response.status_code == 400 and "graceSeconds" in str(response.json())


def test_an_outsider_cannot_roll_a_key(outsider, api_key):
    response = outsider.api.post(f"/api/v1/api-keys/{api_key.id}/roll", {})
    assert response.status_code == 404
    assert ApiKey.objects.get(pk=api_key.pk).previous_token_hash is None
