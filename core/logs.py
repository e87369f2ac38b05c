"""Log lines (settings.LOGGING): text by default, one JSON object per line with LOG_FORMAT=json;
either way each line carries the ids of the request or usage record it is about, and nothing
that looks like a key.

The ids live in a context variable. The gateway binds the request id as a request arrives and
the organization, project and key once the key is known (gateway/v1.py); the tasks a request
creates inherit them, as asyncio copies the context into each task it creates, and so do
threads entered through asgiref. The usage ingester binds each record's ids while it handles
that record (usage/services.py), in the web process or the Celery worker alike.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from core.redaction import redact_tokens

IDS = ("request_id", "organization_id", "project_id", "api_key_id")

_ids: ContextVar[dict[str, str] | None] = ContextVar("log_ids", default=None)


def start(**ids: str) -> None:
    """These ids, and only these, on every line logged from here on in this context (a
    request's first: nothing of an earlier request carries over)."""
    _ids.set(ids)


def bind(**ids: str) -> None:
    """Adds ids to every line logged from here on in this context: the request's own task,
    and the tasks and threads it starts."""
    current = _ids.get()
    _ids.set({**current, **ids} if current else ids)


@contextmanager
def bound(**ids: str) -> Iterator[None]:
    """These ids, and only these, on the lines logged inside the block."""
    token = _ids.set(ids)
    try:
        yield
    finally:
        _ids.reset(token)


def current() -> dict[str, str]:
    """The ids bound in this context."""
    return dict(_ids.get() or {})


class ContextFilter(logging.Filter):
    """Puts the bound ids on each record, as attributes (ids passed with `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get()
        if ids:
            for name, value in ids.items():
                if value and name not in record.__dict__:
                    setattr(record, name, value)
        return True


class RedactFilter(logging.Filter):
    """A safety net: a message (with its arguments) that holds anything looking like a key
    (llmgw_…, sk-…, Bearer …) has it cut out. Messages without one are left as they are, so
    that error reports still group by their template. The formatters below cut the same out
    of whole lines too (tracebacks, extra fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format: the formatter reports it as logging always has
        cleaned = redact_tokens(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """`<time> <level> <logger> [<request id>] <message>`, the request id when there is one."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s%(_request)s %(message)s", datefmt)

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record._request = f" [{request_id}]" if request_id else ""
        return redact_tokens(super().format(record))


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: timestamp (ISO 8601, UTC), level, logger, message, the bound
    ids (request_id, organization_id, project_id, api_key_id) when there are any, anything
    passed with `extra=`, and `exception` with its traceback."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger", "exc_info": "exception"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "color_message"])  # uvicorn's message in ANSI colours
        super().__init__("%(levelname)s %(name)s %(message)s", **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return redact_tokens(super().format(record))
