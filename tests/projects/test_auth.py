"""Signup, login, logout and `me` with session tokens."""

from datetime import timedelta

from django.utils import timezone

from core.hashing import sha256_hex
from projects.models import SessionToken, User
from tests.conftest import Api

SIGNUP = {"email": "Ada@Example.com", "password": "correct horse battery", "name": "Ada"}


def test_signup_creates_a_user_an_owned_organization_and_a_token(anonymous, db):
    response = anonymous.post("/api/v1/auth/signup", SIGNUP)
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == "ada@example.com" and body["user"]["id"].startswith("usr_")
    assert body["organization"]["id"].startswith("org_")
    assert body["organization"]["credits"] == "0.00"
    me = Api(body["token"]).get("/api/v1/me").json()
    assert me["organizations"] == [{"id": body["organization"]["id"], "name": body["organization"]["name"], "role": "owner"}]


def test_signup_stores_only_the_tokens_hash(anonymous, db):
    token = anonymous.post("/api/v1/auth/signup", SIGNUP).json()["token"]
    stored = SessionToken.objects.get()
    assert stored.token_hash == sha256_hex(token) and token not in stored.token_hash


def test_signup_refuses_a_taken_email_with_409(anonymous, db):
    anonymous.post("/api/v1/auth/signup", SIGNUP)
    response = anonymous.post("/api/v1/auth/signup", {**SIGNUP, "email": "ada@example.com"})
    assert response.status_code == 409
    assert User.objects.count() == 1


def test_signup_names_a_weak_password_and_a_bad_email(anonymous, db):
    weak = anonymous.post("/api/v1/auth/signup", {**SIGNUP, "password": "123"})
    assert weak.status_code == 400 and "password" in weak.json()["error"]["fields"]
    bad = anonymous.post("/api/v1/auth/signup", {**SIGNUP, "email": "not-an-email"})
    assert bad.status_code == 400 and "email" in bad.json()["error"]["fields"]
    assert not User.objects.exists()


def test_login_gives_a_working_token_with_its_expiry(anonymous, owner):
    response = anonymous.post("/api/v1/auth/login", {"email": "OWNER@example.com", "password": "a long enough password"})
    assert response.status_code == 200
    assert response.json()["expiresAt"].endswith("Z")
    assert Api(response.json()["token"]).get("/api/v1/me").json()["user"]["email"] == "owner@example.com"


def test_login_with_a_wrong_password_is_a_401(anonymous, owner):
    response = anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_logout_stops_the_presented_token_only(owner, anonymous):
    second = anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "a long enough password"})
    assert owner.api.post("/api/v1/auth/logout").status_code == 204
    assert owner.api.get("/api/v1/me").status_code == 401
    assert Api(second.json()["token"]).get("/api/v1/me").status_code == 200


def test_an_expired_token_is_refused(owner):
    SessionToken.objects.filter(user=owner.user).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = owner.api.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_an_api_key_is_not_a_session_token(api_key):
    assert Api(api_key.plaintext).get("/api/v1/me").status_code == 401


def test_malformed_json_is_a_400_not_a_500(anonymous, db):
    response = anonymous.client.post("/api/v1/auth/login", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_a_json_array_body_is_a_400_naming_the_body(anonymous, db):
    response = anonymous.post("/api/v1/auth/login", ["email"])
    assert response.status_code == 400
    assert "body" in response.json()["error"]["fields"]


def test_repeated_failed_logins_are_rate_limited_even_for_the_right_password(anonymous, owner):
    for _ in range(9):
        assert anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "wrong"}).status_code == 401
    tenth = anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "wrong"})
    response = anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "a long enough password"})
    assert tenth.status_code == 429
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited" and int(response["Retry-After"]) > 0


def test_a_successful_login_clears_the_failure_count(anonymous, owner):
    for _ in range(8):
        anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "wrong"})
    assert anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "a long enough password"}).status_code == 200
    for _ in range(8):
        anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "wrong"})
    assert anonymous.post("/api/v1/auth/login", {"email": "owner@example.com", "password": "a long enough password"}).status_code == 200
