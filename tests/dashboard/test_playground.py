"""The playground: the models the project can use, a key of the project handed to the page
once (kept in the browser's sessionStorage, never stored in plaintext), and the cost of an
answer once its log is stored. The streaming itself is tested in a real browser."""

import hashlib

from apikeys import services as key_services
from apikeys.models import ApiKey
from projects import services
from tests.dashboard.conftest import text


def _url(project, rest=""):
    return f"/projects/{project.pk}/playground/{rest}"


def test_the_model_list_holds_what_the_projects_mode_and_keys_allow(owner, org, project, as_user, settings):
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "openai": "", "anthropic": ""}
    services.project_update(project=project, mode="api-keys")
    key_services.provider_key_create(organization=org, provider="anthropic", token="sk-ant-own-key-1234", validate=False)

    page = text(as_user(owner).get(_url(project)))

    assert '<option value="claude-3-5-haiku"' in page and '<option value="claude-sonnet-4"' in page
    assert '<option value="gpt-4o-mini"' not in page


def test_credits_offer_every_model_the_gateway_has_a_key_for(owner, project, as_user, settings):
    settings.PROVIDER_API_KEYS = {p: "" for p in settings.PROVIDER_API_KEYS} | {"openai": "gw-openai"}
    services.project_update(project=project, mode="credits")

    page = text(as_user(owner).get(_url(project)))

    assert '<option value="gpt-4o-mini" selected>gpt-4o-mini — openai, credits' in page
    assert "claude" not in page


def test_without_a_usable_model_the_page_says_what_to_add(owner, project, as_user, settings):
    settings.PROVIDER_API_KEYS = {p: "" for p in settings.PROVIDER_API_KEYS}
    services.project_update(project=project, mode="api-keys")

    page = text(as_user(owner).get(_url(project)))

    assert "No model is available to this project yet." in page and "add a provider key" in page
    assert 'id="chat-form"' not in page


def test_opening_the_page_creates_no_key_and_shows_no_token(owner, project, as_user):
    page = text(as_user(owner).get(_url(project)))

    assert not ApiKey.objects.filter(project=project).exists()
    assert "llmgw_" not in page
    assert f'data-key-url="/projects/{project.pk}/playground/key"' in page
    assert "/static/js/playground.js" in page


def test_the_playground_key_is_made_for_the_user_and_its_token_given_once(owner, project, as_user):
    response = as_user(owner).post(_url(project, "key"))

    body = response.json()
    key = ApiKey.objects.get(pk=body["keyId"])
    assert body["token"].startswith("llmgw_")
    assert key.project == project and key.created_by == owner.user
    assert key.description == "Playground (owner@example.com)"
    assert key.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert "no-store" in response["Cache-Control"]
    assert body["token"] not in text(as_user(owner).get(_url(project)))


def test_a_new_playground_key_replaces_the_users_previous_one_only(owner, developer, project, as_user):
    first = as_user(owner).post(_url(project, "key")).json()
    theirs = as_user(developer).post(_url(project, "key")).json()

    second = as_user(owner).post(_url(project, "key")).json()

    assert not ApiKey.objects.filter(pk=first["keyId"]).exists()
    assert ApiKey.objects.filter(pk=second["keyId"]).exists()
    assert ApiKey.objects.filter(pk=theirs["keyId"]).exists()


def test_the_cost_of_an_answer_comes_once_its_log_is_stored(owner, project, api_key, record_usage, as_user):
    browser = as_user(owner)

    waiting = browser.get(f"/projects/{project.pk}/requests/req-123/cost")
    record_usage(project, api_key, request_id="req-123", cost="0.0012")
    logged = browser.get(f"/projects/{project.pk}/requests/req-123/cost")

    assert waiting.status_code == 204
    assert logged.status_code == 200 and "cost $0.0012" in text(logged)


def test_outsiders_get_404_and_no_key(outsider, project, api_key, record_usage, as_user):
    record_usage(project, api_key, request_id="req-9")
    browser = as_user(outsider)

    assert browser.get(_url(project)).status_code == 404
    assert browser.post(_url(project, "key")).status_code == 404
    assert browser.get(f"/projects/{project.pk}/requests/req-9/cost").status_code == 404
    assert ApiKey.objects.filter(project=project).count() == 1
