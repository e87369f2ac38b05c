"""Production settings: secrets are required, cookies are safe, `check --deploy` is clean."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "gateway.settings", **env}, timeout=60)


SETUP = "import django; django.setup(); from django.conf import settings as s; "


def test_check_deploy_is_clean_with_debug_off():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DEBUG": "false", "DATA_DIR": tempfile.mkdtemp()},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cookies_are_secure_httponly_and_samesite_when_debug_is_off():
    result = _run(SETUP + "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
                  "s.SESSION_COOKIE_SAMESITE, s.SECURE_PROXY_SSL_HEADER[0])", DEBUG="false", DATA_DIR=tempfile.mkdtemp())
    assert result.stdout.split() == ["True", "True", "True", "Lax", "HTTP_X_FORWARDED_PROTO"], result.stderr


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
