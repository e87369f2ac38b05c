"""A new member's first minutes, in a real browser: sign up, the New Project wizard, the key
shown once, a provider key, calls to the gateway with the OpenAI SDK, then the requests in
Logs and the overview's numbers, cache hit rate included."""

from selenium.webdriver.support.ui import Select

from apikeys.models import ApiKey
from projects.models import Project, User
from tests.gateway.conftest import eventually

PASSWORD = "a long enough password"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_new_member_signs_up_makes_a_project_and_sees_their_first_requests(page, gateway, fake_upstream):
    # Sign up: a new organization, and straight into the wizard.
    page.open("/")
    page.find("a[href='/signup/']").click()
    page.fill("#id_name", "Grace")
    page.fill("#id_email", "grace@example.com")
    page.fill("#id_password", PASSWORD)
    page.screenshot("signup")
    page.find("form button[type=submit]").click()
    page.wait_for("#wizard")
    user = User.objects.get(email="grace@example.com")
    organization = user.organizations.get()
    assert page.path == f"/org/{organization.pk}/projects/new/"

    # Step 1, validated in place: an empty name is refused without leaving the page.
    page.find("#wizard button[type=submit]").click()
    page.wait_text("#wizard .error", "This field is required.")
    page.fill("#id_name", "Browser Project")
    page.screenshot("wizard-1-name")
    page.find("#wizard button[type=submit]").click()

    # Step 2: the three modes, hybrid preselected.
    page.wait_text("#wizard h2", "How should requests be paid?")
    assert page.find("input[name=mode][value=hybrid]").is_selected()
    page.screenshot("wizard-2-mode")
    page.find("#wizard button[type=submit]:not([name=back])").click()

    # Step 3: caching for 5 minutes, then the project is created.
    page.wait_text("#wizard h2", "Caching")
    page.find("#id_caching_enabled").click()
    Select(page.find("#id_cache_duration_seconds")).select_by_visible_text("5 minutes")
    page.screenshot("wizard-3-caching")
    page.find("#wizard button[type=submit]:not([name=back])").click()
    page.wait_text("#wizard h2", "Create your first API key")
    project = Project.objects.get(organization=organization)
    assert (project.name, project.mode, project.caching_enabled, project.cache_duration_seconds) == (
        "Browser Project", "hybrid", True, 300
    )

    # Step 4: the key, shown once with a copy button and the warning.
    page.find("#wizard button[type=submit]").click()
    token_field = page.wait_for("#new-token")
    token = token_field.get_attribute("value")
    assert token.startswith("llmgw_")
    assert "It will not be shown again." in page.text
    page.find("button[data-copy]").click()
    page.wait_text("button[data-copy]", "Copied")
    page.screenshot("wizard-4-key-shown-once")
    page.screenshot("wizard-4-key-shown-once", phone=True)
    key = ApiKey.objects.get(project=project)

    page.open(f"/projects/{project.pk}/keys/")
    assert key.masked_token in page.text and token not in page.driver.page_source

    # A provider key, checked with the provider (the fake upstream accepts it).
    page.open(f"/org/{organization.pk}/provider-keys/")
    Select(page.find("#id_provider")).select_by_value("openai")
    page.fill("#id_token", "sk-browser-openai-key")
    page.find("#add-provider-key button[type=submit]").click()
    page.wait_text("#provider-keys", "OpenAI key added.")
    page.screenshot("provider-keys")

    # Two identical calls through the gateway with the new key: a miss, then a cache hit.
    client = gateway.client(token)
    for _ in range(2):
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        assert answer.choices[0].message.content == "Hello from the fake upstream."
    assert len(fake_upstream.calls_for("openai")) == 1 + 1  # the key check, then one answer

    # Logs: both requests appear once the worker has stored them.
    def rows():
        page.open(f"/projects/{project.pk}/logs/")
        return len(page.find_all("table.logs tbody tr")) == 2

    assert eventually(rows, timeout=15, interval=0.3)
    assert "gpt-4o-mini" in page.text and "cached" in page.text
    page.screenshot("logs")
    page.find("table.logs tbody tr:last-child a").click()
    page.wait_text("main .card h2", "Request")
    assert "10 prompt + 5 completion = 15" in page.text and "the organization's provider key" in page.text
    page.screenshot("log-detail")

    # The overview's numbers moved.
    page.open(f"/projects/{project.pk}/")
    assert page.find("#stat-requests").text == "2"
    assert page.find("#stat-tokens").text == "30"
    assert page.find("#stat-cache").text == "50%"
    assert page.find("#stat-cost").text.startswith("$0.00000")
    page.find("a[href$='?days=7']").click()
    page.wait_text("#overview h2", "Last 7 days")
    assert page.find("#stat-requests").text == "2"
    page.screenshot("overview")
    page.screenshot("overview", phone=True)
