"""Sign-in throttling on every path (the API, the dashboard, the admin) by django-axes, keyed
on the account and the client address together: a stranger guessing from elsewhere cannot
lock the account's owner out, and lock-outs show in the admin."""

from django.test import Client

from tests.conftest import Api

PASSWORD = "a long enough password"


def _from(address: str) -> Api:
    api = Api()
    api.client.defaults["REMOTE_ADDR"] = address
    return api


def _guess(api: Api, times: int = 10) -> None:
    for _ in range(times):
        api.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "guess"})


def test_a_stranger_guessing_from_elsewhere_does_not_lock_the_owner_out(owner):
    stranger, owners_laptop = _from("203.0.113.9"), _from("198.51.100.7")
    _guess(stranger)

    assert stranger.post("/api/v1/auth/login", {"email": "owner@example.com", "password": PASSWORD}).status_code == 429
    assert owners_laptop.post("/api/v1/auth/login", {"email": "owner@example.com", "password": PASSWORD}).status_code == 200


def test_the_dashboard_sign_in_is_throttled_and_says_so(owner):
    browser = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(10):
        browser.post("/login/", {"email": "owner@example.com", "password": "guess"})

    response = browser.post("/login/", {"email": "owner@example.com", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode() and int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in browser.session


def test_the_admin_sign_in_is_throttled_too(admin_user):
    browser = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(10):
        browser.post("/admin/login/", {"username": "admin@example.com", "password": "guess"})

    response = browser.post("/admin/login/?next=/admin/", {"username": admin_user.email, "password": "password"})

    assert response.status_code == 429
    assert not browser.get("/admin/").status_code == 200


def test_lockouts_are_listed_in_the_admin(owner, admin_client):
    _guess(_from("203.0.113.9"))

    page = admin_client.get("/admin/axes/accessattempt/").content.decode()

    assert "owner@example.com" in page and "203.0.113.9" in page
