"""Request content end to end (issue 17 item 4): a project with `logContent` keeps what each
request asked and what it got, through the live gateway, the usage stream and the worker, and
shows it in GET /api/v1/logs/{id} and on the log detail page; one without never stores any of
it, anywhere in the database. The parts are tested one by one in tests/usage/test_log_content.py."""

import base64

import anthropic
import orjson
import pytest
import requests
from django.db import connection
from django.test import Client

from projects import services
from tests.fake_upstream import DEFAULT_REPLY, TOOL_ARGUMENTS
from tests.gateway.conftest import eventually
from usage.models import LogContent, UsageLog
from usage.services import credits_add

# A picture large enough that its base64 could never hide in a log by accident.
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16).decode()
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture
def paid(org):
    credits_add(organization=org, amount="5")


@pytest.fixture
def kept(project, paid):
    """The project keeps request content."""
    return services.project_update(project=project, log_content=True)


def _log_of(request_id: str) -> UsageLog:
    log = eventually(lambda: UsageLog.objects.filter(request_id=request_id).first())
    assert log is not None, f"no log for {request_id}"
    return log


def _content(owner, request_id: str) -> dict:
    """The log's `content` as the REST API shows it, once the worker stored it."""
    log = _log_of(request_id)
    assert eventually(lambda: LogContent.objects.filter(log_id=log.pk).exists())
    response = owner.api.get(f"/api/v1/logs/{log.pk}")
    assert response.status_code == 200
    return response.json()["log"]["content"]


def _page(owner, log: UsageLog) -> str:
    browser = Client()
    browser.force_login(owner.user)
    return browser.get(f"/projects/{log.project_id}/logs/{log.pk}/").content.decode()


