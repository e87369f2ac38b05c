"""Request content kept per project (Project.log_content): how the gateway captures it
(gateway/content.py: references instead of pictures, the size cap, a stream's answer
assembled from its frames), how ingestion stores it (usage.LogContent), who reads it
(GET /api/v1/logs/{id}, the log detail page), and how it goes away (retention, the
project's deletion). The live gateway's side is tests/gateway/test_log_content_live.py."""

import base64
import hashlib
from datetime import timedelta

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway import content
from gateway.content import Capture, answer_of_frames
from projects import services as project_services
from projects.models import Project
from tests.dashboard.conftest import as_user, record_usage, text, usage_record  # noqa: F401  (fixtures)
from usage import services as usage_services
from usage import tasks
from usage.models import LogContent, UsageLog

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()


def sse(*events: dict, named: bool = False) -> list[bytes]:
    return [(f"event: {e['type']}\n" if named else "").encode() + b"data: " + orjson.dumps(e) + b"\n\n" for e in events]


# --- capture: references, the cap, assembled streams ----------------------------------------------


def test_pictures_files_and_audio_are_kept_as_references_never_as_data():
    request = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PNG}"}},
    ]}], "model": "gpt-4o", "temperature": 0.3}

    kept = Capture("chat.completions", request).content()

    parts = kept["request"]["messages"][0]["content"]
    raw = base64.b64decode(PNG)
    assert parts[1]["image_url"]["url"] == {"type": "image", "media_type": "image/png", "bytes": len(raw),
                                            "sha256": hashlib.sha256(raw).hexdigest()}
    assert parts[2]["input_audio"]["data"]["bytes"] == len(raw)
    assert parts[3]["file"]["file_data"]["type"] == "file" and parts[3]["file"]["filename"] == "a.pdf"
    assert set(kept["request"]) == {"messages"}  # what was asked, not the settings
    assert PNG[:40] not in orjson.dumps(kept).decode()


def test_an_anthropic_base64_source_becomes_a_reference():
    request = {"system": "Be brief.", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words stay"}},
    ]}], "max_tokens": 100}

    kept = Capture("messages", request).content()

    blocks = kept["request"]["messages"][0]["content"]
    assert blocks[0]["source"]["type"] == "image" and blocks[0]["source"]["media_type"] == "image/jpeg"
    assert blocks[1]["source"]["data"] == "plain words stay"
    assert kept["request"]["system"] == "Be brief."


def test_content_past_the_cap_is_cut_with_a_marker():
    huge = "word " * 100_000  # 500,000 characters
    capture = Capture("chat.completions", {"messages": [{"role": "user", "content": huge},
                                                        {"role": "user", "content": "after"}]})
    capture.answered({"choices": [{"message": {"role": "assistant", "content": "short answer"}}]})

    kept = capture.content()

    assert kept["truncated"] is True
    first = kept["request"]["messages"][0]["content"]
    assert len(first) < content.REQUEST_SHARE and first.endswith("more characters not kept]")
    assert kept["response"]["content"] == "short answer"  # the answer keeps its share
    assert len(orjson.dumps(kept)) < content.CAP + 4096


def test_a_chat_stream_is_assembled_with_reasoning_and_tool_calls():
    frames = sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning": "Think"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "ing."}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}, "finish_reason": "tool_calls"}]},
    ) + [b"data: [DONE]\n\n"]

    assert answer_of_frames("chat.completions", frames) == {
        "role": "assistant", "content": "Hello", "reasoning": "Thinking.",
        "toolCalls": [{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}],
    }


def test_an_anthropic_stream_is_assembled():
    frames = sse(
        {"type": "message_start", "message": {"content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Bon"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "jour"}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 1}"}},
        {"type": "message_stop"}, named=True,
    )

    assert answer_of_frames("messages", frames) == {
        "role": "assistant", "content": "Bonjour", "reasoning": "Hmm.",
        "toolCalls": [{"id": "toolu_1", "name": "f", "arguments": '{"a": 1}'}],
    }


def test_a_responses_stream_is_assembled_from_deltas_or_its_completed_response():
    deltas = sse(
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1", "content": []}},
        {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi "},
        {"type": "response.output_text.delta", "output_index": 0, "delta": "there"},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"type": "function_call", "call_id": "call_9", "name": "lookup", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"}, named=True,
    )
    assert answer_of_frames("responses", deltas) == {
        "role": "assistant", "content": "Hi there", "toolCalls": [{"id": "call_9", "name": "lookup", "arguments": "{}"}]}

    completed = sse({"type": "response.completed", "response": {"output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Short."}]},
        {"type": "message", "content": [{"type": "output_text", "text": "Done."}]}]}}, named=True)
    assert answer_of_frames("responses", completed) == {"role": "assistant", "content": "Done.", "reasoning": "Short."}


