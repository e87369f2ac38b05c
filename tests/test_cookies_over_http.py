"""Signing in to the dashboard as a browser does, against a live server with DEBUG=false.

A browser keeps a `Secure` cookie only over HTTPS (loopback aside): with Secure cookies on a
site served over plain HTTP at a LAN address, every form fails its CSRF check. The client
here is the standard library's cookie jar, which applies the same rule (it never sends a
Secure cookie over http), and sends the `Host` and `Origin` a browser on
http://192.168.1.20:8000 would send.
"""

import http.cookiejar
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.fake_upstream import free_port
from tests.gateway.conftest import _database_url, _stop, _wait_until_up

ROOT = Path(__file__).resolve().parent.parent
UVICORN = str(Path(sys.executable).parent / "uvicorn")
LAN = "192.168.1.20:8000"
PASSWORD = "a long enough password"


class Browser:
    """A cookie-keeping client that presents itself as http://192.168.1.20:8000."""

    def __init__(self, base: str, host: str = LAN, scheme: str = "http"):
        self.base, self.host, self.scheme = base, host, scheme
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def open(self, path: str, form: dict | None = None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data)
        request.add_header("Host", self.host)
        if form is not None:
            request.add_header("Origin", f"{self.scheme}://{self.host}")
        try:
            response = self.opener.open(request, timeout=10)
        except urllib.error.HTTPError as e:
            response = e
        response.text = response.read().decode()
        return response


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _server(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("SECURE_COOKIES", "CSRF_TRUSTED_ORIGINS", "SECURE_SSL_REDIRECT")}
    env.update(DEBUG="false", DATA_DIR=str(tmp_path), DATABASE_URL=_database_url(), SECRET_KEY=settings.SECRET_KEY,
               ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS), DJANGO_SETTINGS_MODULE="config.settings", **extra)
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [UVICORN, "config.asgi:application", "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
         "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    _wait_until_up(f"http://127.0.0.1:{port}/healthz", process, "the web server")
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def live_server_with(transactional_db, tmp_path):
    started = []

    def start(**extra) -> str:
        process, base = _server(tmp_path, **extra)
        started.append(process)
        return base

    yield start
    for process in started:
        _stop(process)


def _form(browser: Browser, path: str, fields: dict):
    """Opens the page and sends its form, with the CSRF token the page carries."""
    page = browser.open(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return browser.open(path, {"csrfmiddlewaretoken": token, **fields})


def _sign_in(browser: Browser):
    # Signed up through the server itself: its password hashers are not the tests' fast ones.
    _form(Browser(browser.base), "/signup/", {"email": "owner@example.com", "name": "Owner", "password": PASSWORD})
    return _form(browser, "/login/", {"email": "owner@example.com", "password": PASSWORD})


def test_a_browser_signs_in_over_plain_http_at_a_lan_address(live_server_with):
    browser = Browser(live_server_with())

    answer = _sign_in(browser)

    assert answer.status == 302, answer.text[:500]
    assert "Secure" not in (answer.headers.get("Set-Cookie") or "")
    assert "sessionid" in {c.name for c in browser.jar}
    assert browser.open("/").status == 302  # signed in: home sends members on to their work


def test_with_secure_cookies_forced_on_plain_http_the_form_fails_with_a_page_saying_why(live_server_with):
    browser = Browser(live_server_with(SECURE_COOKIES="true"))

    answer = _sign_in(browser)

    assert answer.status == 403
    assert "The form could not be checked" in answer.text
    assert "SECURE_COOKIES" in answer.text and "https://" in answer.text
    assert 'href="/static/css/app.css"' in answer.text  # the dashboard's own styled page


def test_cookies_are_secure_when_the_site_is_configured_for_https(live_server_with):
    base = live_server_with(CSRF_TRUSTED_ORIGINS="https://gateway.example.com")

    page = urllib.request.urlopen(urllib.request.Request(base + "/login/", headers={"X-Forwarded-Proto": "https"}))

    cookies = page.headers.get_all("Set-Cookie")
    assert cookies and all("Secure" in c for c in cookies), cookies
