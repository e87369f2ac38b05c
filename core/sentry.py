"""Error reports to Sentry, when SENTRY_DSN is set: config/settings.py imports this module only
then, in every process that loads the settings (the web processes and the Celery worker and
beat), so that nothing of sentry-sdk is loaded otherwise.

What gets reported: unhandled errors of the Django views (DjangoIntegration), of Celery tasks
(CeleryIntegration), and every log record at ERROR or above (LoggingIntegration); the /v1
gateway catches what its requests raise, logs it with `log.exception` and answers 5xx, so its
errors arrive that way, with their traceback, one event each. Records below ERROR become
breadcrumbs. No tracing: no transaction or span is made.

Scrubbed before anything leaves the process (`before_send`, `before_breadcrumb`): no request
body, no cookie, no Authorization / x-api-key header (or any other credential header), no local
variable of any frame, and anything that looks like a key (llmgw_…, sk-…, Bearer …) in any text
of the event. Each event is tagged with the ids of the request or usage record it is about.
"""

import logging
from typing import Any, cast

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from core import logs
from core.redaction import redact_tokens

FILTERED = "[Filtered]"
# Request headers that carry credentials, lower-cased.
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "set-cookie",
    "x-csrftoken",
})


def init(dsn: str, *, environment: str = "", release: str = "", **options: Any) -> None:
    """Starts reporting to `dsn`. `options` go to sentry_sdk.init as they are (the tests give
    their own transport)."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,  # None: sentry-sdk's own default (SENTRY_ENVIRONMENT, else "production")
        release=release or None,  # None: SENTRY_RELEASE, else what sentry-sdk finds (the git commit)
        send_default_pii=False,
        include_local_variables=False,  # a frame's variables may hold a key, a prompt or an answer
        max_request_body_size="never",
        # Only the integrations named here: the auto-enabled ones (aiohttp, Redis, ...) would
        # put upstream calls and usage records into breadcrumbs, and cost on every request.
        auto_enabling_integrations=False,
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(propagate_traces=False),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        **options,
    )


def _scrubbed(value: Any) -> Any:
    """`value` with every string in it (at any depth) cleared of key-like tokens."""
    if isinstance(value, str):
        return redact_tokens(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def _scrub_request(request: Any) -> None:
    request.pop("data", None)
    request.pop("cookies", None)
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {k: FILTERED if k.lower() in SECRET_HEADERS else v for k, v in headers.items()}
    elif isinstance(headers, list):
        request["headers"] = [[k, FILTERED if str(k).lower() in SECRET_HEADERS else v] for k, v in headers]


def _drop_frame_variables(event: Event) -> None:
    values = (event.get("exception") or {}).get("values") or []
    threads = (event.get("threads") or {}).get("values") or []
    for holder in [*values, *threads]:
        for frame in (holder.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)


def before_send(event: Event, hint: Hint) -> Event | None:
    if isinstance(event.get("request"), dict):
        _scrub_request(event["request"])
    _drop_frame_variables(event)
    ids = logs.current()
    if ids:
        tags = event.setdefault("tags", {})
        for name, value in ids.items():
            tags.setdefault(name, value)
    return cast(Event, _scrubbed(event))


def before_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    return cast(Breadcrumb, _scrubbed(crumb))
