"""The dashboard's own pages for errors: styled like the rest, saying what to do."""

from django.test import Client

from tests.dashboard.conftest import text


def test_an_unknown_dashboard_url_shows_the_styled_404_page(owner, as_user):
    response = as_user(owner).get("/no/such/page/")

    assert response.status_code == 404
    assert "Page not found" in text(response)
    assert "/no/such/page/" in text(response)
    assert 'href="/static/css/app.css"' in text(response) and "Back to the dashboard" in text(response)


def test_another_organizations_project_is_the_same_404_page(owner, outsider, project, as_user):
    response = as_user(outsider).get(f"/projects/{project.pk}/")

    assert response.status_code == 404 and "Page not found" in text(response)


def test_an_unknown_api_url_stays_a_json_404(owner, as_user):
    response = as_user(owner).get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_role_too_low_shows_the_styled_403_page_naming_the_rule(developer, org, as_user):
    response = as_user(developer).get(f"/org/{org.pk}/projects/new/")

    assert response.status_code == 403
    assert "Not allowed" in text(response) and 'href="/static/css/app.css"' in text(response)


def test_a_form_without_its_csrf_token_shows_a_page_saying_what_went_wrong(owner):
    browser = Client(enforce_csrf_checks=True)

    response = browser.post("/login/", {"email": "owner@example.com", "password": "whatever"})

    assert response.status_code == 403
    assert "The form could not be checked" in text(response)
    assert "Nothing was changed" in text(response) and "Reload the page" in text(response)


def test_the_500_page_is_styled_and_rendered_without_the_database(rf):
    from core import views

    response = views.server_error(rf.get("/projects/x/"))  # no db fixture: a query would raise

    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body and "/static/css/app.css" in body
