"""The usage log as CSV (GET /api/v1/logs with `Accept: text/csv` or `format=csv`): every
matching row, streamed in chunks as the database hands them over, so an export of millions of
rows never sits in memory, whether Django is served by WSGI or ASGI (uvicorn, bin/run).

Columns are the fields of a log in the JSON's order (usage.serializers.UsageLogOut, docs/api.md
§13), written as the JSON writes them: times in UTC ISO 8601, USD as decimal strings, booleans
`true`/`false`, `null` as an empty cell. A cell a spreadsheet would read as a formula gets a
leading apostrophe (OWASP, "CSV Injection"); commas, quotes and newlines are quoted by the csv
module, and NUL or a lone surrogate becomes U+FFFD."""

import csv
from collections.abc import AsyncIterator, Generator
from functools import cache
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from rest_framework.fields import Field

from core.text import storable
from usage.models import UsageLog
from usage.serializers import UsageLogOut

ROWS_PER_CHUNK = 500  # lines per piece of the response body
DB_CHUNK = 2000  # rows per fetch from the database (a server-side cursor on PostgreSQL)

# What a spreadsheet may take for the start of a formula (OWASP lists = + - @, tab and
# carriage return; a line feed and the full-width forms are refused as well).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def defused(text: str) -> str:
    """`text` as a cell no spreadsheet runs: a leading apostrophe when it could start a formula."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


@cache
def _columns() -> list[tuple[str, str, Field]]:
    """(CSV header = JSON name, model column, the serializer field that formats it)."""
    return [(name, field.source or name, field) for name, field in UsageLogOut().fields.items()]


def header() -> list[str]:
    return [name for name, _, _ in _columns()]


def _cell(field: Field, value: Any) -> Any:
    if value is None:
        return ""
    value = field.to_representation(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return defused(storable(value))
    return value


class _Line:
    """A file for csv.writer that hands back the line written instead of keeping it."""

    def write(self, line: str) -> str:
        return line


def csv_chunks(logs: QuerySet[UsageLog]) -> Generator[bytes, None, None]:
    """The header line, then one line per row of `logs`, newest first, as UTF-8 in pieces
    of ROWS_PER_CHUNK lines. Reads `logs` once with .iterator() (no model instances, no
    result cache)."""
    columns = _columns()
    writer = csv.writer(_Line())
    rows = logs.order_by("-created_at", "-id").values_list(*[source for _, source, _ in columns])
    lines = [writer.writerow(header())]
    for row in rows.iterator(chunk_size=DB_CHUNK):
        lines.append(writer.writerow([_cell(field, value) for (_, _, field), value in zip(columns, row, strict=True)]))
        if len(lines) >= ROWS_PER_CHUNK:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


async def _pulled_one_by_one(chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """The chunks for an ASGI server. Django reads a synchronous iterator to its end before
    sending any of it under ASGI; this pulls one chunk at a time, on the request's own thread
    (thread_sensitive: where its database connection and cursor live), and closes the cursor
    when the client goes away."""
    def pull() -> bytes | None:
        return next(chunks, None)

    try:
        while (chunk := await sync_to_async(pull, thread_sensitive=True)()) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def csv_response(request: HttpRequest, logs: QuerySet[UsageLog], *, filename: str) -> StreamingHttpResponse:
    """`logs` as a streamed CSV attachment named `filename` (letters, digits, `-`, `_`, `.`)."""
    chunks = csv_chunks(logs)
    asgi = isinstance(getattr(request, "_request", request), ASGIRequest)  # a DRF Request wraps Django's
    response = StreamingHttpResponse(_pulled_one_by_one(chunks) if asgi else chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
