"""The back button always shows whole pages. htmx swaps parts of a page and pushes their URL;
coming back to such a URL must give the whole page, whether the browser answers from its
own cache (the answers vary with HX-Request) or htmx asks the server to restore it (the
HX-History-Restore-Request gets the whole page, not the partial)."""

from projects import services
from tests.conftest import make_person


def _whole_page(page) -> bool:
    return bool(page.find_all("header.topbar")) and bool(page.find_all("aside.sidebar")) and bool(page.find_all("#overview"))


def _open_overview_and_pick_seven_days(page, project):
    page.open(f"/projects/{project.pk}/")
    page.wait_for("#overview")
    page.find('a[href$="?days=7"]').click()  # htmx: swaps #overview and pushes ?days=7
    page.wait_until(lambda: page.path.endswith("?days=7"))
    page.wait_for('a[href$="?days=7"][aria-current="true"]')


def test_back_to_a_url_htmx_pushed_shows_the_whole_page(page, gateway):
    owner = make_person("owner@example.com")
    project = services.project_create(organization=owner.organization, name="Back Button")
    page.log_in_as(owner.user)
    _open_overview_and_pick_seven_days(page, project)

    # An unload handler keeps Chromium from restoring the page from its back/forward cache:
    # the back button then loads the URL, preferring the HTTP cache, as many browsers do.
    page.driver.execute_script("window.addEventListener('unload', () => {})")
    page.find('a[href$="/settings/"]').click()  # a whole-page navigation away
    page.wait_for("#id_confirm_name")
    page.driver.back()

    page.wait_until(lambda: page.path.endswith("?days=7"))
    page.wait_for("#overview")
    assert _whole_page(page), page.driver.page_source[:500]


def test_when_htmx_has_to_ask_the_server_to_restore_a_page_it_gets_the_whole_page(page, gateway):
    owner = make_person("owner@example.com")
    project = services.project_create(organization=owner.organization, name="Restore")
    page.log_in_as(owner.user)
    _open_overview_and_pick_seven_days(page, project)
    page.find('a[href$="?days=30"]').click()
    page.wait_until(lambda: page.path.endswith("?days=30"))
    # htmx keeps snapshots of pushed pages in sessionStorage; without one it asks the server.
    page.driver.execute_script("""
        document.body.addEventListener('htmx:historyCacheMiss', () => { window.askedServer = true });
        sessionStorage.removeItem('htmx-history-cache');
        htmx.config.historyCacheSize = 0;
    """)

    page.driver.back()

    page.wait_until(lambda: page.path.endswith("?days=7"))
    page.wait_for('a[href$="?days=7"][aria-current="true"]')
    assert _whole_page(page), page.driver.page_source[:500]
    assert page.driver.execute_script("return window.askedServer") is True
    assert len(page.find_all("header.topbar")) == 1  # not a page nested in the page
