"""Production settings: secrets are required, cookies are safe, `check --deploy` is clean."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env}, timeout=60)


SETUP = "import django; django.setup(); from django.conf import settings as s; "


def test_check_deploy_is_clean_with_debug_off():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DEBUG": "false", "DATA_DIR": tempfile.mkdtemp()},
    )
    assert result.returncode == 0, result.stdout + result.stderr


COOKIES = "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE)"


@pytest.mark.parametrize(
    ("environment", "secure"),
    [
        ({}, "False"),  # auto, nothing says HTTPS: plain HTTP on any host must sign in
        ({"CSRF_TRUSTED_ORIGINS": "https://gateway.example.com"}, "True"),
        ({"CSRF_TRUSTED_ORIGINS": "https://gateway.example.com,http://10.0.0.5:8000"}, "False"),  # not all https
        ({"SECURE_SSL_REDIRECT": "true"}, "True"),
        ({"SECURE_COOKIES": "true"}, "True"),
        ({"SECURE_COOKIES": "false", "SECURE_SSL_REDIRECT": "true"}, "False"),
    ],
)
def test_secure_cookies_auto_follows_the_https_configuration(environment, secure):
    result = _run(SETUP + COOKIES, DEBUG="false", DATA_DIR=tempfile.mkdtemp(), **environment)

    assert result.stdout.split() == [secure, secure, "True", "Lax"], result.stderr


def test_a_bad_secure_cookies_value_names_the_setting():
    result = _run(SETUP, DATA_DIR=tempfile.mkdtemp(), SECURE_COOKIES="sometimes")

    assert result.returncode != 0 and "SECURE_COOKIES must be auto, true or false" in result.stderr


def test_behind_a_tls_proxy_x_forwarded_proto_marks_requests_secure():
    result = _run(SETUP + "print(s.SECURE_PROXY_SSL_HEADER[0])", DEBUG="false", DATA_DIR=tempfile.mkdtemp())

    assert result.stdout.strip() == "HTTP_X_FORWARDED_PROTO", result.stderr


def test_more_than_one_web_process_without_redis_refuses_to_start_naming_both_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "REDIS_URL"}, "WEB_CONCURRENCY": "2",
             "DATA_DIR": tempfile.mkdtemp()},
    )

    assert result.returncode != 0
    assert "WEB_CONCURRENCY=2 needs REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr  # one line naming the settings, not a stack


def test_it_refuses_to_start_without_secrets_it_cannot_generate():
    blocker = Path(tempfile.mkdtemp()) / "a-file"
    blocker.write_text("")
    result = _run(SETUP, DEBUG="false", DATA_DIR=str(blocker / "data"))
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr
    with_secret = _run(SETUP, DEBUG="false", DATA_DIR=str(blocker / "data"), SECRET_KEY="x" * 60)
    assert with_secret.returncode != 0 and "ENCRYPTION_KEYS" in with_secret.stderr


def test_https_answers_carry_hsts(client, db):
    response = client.get("/healthz", secure=True)
    assert "max-age=" in response.get("Strict-Transport-Security", "")
