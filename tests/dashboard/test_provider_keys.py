"""Provider Keys of an organization: added (validated with the provider, whose refusal is
shown), custom providers with a name and base URL, masked, disabled, deleted."""

import pytest

from apikeys import services as key_services
from apikeys.models import ProviderKey
from core.errors import ValidationFailed
from tests.dashboard.conftest import text


def _url(org, rest=""):
    return f"/org/{org.pk}/provider-keys/{rest}"


@pytest.fixture
def openai_key(org):
    return key_services.provider_key_create(organization=org, provider="openai", token="sk-own-openai-secret-1234", validate=False)


def test_keys_are_listed_masked_and_never_in_full(owner, org, openai_key, as_user):
    page = text(as_user(owner).get(_url(org)))

    assert "OpenAI" in page and "…1234" in page
    assert "sk-own-openai-secret-1234" not in page


def test_an_admin_adds_a_key_checked_with_the_provider(admin, org, as_user, monkeypatch):
    checked = []
    monkeypatch.setattr(key_services, "validate_provider_token", lambda **kw: checked.append(kw))

    response = as_user(admin).post(_url(org), {"provider": "anthropic", "token": "sk-ant-secret-abcdefgh", "validate": "on"}, htmx=True)

    key = ProviderKey.objects.get(organization=org)
    assert key.provider == "anthropic" and key.masked_token == "…efgh"
    assert checked and checked[0]["provider"] == "anthropic"
    assert "Anthropic key added." in text(response)
    assert "sk-ant-secret-abcdefgh" not in text(response)


def test_a_key_the_provider_refuses_shows_the_providers_reason_in_place(owner, org, as_user, monkeypatch):
    def refuse(**kwargs):
        raise ValidationFailed("token: OpenAI rejected the key (HTTP 401): Incorrect API key provided",
                               code="provider_key_rejected", fields={"token": ["OpenAI rejected the key (HTTP 401): Incorrect API key provided"]})

    monkeypatch.setattr(key_services, "validate_provider_token", refuse)

    response = as_user(owner).post(_url(org), {"provider": "openai", "token": "sk-bad-key-000000", "validate": "on"}, htmx=True)

    assert response.status_code == 400
    assert "OpenAI rejected the key (HTTP 401): Incorrect API key provided" in text(response)
    assert "sk-bad-key-000000" not in text(response)
    assert not ProviderKey.objects.exists()


def test_without_validation_the_provider_is_not_asked(owner, org, as_user, monkeypatch):
    monkeypatch.setattr(key_services, "validate_provider_token", lambda **kw: pytest.fail("asked the provider"))

    as_user(owner).post(_url(org), {"provider": "mistral", "token": "mistral-secret-key-99"})

    assert ProviderKey.objects.get(organization=org).provider == "mistral"


def test_a_custom_provider_needs_a_name_and_a_base_url(owner, org, as_user):
    no_name = as_user(owner).post(_url(org), {"provider": "custom", "token": "tok-abcdefghijkl", "base_url": "http://127.0.0.1:9/v1"}, htmx=True)
    no_url = as_user(owner).post(_url(org), {"provider": "custom", "token": "tok-abcdefghijkl", "name": "my-vllm"}, htmx=True)

    assert no_name.status_code == 400 and "a custom provider needs a name" in text(no_name)
    assert no_url.status_code == 400 and "a custom provider needs the base URL" in text(no_url)
    assert not ProviderKey.objects.exists()


