"""The organization switcher, creating an organization, and the Members page."""

from projects.models import Membership, Organization
from tests.conftest import make_person
from tests.dashboard.conftest import text


def test_the_switcher_lists_each_organization_of_the_user_with_the_role(developer, org, as_user):
    page = text(as_user(developer).get(f"/org/{org.pk}/"))

    own = developer.user.memberships.exclude(organization=org).get().organization
    assert f'href="/org/{org.pk}/" aria-current="true"' in page
    assert f'href="/org/{own.pk}/"' in page
    assert 'href="/org/new/"' in page


def test_creating_an_organization_makes_the_user_its_owner_and_opens_its_wizard(owner, as_user):
    response = as_user(owner).post("/org/new/", {"name": "Second Org"})

    created = Organization.objects.get(name="Second Org")
    assert Membership.objects.get(organization=created, user=owner.user).role == "owner"
    assert response["Location"] == f"/org/{created.pk}/projects/new/"


def test_creating_an_organization_through_htmx_redirects_the_whole_page(owner, as_user):
    response = as_user(owner).post("/org/new/", {"name": "Third Org"}, htmx=True)

    assert response["HX-Redirect"] == f"/org/{Organization.objects.get(name='Third Org').pk}/projects/new/"


def test_an_organization_needs_a_name_shown_in_place(owner, as_user):
    response = as_user(owner).post("/org/new/", {"name": "  "}, htmx=True)

    assert response.status_code == 400
    assert "This field is required." in text(response)
    assert "<html" not in text(response)  # only the form's partial


def test_the_members_page_lists_members_with_their_roles_for_every_teammate(owner, admin, developer, org, as_user):
    for person in (owner, admin, developer):
        page = text(as_user(person).get(f"/org/{org.pk}/"))
        assert "owner@example.com" in page and "admin@example.com" in page and "developer@example.com" in page


def test_admins_see_the_member_controls_and_developers_do_not(admin, developer, org, as_user):
    admin_page = text(as_user(admin).get(f"/org/{org.pk}/"))
    developer_page = text(as_user(developer).get(f"/org/{org.pk}/"))

    assert 'id="member-add"' in admin_page and "/members/add" in admin_page and "Remove" in admin_page
    assert 'id="member-add"' not in developer_page and "/role" not in developer_page
    assert ">Remove<" not in developer_page and "/rename" not in developer_page
    assert "Leave this organization" in developer_page  # anyone may leave


def test_only_owners_are_offered_the_owner_role(owner, admin, org, as_user):
    assert 'value="owner"' in text(as_user(owner).get(f"/org/{org.pk}/"))
    assert 'value="owner"' not in text(as_user(admin).get(f"/org/{org.pk}/"))


def test_an_admin_invites_a_member_by_email_and_sees_the_invitation_pending(admin, org, as_user):
    make_person("newcomer@example.com")

    response = as_user(admin).post(f"/org/{org.pk}/members/add", {"email": "newcomer@example.com", "role": "developer"}, htmx=True)

    assert response.status_code == 200
    assert "Invitation sent to newcomer@example.com." in text(response)
    assert 'id="invitations"' in text(response) and "newcomer@example.com" in text(response)
    assert not org.memberships.filter(user__email="newcomer@example.com").exists()  # not without consent


def test_inviting_someone_without_an_account_looks_the_same(admin, org, as_user):
    response = as_user(admin).post(f"/org/{org.pk}/members/add", {"email": "nobody@example.com", "role": "developer"}, htmx=True)

    assert response.status_code == 200
    assert "Invitation sent to nobody@example.com." in text(response)


def test_an_admin_changes_a_role_but_cannot_grant_owner(admin, developer, org, as_user):
    browser = as_user(admin)

    changed = browser.post(f"/org/{org.pk}/members/{developer.user.pk}/role", {"role": "admin"}, htmx=True)
    refused = browser.post(f"/org/{org.pk}/members/{developer.user.pk}/role", {"role": "owner"}, htmx=True)

    assert changed.status_code == 200 and "Role changed." in text(changed)
    assert refused.status_code == 400 and "only an owner can grant or remove the owner role" in text(refused)
    assert org.memberships.get(user=developer.user).role == "admin"


def test_an_admin_removes_a_developer(admin, developer, org, as_user):
    response = as_user(admin).post(f"/org/{org.pk}/members/{developer.user.pk}/remove", htmx=True)

    assert response.status_code == 200 and "developer@example.com was removed." in text(response)
    assert not org.memberships.filter(user=developer.user).exists()


def test_a_developer_leaves_but_cannot_remove_others(admin, developer, org, as_user):
    browser = as_user(developer)

    refused = browser.post(f"/org/{org.pk}/members/{admin.user.pk}/remove")
    promoted = browser.post(f"/org/{org.pk}/members/{developer.user.pk}/role", {"role": "admin"})
    left = browser.post(f"/org/{org.pk}/members/{developer.user.pk}/remove")

    assert refused.status_code == 403 and promoted.status_code == 403
    assert left.status_code == 302 and left["Location"] == "/"
    assert not org.memberships.filter(user=developer.user).exists()


def test_the_last_owner_cannot_leave_and_is_told_why(owner, org, as_user):
    response = as_user(owner).post(f"/org/{org.pk}/members/{owner.user.pk}/remove", htmx=True)

    assert response.status_code == 409
    assert "an organization needs at least one owner" in text(response)


def test_an_admin_renames_the_organization_and_a_developer_cannot(admin, developer, org, as_user):
    renamed = as_user(admin).post(f"/org/{org.pk}/rename", {"name": "Renamed Inc."})
    refused = as_user(developer).post(f"/org/{org.pk}/rename", {"name": "Nope"})

    org.refresh_from_db()
    assert renamed.status_code == 302 and org.name == "Renamed Inc."
    assert refused.status_code == 403


def test_outsiders_get_404_on_the_members_page_and_its_actions(outsider, developer, org, as_user):
    browser = as_user(outsider)

    assert browser.get(f"/org/{org.pk}/").status_code == 404
    assert browser.post(f"/org/{org.pk}/members/add", {"email": "outsider@example.com", "role": "owner"}).status_code == 404
    assert browser.post(f"/org/{org.pk}/members/{developer.user.pk}/role", {"role": "admin"}).status_code == 404
    assert browser.post(f"/org/{org.pk}/members/{developer.user.pk}/remove").status_code == 404
    assert browser.post(f"/org/{org.pk}/rename", {"name": "x"}).status_code == 404
    assert org.memberships.count() == 2