def test_embeddings_keep_the_input_and_only_the_shape_of_the_vectors():
    capture = Capture("embeddings", {"model": "text-embedding-3-small", "input": ["alpha", "beta"]})
    capture.answered({"data": [{"embedding": [0.1] * 8}, {"embedding": [0.2] * 8}]})

    assert capture.content() == {"request": {"input": ["alpha", "beta"]}, "response": {"embeddings": 2, "dimensions": 8},
                                 "truncated": False}


def test_an_unreadable_answer_costs_nothing_but_its_content():
    capture = Capture("chat.completions", {"messages": [{"role": "user", "content": "Hi"}]})
    capture.answered(b"not json")

    assert capture.content() == {"request": {"messages": [{"role": "user", "content": "Hi"}]}, "response": None,
                                 "truncated": False}


# --- ingestion, retention, deletion --------------------------------------------------------------


def _kept(prompt="What is 2+2?", answer="4"):
    return {"request": {"messages": [{"role": "user", "content": prompt}]},
            "response": {"role": "assistant", "content": answer}, "truncated": False}


def test_ingestion_stores_the_content_of_records_that_carry_some(project, api_key, record_usage):
    with_content, without = record_usage(project, api_key, content=_kept())[0], record_usage(project, api_key)[0]

    row = LogContent.objects.get()
    assert row.log_id == with_content and row.project_id == project.pk
    assert orjson.loads(row.request) == _kept()["request"] and orjson.loads(row.response) == _kept()["response"]
    assert not LogContent.objects.filter(log_id=without).exists()
    assert UsageLog.objects.count() == 2


def test_content_that_cannot_be_stored_never_costs_the_log_row(project, api_key):
    record = usage_record(project, api_key, content="not an object")

    usage_services.usage_ingest(records=[record])

    assert UsageLog.objects.filter(pk=record.id).exists() and not LogContent.objects.exists()


def test_the_retention_task_deletes_content_older_than_the_projects_days(org, project, api_key, record_usage):
    project_services.project_update(project=project, log_content=True, content_retention_days=7)
    other = project_services.project_create(organization=org, name="Keeps long", log_content=True, content_retention_days=90)
    now = timezone.now()
    old = record_usage(project, api_key, when=now - timedelta(days=8), content=_kept())[0]
    recent = record_usage(project, api_key, when=now - timedelta(days=6), content=_kept())[0]
    others = record_usage(other, api_key, when=now - timedelta(days=30), content=_kept())[0]

    assert tasks.expire_log_content() == 1

    assert set(LogContent.objects.values_list("log_id", flat=True)) == {recent, others}
    assert UsageLog.objects.filter(pk=old).exists()  # the log stays: only its content goes


def test_the_retention_task_deletes_in_batches(project, api_key, record_usage, settings, monkeypatch):
    monkeypatch.setattr(usage_services, "CONTENT_DELETE_BATCH", 2)
    record_usage(project, api_key, count=5, when=timezone.now() - timedelta(days=31), content=_kept())

    assert usage_services.log_content_expire() == 5 and not LogContent.objects.exists()


def test_deleting_the_project_removes_its_content_and_logs_without_loading_them(owner, project, api_key, record_usage):
    record_usage(project, api_key, count=30, content=_kept())

    with CaptureQueriesContext(connection) as queries:
        owner.api.delete(f"/api/v1/projects/{project.pk}")

    assert not Project.objects.filter(pk=project.pk).exists()
    assert not LogContent.objects.exists() and not UsageLog.objects.exists()
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE") and "usage_" in q["sql"].split("WHERE")[0]]
    # One DELETE by project each, never the ORM's cascade that reads every log row first and
    # deletes them (and their content) by id.
    assert [d for d in deletes if "usage_usagelog" in d.split("WHERE")[0]] == [
        d for d in deletes if "usage_usagelog" in d.split("WHERE")[0] and "project_id" in d]
    assert not any('"log_id" IN' in d or '"usage_usagelog"."id" IN' in d for d in deletes), deletes


# --- who reads it ----------------------------------------------------------------------------------


def test_the_log_shows_its_content_to_members_and_the_list_never_does(owner, developer, outsider, project, api_key,
                                                                      record_usage):
    log_id = record_usage(project, api_key, content=_kept("Capital of <France>?", "Paris"))[0]

    for member in (owner, developer):
        body = member.api.get(f"/api/v1/logs/{log_id}").json()["log"]
        assert body["id"] == log_id and body["requestedModel"] == "gpt-4o-mini"
        assert body["content"] == {"request": {"messages": [{"role": "user", "content": "Capital of <France>?"}]},
                                   "response": {"role": "assistant", "content": "Paris"}, "truncated": False}
    assert outsider.api.get(f"/api/v1/logs/{log_id}").status_code == 404
    listed = owner.api.get("/api/v1/logs", projectId=project.pk).json()["logs"]
    assert [row["id"] for row in listed] == [log_id] and "content" not in listed[0]


