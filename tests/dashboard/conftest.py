"""Dashboard pages through Django's test client, signed in with a session cookie like a
browser. `as_user(person)` gives a client for one member; `hx(...)` marks a request as
htmx's, which answers with the page's partial."""

import pytest
from django.test import Client

from gateway.record import UsageRecord

HTMX = {"HTTP_HX_REQUEST": "true"}


class Browser:
    """A signed-in user's client with short helpers."""

    def __init__(self, user=None):
        self.client = Client()
        if user is not None:
            self.client.force_login(user)

    def get(self, url, data=None, *, htmx=False):
        return self.client.get(url, data, **(HTMX if htmx else {}))

    def post(self, url, data=None, *, htmx=False):
        return self.client.post(url, data or {}, **(HTMX if htmx else {}))


@pytest.fixture
def as_user():
    def make(person_or_user):
        return Browser(getattr(person_or_user, "user", person_or_user))

    return make


@pytest.fixture
def visitor():
    return Browser()


def text(response) -> str:
    return response.content.decode()


def usage_record(project, api_key, *, when=None, **fields) -> UsageRecord:
    """One usage record as the gateway enqueues it (usage.services.usage_ingest stores it)."""
    import uuid

    from django.utils import timezone

    record = {
        "id": f"log_{uuid.uuid4().hex[:20]}", "request_id": uuid.uuid4().hex, "project_id": project.pk,
        "organization_id": project.organization_id, "api_key_id": api_key.pk,
        "created_at": (when or timezone.now()).isoformat(), "requested_model": "gpt-4o-mini", "used_model": "gpt-4o-mini",
        "used_provider": "openai", "used_mode": "api-keys", "streamed": False, "cached": False, "prompt_tokens": 10,
        "completion_tokens": 5, "total_tokens": 15, "cost": "0.0000045", "input_cost": "0.0000015",
        "output_cost": "0.000003", "fee": "0", "duration": 120, "time_to_first_token": None, "finish_reason": "stop",
        "status_code": 200, "has_error": False, "error_message": "", "canceled": False, "cache_status": "",
        "saved_cost": "0", "paid_with_credits": False,
    }
    record.update(fields)
    return UsageRecord(**record)


@pytest.fixture
def record_usage():
    """Stores usage records the way the gateway's worker does; returns their log ids."""
    from usage.services import usage_ingest

    def record(project, api_key, count: int = 1, **fields) -> list[str]:
        records = [usage_record(project, api_key, **fields) for _ in range(count)]
        usage_ingest(records=records)
        return [r.id for r in records]

    return record