def _every_text_in_the_database() -> str:
    """Every value of every row of every table, as one text to grep."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_a_chat_completions_prompt_and_answer_show_in_the_api_and_on_the_log_page(gateway, owner, kept, key_for):
    prompt = "What is the capital of France? <kept-1>"
    raw = gateway.client(key_for(kept)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Answer in one word."},
                                       {"role": "user", "content": prompt}], temperature=0.2)
    request_id = raw.headers["x-request-id"]

    content = _content(owner, request_id)

    assert content == {"request": {"messages": [{"role": "system", "content": "Answer in one word."},
                                                {"role": "user", "content": prompt}]},
                       "response": {"role": "assistant", "content": DEFAULT_REPLY}, "truncated": False}
    page = _page(owner, _log_of(request_id))
    assert "What is the capital of France? &lt;kept-1&gt;" in page and DEFAULT_REPLY in page
    assert "Answer in one word." in page
    listed = owner.api.get("/api/v1/logs", projectId=kept.pk).json()["logs"]
    assert "content" not in listed[0]


def test_a_streamed_answer_is_assembled(gateway, owner, kept, key_for):
    client = gateway.client(key_for(kept))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream it <kept-2>"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == DEFAULT_REPLY

    content = _content(owner, raw.headers["x-request-id"])

    assert content["request"] == {"messages": [{"role": "user", "content": "Stream it <kept-2>"}]}
    assert content["response"] == {"role": "assistant", "content": DEFAULT_REPLY}
    assert _log_of(raw.headers["x-request-id"]).streamed
    assert DEFAULT_REPLY in _page(owner, _log_of(raw.headers["x-request-id"]))


def test_a_tool_call_answer_is_kept(gateway, owner, kept, key_for):
    raw = gateway.client(key_for(kept)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER])

    content = _content(owner, raw.headers["x-request-id"])

    assert content["request"]["tools"] == [WEATHER]
    [call] = content["response"]["toolCalls"]
    assert call["name"] == "get_weather" and orjson.loads(call["arguments"]) == TOOL_ARGUMENTS
    assert "get_weather" in _page(owner, _log_of(raw.headers["x-request-id"]))


def test_a_picture_is_kept_as_a_reference_and_its_data_nowhere(gateway, owner, kept, key_for):
    raw = gateway.client(key_for(kept)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe this picture <kept-3>"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])

    content = _content(owner, raw.headers["x-request-id"])

    image = content["request"]["messages"][0]["content"][1]["image_url"]["url"]
    assert image["type"] == "image" and image["media_type"] == "image/png"
    assert image["bytes"] == len(base64.b64decode(PNG)) and len(image["sha256"]) == 64
    database = _every_text_in_the_database()
    assert "Describe this picture <kept-3>" in database
    assert PNG[:64] not in database and PNG[-64:] not in database
    assert f"image/png · {image['bytes'] / 1024:.1f} KB · sha256 {image['sha256'][:16]}" in _page(owner, _log_of(raw.headers["x-request-id"]))


def test_a_cached_answer_keeps_its_content_too(gateway, owner, project, paid, key_for):
    services.project_update(project=project, log_content=True, caching_enabled=True)
    client = gateway.client(key_for(project))
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Cache me <kept-4>"}]}
    client.chat.completions.create(**ask)
    hit = client.chat.completions.with_raw_response.create(**ask)
    assert hit.headers["x-gateway-cache"] == "HIT"

    assert _content(owner, hit.headers["x-request-id"])["response"] == {"role": "assistant", "content": DEFAULT_REPLY}


def test_messages_and_responses_keep_the_clients_own_request(gateway, owner, kept, key_for, fake_upstream):
    key = key_for(kept)
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)
    with claude.messages.with_streaming_response.create(
            model="claude-haiku-4-5", max_tokens=100, system="Be brief.", stream=True,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "Native Claude <kept-5>"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]) as streamed:
        b"".join(streamed.iter_bytes())
        native = streamed.headers["x-request-id"]
    translated = requests.post(f"{gateway.url}/v1/messages", headers={"x-api-key": key}, timeout=20, json={
        "model": "gpt-4o-mini", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "Translated <kept-6>"}]})
    responses = gateway.client(key).responses.with_raw_response.create(
        model="gpt-4o-mini", instructions="Be kind.", input="Responses <kept-7>")

    content = _content(owner, native)
    assert content["request"]["system"] == "Be brief."
    [text, image] = content["request"]["messages"][0]["content"]
    assert text["text"] == "Native Claude <kept-5>" and image["source"]["type"] == "image"
    assert content["response"]["content"] == DEFAULT_REPLY
    content = _content(owner, translated.headers["x-request-id"])
    assert content["request"] == {"messages": [{"role": "user", "content": "Translated <kept-6>"}]}
    assert content["response"]["content"] == DEFAULT_REPLY
    content = _content(owner, responses.headers["x-request-id"])
    assert content["request"] == {"instructions": "Be kind.", "input": "Responses <kept-7>"}
    assert content["response"]["content"] == DEFAULT_REPLY
    page = _page(owner, _log_of(responses.headers["x-request-id"]))
    assert "Be kind." in page and "Responses &lt;kept-7&gt;" in page
    assert PNG[:64] not in _every_text_in_the_database()


def test_embeddings_keep_their_input(gateway, owner, kept, key_for):
    raw = gateway.client(key_for(kept)).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["first <kept-8>", "second"])

    content = _content(owner, raw.headers["x-request-id"])

    assert content["request"] == {"input": ["first <kept-8>", "second"]}
    assert content["response"] == {"embeddings": 2, "dimensions": 8}


def test_a_project_without_log_content_never_stores_what_was_asked_or_answered(gateway, owner, project, paid, key_for,
                                                                                  fake_upstream):
    fake_upstream.reply = "An answer never to be stored 9f3c"
    client = gateway.client(key_for(project))
    secret = "A prompt never to be stored 7e1a"
    ids = [client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": secret}]).headers["x-request-id"]]
    streamed = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": secret}], stream=True)
    list(streamed.parse())
    ids.append(streamed.headers["x-request-id"])
    ids.append(requests.post(f"{gateway.url}/v1/messages", headers={"x-api-key": key_for(project)}, timeout=20, json={
        "model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": secret}]}).headers["x-request-id"])

    logs = [_log_of(request_id) for request_id in ids]

    assert all(log.status_code == 200 for log in logs)
    assert not LogContent.objects.exists()
    database = _every_text_in_the_database()
    assert ids[0] in database  # the grep sees the logs
    assert secret not in database and "9f3c" not in database
    assert owner.api.get(f"/api/v1/logs/{logs[0].pk}").json()["log"]["content"] is None
    assert "Content logging is off for this project" in _page(owner, logs[0])