def test_a_log_without_kept_content_shows_null(owner, project, api_key, record_usage):
    log_id = record_usage(project, api_key)[0]

    assert owner.api.get(f"/api/v1/logs/{log_id}").json()["log"]["content"] is None
    assert owner.api.get("/api/v1/logs/log_doesnotexist").status_code == 404


def test_the_log_detail_page_shows_the_conversation_escaped(owner, project, api_key, record_usage, as_user):
    kept = {"request": {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "<script>alert(1)</script> weather?"},
                                     {"type": "image_url", "image_url": {"url": {"type": "image", "media_type": "image/png",
                                                                                 "bytes": 2048, "sha256": "ab" * 32}}}]},
    ], "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
        "response": {"role": "assistant", "content": "", "toolCalls": [{"id": "call_1", "name": "get_weather",
                                                                         "arguments": '{"city": "Paris"}'}]},
        "truncated": False}
    log_id = record_usage(project, api_key, content=kept)[0]

    page = text(as_user(owner).get(f"/projects/{project.pk}/logs/{log_id}/"))

    assert "&lt;script&gt;alert(1)&lt;/script&gt; weather?" in page and "<script>alert(1)" not in page
    assert "You are terse." in page and "image/png · 2.0 KB · sha256 abababababababab…" in page
    assert "get_weather" in page and "{&quot;city&quot;: &quot;Paris&quot;}" in page
    assert ">system<" in page and ">user<" in page and ">assistant<" in page


def test_the_log_detail_page_says_when_content_logging_is_off(owner, project, api_key, record_usage, as_user):
    log_id = record_usage(project, api_key)[0]

    page = text(as_user(owner).get(f"/projects/{project.pk}/logs/{log_id}/"))

    assert "Content logging is off for this project" in page
    assert f'href="/projects/{project.pk}/settings/#content-logging"' in page


# --- the settings ----------------------------------------------------------------------------------


def test_the_rest_api_takes_and_shows_the_content_settings(owner, org):
    created = owner.api.post("/api/v1/projects", {"name": "Kept", "organizationId": org.pk, "logContent": True,
                                                  "contentRetentionDays": 14})
    assert created.status_code == 201
    project = created.json()["project"]
    assert (project["logContent"], project["contentRetentionDays"]) == (True, 14)

    defaults = owner.api.post("/api/v1/projects", {"name": "Default", "organizationId": org.pk}).json()["project"]
    assert (defaults["logContent"], defaults["contentRetentionDays"]) == (False, 30)

    patched = owner.api.patch(f"/api/v1/projects/{project['id']}", {"logContent": False, "contentRetentionDays": 3650})
    assert patched.json()["project"]["logContent"] is False and patched.json()["project"]["contentRetentionDays"] == 3650


@pytest.mark.parametrize("value", [0, 3651, -1, "many", 1.5, None, True])
def test_a_retention_outside_1_to_3650_days_is_a_400_naming_it(owner, project, value):
    response = owner.api.patch(f"/api/v1/projects/{project.pk}", {"contentRetentionDays": value})

    assert response.status_code == 400
    assert "contentRetentionDays" in response.json()["error"]["fields"]
    assert Project.objects.get(pk=project.pk).content_retention_days == 30


def test_log_content_must_be_a_boolean(owner, org):
    response = owner.api.post("/api/v1/projects", {"name": "X", "organizationId": org.pk, "logContent": "perhaps"})

    assert response.status_code == 400 and "logContent" in response.json()["error"]["fields"]


def test_the_settings_page_turns_content_logging_on(owner, developer, project, as_user):
    form = {"name": "Production API", "mode": "hybrid", "cache_duration_seconds": "60", "log_content": "on",
            "content_retention_days": "10"}

    response = as_user(owner).post(f"/projects/{project.pk}/settings/", form, htmx=True)

    assert response.status_code == 200 and "Settings saved." in text(response)
    project.refresh_from_db()
    assert (project.log_content, project.content_retention_days) == (True, 10)
    assert "kept for 10 days" in text(as_user(developer).get(f"/projects/{project.pk}/settings/"))
    refused = as_user(owner).post(f"/projects/{project.pk}/settings/", {**form, "content_retention_days": "4000"}, htmx=True)
    assert refused.status_code == 400 and Project.objects.get(pk=project.pk).content_retention_days == 10


def test_the_snapshot_carries_the_flag(project, api_key):
    from core.hashing import sha256_hex
    from gateway.keys import load_snapshot

    assert load_snapshot(sha256_hex(api_key.plaintext)).log_content is False
    project_services.project_update(project=project, log_content=True)
    assert load_snapshot(sha256_hex(api_key.plaintext)).log_content is True
