"""Members join by invitation: an email with a link that the invitee accepts while signed in
with that address. Nobody is added without consent, and inviting reveals nothing about
whether an address has an account."""

import re

from django.core import mail
from django.test import Client

from projects.models import Invitation, Membership
from tests.conftest import make_person


def _invite(admin, org, email="newcomer@example.com", role="developer"):
    response = admin.api.post(f"/api/v1/organizations/{org.id}/members", {"email": email, "role": role})
    assert response.status_code == 201, response.content
    return response.json()["invitation"]


def _emailed_link() -> str:
    return re.search(r"http://testserver/invitations/\S+/", mail.outbox[-1].body).group(0)


def test_the_invitee_gets_an_email_with_the_link_and_the_token_is_stored_hashed(org, admin, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the email goes once the invitation is stored
        invitation = _invite(admin, org)

    assert mail.outbox[-1].to == ["newcomer@example.com"]
    assert _emailed_link() == invitation["acceptUrl"]
    token = invitation["acceptUrl"].rstrip("/").rsplit("/", 1)[1]
    assert not Invitation.objects.filter(token_hash=token).exists()
    assert token not in str(list(Invitation.objects.values()))


def test_inviting_an_address_with_and_without_an_account_answers_alike(org, admin):
    make_person("has-account@example.com")

    known = _invite(admin, org, "has-account@example.com")
    unknown = _invite(admin, org, "no-account@example.com")

    assert set(known) == set(unknown) and known["status"] == unknown["status"] == "pending"


def test_accepting_in_the_dashboard_after_signing_up_joins_with_the_invited_role(org, admin):
    link = _invite(admin, org, role="admin")["acceptUrl"]
    path = link.removeprefix("http://testserver")
    browser = Client()

    page = browser.get(path)
    assert page.status_code == 200 and "Sign up as newcomer@example.com" in page.content.decode()
    browser.post("/signup/", {"email": "newcomer@example.com", "name": "New", "password": "a long enough password", "next": path})
    joined = browser.post(path)

    assert joined.status_code == 302 and joined["Location"] == f"/org/{org.pk}/"
    assert Membership.objects.get(organization=org, user__email="newcomer@example.com").role == "admin"
    assert browser.get(path).status_code == 404  # used


def test_someone_else_holding_the_link_cannot_accept_it(org, admin, outsider):
    token = _invite(admin, org)["acceptUrl"].rstrip("/").rsplit("/", 1)[1]

    response = outsider.api.post("/api/v1/invitations/accept", {"token": token})

    assert response.status_code == 403 and "sign in as newcomer@example.com" in response.json()["error"]["message"]
    assert not Membership.objects.filter(organization=org, user=outsider.user).exists()


def test_a_revoked_or_expired_invitation_cannot_be_used(org, admin, owner):
    invitee = make_person("newcomer@example.com")
    first = _invite(admin, org)
    token = first["acceptUrl"].rstrip("/").rsplit("/", 1)[1]
    assert admin.api.delete(f"/api/v1/organizations/{org.id}/invitations/{first['id']}").status_code == 204
    assert invitee.api.post("/api/v1/invitations/accept", {"token": token}).status_code == 404

    second = _invite(admin, org)
    Invitation.objects.filter(pk=second["id"]).update(expires_at="2000-01-01T00:00:00Z")
    token = second["acceptUrl"].rstrip("/").rsplit("/", 1)[1]
    assert invitee.api.post("/api/v1/invitations/accept", {"token": token}).status_code == 404


def test_only_owners_invite_owners(org, admin, owner):
    refused = admin.api.post(f"/api/v1/organizations/{org.id}/members", {"email": "x@example.com", "role": "owner"})

    assert refused.status_code == 403
    assert _invite(owner, org, "x@example.com", role="owner")["role"] == "owner"


def test_admins_list_pending_invitations(org, admin, developer):
    _invite(admin, org)

    listed = admin.api.get(f"/api/v1/organizations/{org.id}/invitations").json()["invitations"]

    assert [i["email"] for i in listed] == ["newcomer@example.com"]
    assert developer.api.get(f"/api/v1/organizations/{org.id}/invitations").status_code == 403