def test_a_custom_provider_is_added_with_its_name_and_base_url(owner, org, as_user, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    page = text(as_user(owner).post(
        _url(org), {"provider": "custom", "token": "tok-abcdefghijkl", "name": "my-vllm", "base_url": "http://127.0.0.1:9/v1"}, htmx=True
    ))

    key = ProviderKey.objects.get(organization=org)
    assert (key.provider, key.name, key.base_url) == ("custom", "my-vllm", "http://127.0.0.1:9/v1")
    assert "my-vllm/&lt;model&gt;" in page and "http://127.0.0.1:9/v1" in page


def test_a_custom_provider_is_added_with_its_prices(owner, org, as_user, settings):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    prices = '{"llama-3-70b": {"inputPrice": "0.50", "outputPrice": 1.5}}'

    page = text(as_user(owner).post(_url(org), {"provider": "custom", "token": "tok-abcdefghijkl", "name": "my-vllm",
                                                "base_url": "http://127.0.0.1:9/v1", "prices": prices}, htmx=True))

    key = ProviderKey.objects.get(organization=org)
    assert key.prices == {"llama-3-70b": {"inputPrice": "0.5", "outputPrice": "1.5"}}
    assert "my-vllm key added." in page and "1 priced" in page


@pytest.mark.parametrize(
    "provider, prices, error",
    [
        ("custom", '{"llama-3-70b": {"inputPrice": "0.5",', "Enter a valid JSON."),
        ("custom", '{"llama-3-70b": {"inputPrice": "-1", "outputPrice": "1"}}', "prices.llama-3-70b.inputPrice: must be a decimal"),
        ("openai", '{"gpt-4o": {"inputPrice": "1", "outputPrice": "1"}}', "only a custom provider takes prices"),
    ],
    ids=["bad_json", "bad_price", "built_in_provider"],
)
def test_bad_prices_are_shown_on_their_field(owner, org, as_user, settings, provider, prices, error):
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = as_user(owner).post(_url(org), {"provider": provider, "token": "tok-abcdefghijkl", "name": "my-vllm",
                                               "base_url": "http://127.0.0.1:9/v1" if provider == "custom" else "",
                                               "prices": prices}, htmx=True)

    assert response.status_code == 400
    page = text(response)
    prices_field = page[page.index('id="id_prices"'):page.index('id="id_validate"')]
    assert error in prices_field.replace("&quot;", '"').replace("&#x27;", "'")
    assert not ProviderKey.objects.exists()


def test_a_second_key_for_the_same_provider_is_refused_in_place(owner, org, openai_key, as_user):
    response = as_user(owner).post(_url(org), {"provider": "openai", "token": "sk-another-key-5678"}, htmx=True)

    assert response.status_code == 400
    assert "this organization already has a key for OpenAI" in text(response)


def test_disabling_enabling_and_deleting_a_key(admin, org, openai_key, as_user):
    browser = as_user(admin)

    browser.post(_url(org, f"{openai_key.pk}/status"), htmx=True)
    assert ProviderKey.objects.get(pk=openai_key.pk).status == "inactive"
    browser.post(_url(org, f"{openai_key.pk}/status"), htmx=True)
    assert ProviderKey.objects.get(pk=openai_key.pk).status == "active"
    deleted = browser.post(_url(org, f"{openai_key.pk}/delete"), htmx=True)

    assert "deleted." in text(deleted)
    assert not ProviderKey.objects.filter(pk=openai_key.pk).exists()


def test_developers_see_the_keys_without_controls_and_cannot_change_them(developer, org, openai_key, as_user):
    browser = as_user(developer)

    page = text(browser.get(_url(org)))

    assert "…1234" in page
    assert "Add a provider key" not in page and "/delete" not in page and "/status" not in page
    assert browser.post(_url(org), {"provider": "groq", "token": "gsk-secret-123456"}).status_code == 403
    assert browser.post(_url(org, f"{openai_key.pk}/status")).status_code == 403
    assert browser.post(_url(org, f"{openai_key.pk}/delete")).status_code == 403
    assert ProviderKey.objects.filter(pk=openai_key.pk, status="active").exists()


def test_outsiders_get_404(outsider, org, openai_key, as_user):
    browser = as_user(outsider)

    assert browser.get(_url(org)).status_code == 404
    assert browser.post(_url(org), {"provider": "groq", "token": "gsk-secret-123456"}).status_code == 404
    assert browser.post(_url(org, f"{openai_key.pk}/status")).status_code == 404
    assert browser.post(_url(org, f"{openai_key.pk}/delete")).status_code == 404
    assert as_user(outsider).post(_url(outsider.organization, f"{openai_key.pk}/delete")).status_code == 404
    assert ProviderKey.objects.filter(pk=openai_key.pk, status="active").exists()


# --- several keys of one provider --------------------------------------------------------------


def test_several_keys_of_a_provider_are_listed_in_priority_order(owner, org, openai_key, as_user):
    key_services.provider_key_create(organization=org, provider="openai", name="backup", priority=-1,
                                     token="sk-own-openai-backup-5678", validate=False)
    key_services.provider_key_create(organization=org, provider="openai", name="spare", priority=7,
                                     token="sk-own-openai-spare-9999", validate=False)

    page = text(as_user(owner).get(_url(org)))

    assert page.index("…5678") < page.index("…1234") < page.index("…9999")
    assert '<td data-label="Priority">-1</td>' in page and '<td data-label="Priority">7</td>' in page


def test_an_admin_adds_a_second_key_of_a_provider_with_a_name_and_priority(admin, org, openai_key, as_user):
    page = text(as_user(admin).post(_url(org), {"provider": "openai", "token": "sk-second-key-5678", "name": "backup",
                                                "priority": "2"}, htmx=True))

    assert "backup key added." in page
    assert ProviderKey.objects.get(organization=org, name="backup").priority == 2


def test_a_bad_priority_is_shown_on_its_field(owner, org, as_user):
    response = as_user(owner).post(_url(org), {"provider": "openai", "token": "sk-second-key-5678", "priority": "soon"},
                                   htmx=True)

    assert response.status_code == 400 and "Enter a whole number." in text(response)
    assert not ProviderKey.objects.exists()


def test_a_key_is_renamed_and_reprioritised_from_its_row(admin, org, openai_key, as_user):
    response = as_user(admin).post(_url(org, f"{openai_key.pk}/edit"), {"name": "main", "priority": "3"}, htmx=True)

    assert response.status_code == 200 and f"Key {openai_key.masked_token} saved." in text(response)
    key = ProviderKey.objects.get(pk=openai_key.pk)
    assert (key.name, key.priority, key.plaintext_token()) == ("main", 3, "sk-own-openai-secret-1234")


def test_editing_a_key_to_a_taken_name_or_a_bad_priority_says_why(owner, org, openai_key, as_user):
    key_services.provider_key_create(organization=org, provider="openai", name="backup", token="sk-backup-5678",
                                     validate=False)
    browser = as_user(owner)

    taken = browser.post(_url(org, f"{openai_key.pk}/edit"), {"name": "backup", "priority": "0"}, htmx=True)
    bad = browser.post(_url(org, f"{openai_key.pk}/edit"), {"name": "", "priority": "first"}, htmx=True)

    assert taken.status_code == 409 and "already has a key for OpenAI named &#x27;backup&#x27;" in text(taken)
    assert bad.status_code == 400 and "priority: Enter a whole number." in text(bad)
    assert ProviderKey.objects.get(pk=openai_key.pk).name == ""


def test_an_invalid_key_is_shown_with_the_providers_refusals_and_fixed_with_a_new_token(owner, org, project, openai_key,
                                                                                        as_user, monkeypatch):
    key_services.provider_key_mark_invalid(key_id=openai_key.pk, rejections=3, status=401)
    browser = as_user(owner)
    notice = "The provider rejected this key 3 times in a row (HTTP 401); fix or replace it."

    page = text(browser.get(_url(org)))
    elsewhere = text(browser.get(f"/org/{org.pk}/"))

    assert 'id="invalid-provider-keys"' in page and notice in page and ">invalid</span>" in page
    assert 'id="invalid-provider-keys-banner"' not in page  # the page's own notice, not the banner as well
    assert 'id="invalid-provider-keys-banner"' in elsewhere and notice in elsewhere
    assert notice in text(browser.get(f"/projects/{project.pk}/keys/"))

    checked = []
    monkeypatch.setattr(key_services, "validate_provider_token", lambda **kw: checked.append(kw))
    fixed = browser.post(_url(org, f"{openai_key.pk}/edit"), {"name": "", "priority": "0", "token": "sk-new-provider-key-0000"},
                         htmx=True)

    assert fixed.status_code == 200 and notice not in text(fixed)
    assert checked and checked[0]["token"] == "sk-new-provider-key-0000"  # a new token is checked with the provider
    key = ProviderKey.objects.get(pk=openai_key.pk)
    assert (key.status, key.masked_token) == ("active", "…0000")
    assert 'id="invalid-provider-keys-banner"' not in text(browser.get(f"/org/{org.pk}/"))


def test_enabling_an_invalid_key_brings_it_back(admin, org, openai_key, as_user):
    key_services.provider_key_mark_invalid(key_id=openai_key.pk, rejections=3, status=403)

    page = text(as_user(admin).post(_url(org, f"{openai_key.pk}/status"), htmx=True))

    assert "enabled." in page
    assert ProviderKey.objects.get(pk=openai_key.pk).status == "active"


def test_developers_see_an_invalid_key_but_cannot_edit_keys(developer, org, openai_key, as_user):
    key_services.provider_key_mark_invalid(key_id=openai_key.pk, rejections=3, status=401)
    browser = as_user(developer)

    page = text(browser.get(_url(org)))

    assert "fix or replace it" in page and "Admins and owners can fix it." in page
    assert "/edit" not in page
    assert browser.post(_url(org, f"{openai_key.pk}/edit"), {"name": "mine", "priority": "1"}).status_code == 403
    assert ProviderKey.objects.get(pk=openai_key.pk).name == ""
