"""The Projects sidebar on every page: the organization's projects, the current one marked,
archived ones apart, and New Project for those who may create one."""

from projects import services
from tests.dashboard.conftest import text


def test_the_sidebar_lists_the_active_projects_and_marks_the_current_one(owner, org, project, as_user):
    other = services.project_create(organization=org, name="Staging")

    page = text(as_user(owner).get(f"/projects/{project.pk}/keys/"))

    assert f'href="/projects/{project.pk}/" aria-current="page">Production API<' in page
    assert f'href="/projects/{other.pk}/">Staging<' in page


def test_archived_projects_are_listed_apart(owner, org, project, as_user):
    old = services.project_create(organization=org, name="Old experiment")
    services.project_update(project=old, status="archived")

    page = text(as_user(owner).get(f"/org/{org.pk}/"))

    archived = page.index('class="projects archived"')
    assert page.index("Production API") < archived < page.index("Old experiment")


def test_new_project_shows_for_owners_and_admins_but_not_developers(owner, admin, developer, org, project, as_user):
    button = f'href="/org/{org.pk}/projects/new/">New Project<'

    assert button in text(as_user(owner).get(f"/projects/{project.pk}/"))
    assert button in text(as_user(admin).get(f"/projects/{project.pk}/"))
    assert button not in text(as_user(developer).get(f"/projects/{project.pk}/"))


def test_the_sidebar_shows_only_the_current_organizations_projects(owner, outsider, project, as_user):
    theirs = services.project_create(organization=outsider.organization, name="Outsider's project")

    assert "Outsider&#x27;s project" not in text(as_user(owner).get(f"/projects/{project.pk}/"))
    assert "Production API" not in text(as_user(outsider).get(f"/projects/{theirs.pk}/"))


def test_every_page_loads_htmx_from_this_server_and_sends_the_csrf_token_with_it(owner, org, project, as_user):
    page = text(as_user(owner).get(f"/projects/{project.pk}/"))

    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in page
    assert "https://" not in page.split("</head>")[0]
    assert '<body hx-headers=\'{"X-CSRFToken": "' in page
