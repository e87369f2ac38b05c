"""Text from users and providers made safe for where it goes: a database column, an email
header, a log line. One tenant's odd characters must never break a write or a task that
serves every tenant."""

import logging
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")  # PostgreSQL text refuses NUL; UTF-8 refuses lone surrogates

T = TypeVar("T")


def storable(text: str, limit: int | None = None) -> str:
    """`text` as a text column can hold it: NUL and lone surrogates become U+FFFD (the
    replacement character), then at most `limit` characters."""
    text = _UNSTORABLE.sub("\ufffd", text)
    return text[:limit] if limit is not None else text


def one_line(text: str) -> str:
    """`text` on one line: every run of control characters (newlines, tabs, NUL) becomes one
    space, so it is safe in an email subject or a log line."""
    return _CONTROL.sub(" ", text).strip()


def has_control_characters(text: str) -> bool:
    return bool(_CONTROL.search(text))


def each_isolated(items: Iterable[T], action: Callable[[T], object], *, what: str, log: logging.Logger) -> int:
    """Calls `action` on every item; one that raises is logged and skipped, so a periodic task
    over all tenants survives any one tenant's data. Returns how many failed."""
    failed = 0
    for item in items:
        try:
            action(item)
        except Exception:
            failed += 1
            log.exception("%s failed for %r; going on with the others", what, item)
    return failed
