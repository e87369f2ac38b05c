"""The Content-Security-Policy allows this site's own scripts only (no inline script, no
eval, no CDN), and every main page still works under it: the browser reports no violation."""

from apikeys import services as key_services
from projects import services
from tests.conftest import make_person


def _violations(page) -> list[str]:
    return [e["message"] for e in page.driver.get_log("browser") if "Content Security Policy" in e["message"]]


def test_the_main_pages_run_under_the_policy_without_a_violation(page, gateway, admin_user):
    owner = make_person("owner@example.com")
    project = services.project_create(organization=owner.organization, name="Under CSP")
    _, key = key_services.api_key_create(project=project, description="CSP key")
    page.log_in_as(owner.user)
    page.driver.get_log("browser")  # start from a clean console
    org = owner.organization.pk

    for path in (f"/projects/{project.pk}/", f"/projects/{project.pk}/keys/", f"/projects/{project.pk}/keys/{key.pk}/",
                 f"/projects/{project.pk}/logs/", f"/projects/{project.pk}/settings/", f"/projects/{project.pk}/playground/",
                 f"/org/{org}/", f"/org/{org}/provider-keys/", f"/org/{org}/billing/", f"/org/{org}/projects/new/"):
        page.open(path)
        page.wait_for("main")
        assert _violations(page) == [], path

    # htmx under the policy: a swap still happens (the 7-day view of the overview).
    page.open(f"/projects/{project.pk}/")
    page.find('a[href$="?days=7"]').click()
    page.wait_text("#overview h2", "Last 7 days")
    assert _violations(page) == []


def test_the_api_reference_renders_with_no_inline_script(page, gateway):
    page.open("/api/docs/")
    page.wait_for(".swagger-ui .info", timeout=20)

    assert "LLM Gateway management API" in page.text
    assert _violations(page) == []


def test_the_admin_sign_in_page_runs_under_the_policy(page, gateway):
    page.open("/admin/login/")
    page.wait_for("#login-form")

    assert _violations(page) == []
