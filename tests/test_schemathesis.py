"""Schemathesis generates requests from /api/schema/ for every operation: none may get a 500."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from config.wsgi import application
from projects import services

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def in_process_requests():
    """Requests served in this process share the test's database connection, as Django's
    test client arranges: closing it after each request would end the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def session_token(db, in_process_requests):
    user, org = services.user_signup(email="fuzz@example.com", password="a long enough password")
    services.project_create(organization=org, name="Fuzzed")
    token, _ = services.session_create(user=user)
    return token


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_500(case, session_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {session_token}"}, checks=[not_a_server_error])
