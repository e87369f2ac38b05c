"""Organizations and their members with roles."""

from projects import services
from projects.models import Membership, Organization, Project


def test_a_user_creates_an_organization_and_owns_it(outsider):
    response = outsider.api.post("/api/v1/organizations", {"name": "Second"})
    assert response.status_code == 201
    organization = response.json()["organization"]
    assert list(organization) == ["id", "name", "credits", "projectLimit", "status", "createdAt", "updatedAt"]
    roles = {o["id"]: o["role"] for o in outsider.api.get("/api/v1/me").json()["organizations"]}
    assert roles[organization["id"]] == "owner"


def test_the_list_shows_only_the_callers_organizations(owner, outsider):
    ids = [o["id"] for o in owner.api.get("/api/v1/organizations").json()["organizations"]]
    assert ids == [owner.organization.id]


def test_admins_rename_developers_cannot(org, admin, developer):
    assert developer.api.patch(f"/api/v1/organizations/{org.id}", {"name": "x"}).status_code == 403
    assert admin.api.patch(f"/api/v1/organizations/{org.id}", {"name": "Renamed"}).json()["organization"]["name"] == "Renamed"


def test_credits_and_limits_cannot_be_patched(owner, org):
    response = owner.api.patch(f"/api/v1/organizations/{org.id}", {"credits": "1000000", "projectLimit": 99})
    assert response.status_code == 400
    org.refresh_from_db()
    assert org.credits == 0 and org.project_limit is None


def test_only_owners_delete_an_organization_and_its_projects_go_with_it(org, admin, owner, project):
    assert admin.api.delete(f"/api/v1/organizations/{org.id}").status_code == 403
    assert owner.api.delete(f"/api/v1/organizations/{org.id}").status_code == 204
    assert not Organization.objects.filter(pk=org.id).exists()
    assert not Project.objects.filter(pk=project.id).exists()


def test_admins_invite_and_the_invitee_joins_on_accepting(org, admin, outsider):
    response = admin.api.post(f"/api/v1/organizations/{org.id}/members", {"email": "outsider@example.com", "role": "developer"})
    assert response.status_code == 201
    invitation = response.json()["invitation"]
    assert (invitation["role"], invitation["status"]) == ("developer", "pending")
    assert outsider.api.get(f"/api/v1/organizations/{org.id}").status_code == 404  # not before accepting

    token = invitation["acceptUrl"].rstrip("/").rsplit("/", 1)[1]
    accepted = outsider.api.post("/api/v1/invitations/accept", {"token": token})

    assert accepted.status_code == 200 and accepted.json()["member"]["role"] == "developer"
    assert outsider.api.get(f"/api/v1/organizations/{org.id}").status_code == 200


def test_inviting_a_member_twice_is_refused(org, admin, developer):
    again = admin.api.post(f"/api/v1/organizations/{org.id}/members", {"email": "developer@example.com", "role": "admin"})
    assert again.status_code == 409


def test_developers_cannot_manage_members(org, developer, outsider):
    response = developer.api.post(f"/api/v1/organizations/{org.id}/members", {"email": "outsider@example.com", "role": "developer"})
    assert response.status_code == 403
    assert developer.api.get(f"/api/v1/organizations/{org.id}/members").status_code == 200


def test_only_owners_grant_the_owner_role(org, admin, owner, developer):
    path = f"/api/v1/organizations/{org.id}/members/{developer.user.id}"
    assert admin.api.patch(path, {"role": "owner"}).status_code == 403
    assert owner.api.patch(path, {"role": "owner"}).json()["member"]["role"] == "owner"


def test_an_organization_keeps_at_least_one_owner(org, owner):
    path = f"/api/v1/organizations/{org.id}/members/{owner.user.id}"
    assert owner.api.patch(path, {"role": "admin"}).status_code == 409
    assert owner.api.delete(path).status_code == 409
    assert Membership.objects.get(organization=org, user=owner.user).role == "owner"


def test_a_member_can_leave_and_admins_remove_developers(org, admin, developer):
    assert developer.api.delete(f"/api/v1/organizations/{org.id}/members/{developer.user.id}").status_code == 204
    services.member_add(organization=org, email="developer@example.com", role="developer")
    assert admin.api.delete(f"/api/v1/organizations/{org.id}/members/{developer.user.id}").status_code == 204
    assert not Membership.objects.filter(organization=org, user=developer.user).exists()


def test_developers_cannot_remove_others(org, developer, admin):
    assert developer.api.delete(f"/api/v1/organizations/{org.id}/members/{admin.user.id}").status_code == 403


def test_an_unknown_role_is_a_400_naming_role(org, owner, developer):
    response = owner.api.patch(f"/api/v1/organizations/{org.id}/members/{developer.user.id}", {"role": "superuser"})
    assert response.status_code == 400 and "role" in response.json()["error"]["fields"]
