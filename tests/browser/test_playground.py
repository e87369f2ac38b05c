"""The playground in a real browser: the answer streams in through the gateway with a key
of the project kept in sessionStorage, with its tokens, latency and logged cost."""

import pytest

from apikeys import services as key_services
from apikeys.models import ApiKey
from projects import services
from tests.conftest import make_person


@pytest.fixture
def person_with_project(gateway):
    person = make_person("player@example.com")
    key_services.provider_key_create(organization=person.organization, provider="openai", token="sk-own-openai", validate=False)
    project = services.project_create(organization=person.organization, name="Playground Project")
    return person, project


def test_the_playground_streams_an_answer_and_shows_its_tokens_latency_and_cost(page, person_with_project, fake_upstream):
    person, project = person_with_project
    fake_upstream.reply = "Paris is the capital of France, on the Seine."
    fake_upstream.stream_chunks = 8
    fake_upstream.chunk_delay = 0.15
    page.log_in_as(person.user)
    page.open(f"/projects/{project.pk}/playground/")

    page.find("#pg-prompt").send_keys("What is the capital of France?")
    page.find("#pg-send").click()

    # Part of the answer shows while the rest is still streaming.
    page.wait_until(lambda: page.find_all(".msg.assistant.streaming .content")
                    and 0 < len(page.find(".msg.assistant .content").text) < len(fake_upstream.reply))
    page.wait_text(".msg.assistant .content", fake_upstream.reply)
    stats = page.wait_text(".msg.assistant .stats", "cost $")
    assert "gpt-4o-mini via openai" in stats.text
    assert "10 prompt + 5 completion tokens" in stats.text
    assert "first token" in stats.text and "total" in stats.text
    page.screenshot("playground")
    page.screenshot("playground", phone=True)

    # The request went through the gateway with the user's playground key, never stored in plaintext.
    key = ApiKey.objects.get(project=project, description="Playground (player@example.com)")
    token = page.driver.execute_script(f"return sessionStorage.getItem('llmgw-playground:{project.pk}')")
    assert token.startswith("llmgw_") and key.token_hash == __import__("hashlib").sha256(token.encode()).hexdigest()
    assert fake_upstream.calls_for("openai")[-1].body["stream"] is True
    assert fake_upstream.calls_for("openai")[-1].body["messages"][-1]["content"] == "What is the capital of France?"


def test_the_playground_gets_a_new_key_when_its_stored_one_was_deleted(page, person_with_project, fake_upstream):
    person, project = person_with_project
    page.log_in_as(person.user)
    page.open(f"/projects/{project.pk}/playground/")
    page.driver.execute_script(f"sessionStorage.setItem('llmgw-playground:{project.pk}', 'llmgw_deleted0000000000000000000000')")

    page.find("#pg-prompt").send_keys("Hi")
    page.find("#pg-send").click()

    page.wait_text(".msg.assistant .content", "Hello from the fake upstream.")
    assert ApiKey.objects.filter(project=project, description="Playground (player@example.com)").count() == 1
