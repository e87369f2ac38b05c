"""Shared fixtures: one organization with an owner, an admin and a developer, and an
outsider who owns another organization, so every test can check access."""

from dataclasses import dataclass, field

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apikeys import services as key_services
from projects import services
from projects.models import Membership


class Api:
    """A REST client acting as one user (or nobody), speaking JSON."""

    def __init__(self, token: str | None = None):
        self.client = APIClient()
        if token:
            self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def call(self, method: str, path: str, body=None, **query):
        if query:
            path = f"{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
        return getattr(self.client, method.lower())(path, body, format="json")

    def get(self, path, **query):
        return self.client.get(path, query or None)

    def post(self, path, body=None):
        return self.call("post", path, body)

    def patch(self, path, body=None):
        return self.call("patch", path, body)

    def delete(self, path):
        return self.call("delete", path)


@dataclass
class Person:
    user: object
    token: str
    api: Api = field(init=False)

    def __post_init__(self):
        self.api = Api(self.token)


def make_person(email: str, organization=None, role: str = Membership.Role.OWNER) -> Person:
    user, own_org = services.user_signup(email=email, password="a long enough password", name=email.split("@")[0])
    if organization is not None:
        services.member_add(organization=organization, email=email, role=role)
    token, _ = services.session_create(user=user)
    person = Person(user=user, token=token)
    person.organization = organization or own_org
    return person


@pytest.fixture(autouse=True)
def _fast_and_clean(settings):
    # Password hashing is slow by design; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")  # only the cache's own keys: Redis also holds the broker
    else:
        cache.clear()


@pytest.fixture
def owner(db):
    return make_person("owner@example.com")


@pytest.fixture
def org(owner):
    return owner.organization


@pytest.fixture
def admin(org):
    return make_person("admin@example.com", org, Membership.Role.ADMIN)


@pytest.fixture
def developer(org):
    return make_person("developer@example.com", org, Membership.Role.DEVELOPER)


@pytest.fixture
def outsider(db):
    """Owns an organization of their own and is in no other."""
    return make_person("outsider@example.com")


@pytest.fixture
def anonymous():
    return Api()


@pytest.fixture
def project(org):
    return services.project_create(organization=org, name="Production API")


@pytest.fixture
def api_key(project, owner):
    token, key = key_services.api_key_create(project=project, description="Production API Key", created_by=owner.user)
    key.plaintext = token
    return key
