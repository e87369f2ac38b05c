"""Sign up, log in, log out, and where the home page takes each kind of visitor."""

from projects import services
from projects.models import Membership, User
from tests.conftest import make_person
from tests.dashboard.conftest import Browser, text

PASSWORD = "a long enough password"


def test_the_landing_page_offers_visitors_to_log_in_or_sign_up(visitor):
    response = visitor.get("/")

    assert response.status_code == 200
    assert 'href="/login/"' in text(response) and 'href="/signup/"' in text(response)


def test_signing_up_makes_an_account_with_its_own_organization_logs_in_and_opens_the_wizard(db, visitor):
    response = visitor.post("/signup/", {"email": "New@Example.com", "name": "New", "password": PASSWORD})

    user = User.objects.get(email="new@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner"
    assert response.status_code == 302
    assert response["Location"] == f"/org/{membership.organization_id}/projects/new/"
    assert visitor.get(response["Location"]).status_code == 200  # signed in


def test_sign_up_shows_the_services_errors_on_the_form(db, visitor):
    make_person("taken@example.com")

    taken = visitor.post("/signup/", {"email": "taken@example.com", "password": PASSWORD})
    weak = visitor.post("/signup/", {"email": "weak@example.com", "password": "12345678"})

    assert taken.status_code == 400 and "an account with this email already exists" in text(taken)
    assert weak.status_code == 400 and "too common" in text(weak)
    assert not User.objects.filter(email="weak@example.com").exists()


def test_logging_in_with_the_right_password_opens_the_dashboard(owner, project, visitor):
    response = visitor.post("/login/", {"email": "OWNER@example.com", "password": PASSWORD})

    assert response.status_code == 302
    home = visitor.get("/")
    assert home.status_code == 302 and home["Location"] == f"/projects/{project.pk}/"


def test_logging_in_with_a_wrong_password_says_so_and_stays_signed_out(owner, visitor):
    response = visitor.post("/login/", {"email": "owner@example.com", "password": "wrong password"})

    assert response.status_code == 400
    assert "Invalid email or password." in text(response)
    assert visitor.get("/").status_code == 200  # still the landing page


def test_login_follows_a_next_url_of_this_site_but_never_another_site(owner, project):
    inside, outside = Browser(), Browser()
    credentials = {"email": "owner@example.com", "password": PASSWORD}

    to_logs = inside.post("/login/?next=/x", {**credentials, "next": f"/projects/{project.pk}/logs/"})
    offsite = outside.post("/login/", {**credentials, "next": "https://evil.example/"})

    assert to_logs["Location"] == f"/projects/{project.pk}/logs/"
    assert offsite["Location"] == "/"


def test_logging_out_takes_a_post_and_ends_the_session(owner, org, as_user):
    browser = as_user(owner)

    assert browser.get("/logout/").status_code == 405
    response = browser.post("/logout/")

    assert response.status_code == 302
    assert browser.get(f"/org/{org.pk}/").status_code == 302  # to the login page now


def test_dashboard_pages_send_visitors_to_the_login_page_and_back(project, visitor):
    response = visitor.get(f"/projects/{project.pk}/keys/")

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/projects/{project.pk}/keys/"


def test_home_takes_an_owner_without_projects_to_the_wizard(owner, org, as_user):
    response = as_user(owner).get("/")

    assert response["Location"] == f"/org/{org.pk}/projects/new/"


def test_home_takes_a_developer_without_projects_to_the_organization_page(developer, org, as_user):
    services.organization_delete(organization=developer.user.memberships.exclude(organization=org).get().organization)

    response = as_user(developer).get("/")

    assert response["Location"] == f"/org/{org.pk}/"


def test_home_asks_a_user_in_no_organization_to_create_one(owner, org, as_user):
    services.organization_delete(organization=org)

    response = as_user(owner).get("/")

    assert response["Location"] == "/org/new/"


def test_an_htmx_request_after_the_session_ended_sends_the_whole_page_to_log_in(project, visitor):
    response = visitor.client.get(
        f"/projects/{project.pk}/?days=7", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver/projects/{project.pk}/"
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/login/?next=/projects/{project.pk}/"
