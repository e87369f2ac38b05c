"""What every REST endpoint shares: the error shape, strict input, money fields, paging."""

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import Q, QuerySet
from django.http import Http404
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, parsers, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ServiceError, ValidationFailed
from core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS, format_money


def error_body(message: str, code: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "code": code, "fields": fields or {}}}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail → {"ruleValue.models": ["..."]}."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            out.update(_flatten(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "body": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix or "body": [str(detail)]}


def _validation_response(detail: Any) -> Response:
    fields = _flatten(detail)
    name, messages = next(iter(fields.items()))
    message = messages[0] if name == "body" else f"{name}: {messages[0]}"
    return Response(error_body(message, "validation_error", fields), status=400)


_DRF_CODES = {
    exceptions.ParseError: "parse_error",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """One error shape for the whole API: {"error": {"message", "code", "fields"}}."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(error_body(f"The request body exceeds the limit of {limit} bytes.", "request_too_large"), status=413)
    if isinstance(exc, ServiceError):
        message, fields = _in_api_names(exc, getattr(context.get("request"), _PARSED_WITH, None))
        response = Response(error_body(message, exc.code, fields), status=exc.status)
        if retry_after := getattr(exc, "retry_after", None):
            response["Retry-After"] = str(retry_after)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(exc.detail)
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        response = Response(error_body(str(exc.detail), code), status=exc.status_code)
        # drf-stubs leave out Throttled.wait, which Throttled.__init__ sets
        if isinstance(exc, exceptions.Throttled) and exc.wait:  # type: ignore[attr-defined]
            response["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        if auth_header := getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = auth_header
        return response
    return None  # an unexpected error: Django's 500 handler answers (see config/urls.py)


class JSONParser(parsers.JSONParser):
    """orjson: fast, and a nesting depth limit instead of Python's RecursionError (a 500)."""

    def parse(
        self, stream: IO[Any] | None, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            return orjson.loads(stream.read() if stream is not None else b"")
        except orjson.JSONDecodeError as e:
            raise exceptions.ParseError(f"JSON parse error - {e}") from None


class StrictSerializer(serializers.Serializer[Any]):
    """Rejects fields it does not know, so a typo or a read-only field is a clear 400
    instead of a silent no-op."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"body": [f"expected a JSON object, got {type(data).__name__}"]}
            )
        writable = {name for name, f in self.fields.items() if not f.read_only}
        unknown = sorted(set(data) - writable)
        if unknown:
            raise serializers.ValidationError(
                {name: ["unknown or read-only field"] for name in unknown}
            )
        return super().to_internal_value(data)


class MoneyField(serializers.DecimalField):
    """USD as a decimal string; accepts a JSON number or string, never negative."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", MONEY_MAX_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_DECIMAL_PLACES)
        kwargs.setdefault("min_value", Decimal("0"))
        super().__init__(**kwargs)

    def to_representation(self, value: Decimal) -> str:
        return format_money(value)


# The serializer a request's body or query was parsed with, remembered on the request (a
# DRF Request has no such attribute: it is set dynamically) for exception_handler.
_PARSED_WITH = "parsed_with"


def parse(serializer_class: type[serializers.Serializer[Any]], request: Request, **kwargs: Any) -> dict[str, Any]:
    """Validated input of a request body in the domain's names (each field's `source`: the
    JSON's `usageLimit` arrives as `usage_limit`), or a 400 naming the field. The request
    remembers the serializer, so that a service's error names its fields as the JSON does."""
    serializer = serializer_class(data=request.data, **kwargs)
    setattr(request, _PARSED_WITH, serializer_class)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def parse_query(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params.dict())
    setattr(request, _PARSED_WITH, serializer_class)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def api_names(serializer_class: type[serializers.Serializer[Any]]) -> dict[str, str]:
    """Domain name → the API's name, from the serializer's fields: {"usage_limit":
    "usageLimit", "project_id": "projectId", "project": "projectId"} (an `_id` field also
    answers for the object it names)."""
    names: dict[str, str] = {}
    for name, field in serializer_class().fields.items():
        source = field.source or name
        names[source] = name
        if source.endswith("_id"):
            names.setdefault(source[: -len("_id")], name)
    return names


def _in_api_names(
    error: ServiceError, serializer_class: type[serializers.Serializer[Any]] | None
) -> tuple[str, dict[str, list[str]]]:
    """A service's error (fields in domain names) with its fields named as the request's
    JSON names them: `rule_value.models` → `ruleValue.models`."""
    if serializer_class is None or not error.fields:
        return error.message, error.fields
    names = api_names(serializer_class)

    def rename(field: str) -> str:
        head, dot, rest = field.partition(".")
        return names.get(head, head) + dot + rest

    fields = {rename(name): messages for name, messages in error.fields.items()}
    message = error.message
    first = next(iter(error.fields))
    if message.startswith(f"{first}: "):
        message = f"{rename(first)}: {message[len(first) + 2:]}"
    return message, fields


_ENVELOPES: dict[str, serializers.Serializer[Any]] = {}


def envelope(name: str, serializer: serializers.BaseSerializer[Any]) -> serializers.Serializer[Any]:
    """The schema of `{"<name>": ...}`, the way every response wraps its object (one
    component per name, however many views answer with it)."""
    if name not in _ENVELOPES:
        _ENVELOPES[name] = inline_serializer(name=f"{name[0].upper()}{name[1:]}Envelope", fields={name: serializer})
    return _ENVELOPES[name]


def _encode_cursor(created_at: datetime, pk: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{pk}".encode()).decode().rstrip("=")


_CURSOR_ID = re.compile(r"^[a-z]{2,5}_[A-Za-z0-9]{1,40}$")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at in UTC, id) of a cursor this API gave out, else a 400 naming `cursor`:
    crafted ones (a NUL, an offset that overflows, a naive time) never reach the database."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, pk = raw.split("|", 1)
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None or not _CURSOR_ID.match(pk):
            raise ValueError("not a cursor")
        return moment.astimezone(UTC), pk
    except (ValueError, UnicodeDecodeError, OverflowError, binascii.Error):
        raise ValidationFailed.field("cursor", "is not a cursor this API gave out") from None


def keyset_page(queryset: QuerySet[Any], *, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """Newest first by (created_at, id); a cursor stays valid while rows are inserted."""
    if cursor:
        when, pk = _decode_cursor(cursor)
        queryset = queryset.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=pk))
    rows = list(queryset.order_by("-created_at", "-id")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _encode_cursor(rows[-1].created_at, rows[-1].pk)


class PageQuery(serializers.Serializer[Any]):
    cursor = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=50)
