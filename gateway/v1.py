"""The gateway's ASGI app for /v1: authentication, the two endpoints, in-flight requests,
and the process's background work (events, usage log flushing)."""

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from core import events, logs, periods
from core.hashing import sha256_hex
from core.ids import random_string
from core.money import format_money
from gateway import catalog, chat, cors, embeddings, http, messages, responses, routing, usagelog
from gateway.allow import key_refusal
from gateway.errors import GatewayError
from gateway.keys import SnapshotCache
from gateway.pricing import from_nanos, to_nanos
from gateway.snapshot import KeySnapshot
from gateway.store import MemoryStore, get_store
from gateway.throttle import FailureThrottle
from gateway.upstream import close_sessions

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def _presented_key(scope: http.Scope) -> str | None:
    value = http.header(scope, b"authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return http.header(scope, b"x-api-key")


def _known(snapshot: KeySnapshot | None) -> KeySnapshot:
    if snapshot is None:
        raise GatewayError(401, "Invalid API key.", "invalid_api_key")
    return snapshot


def _check_access(snapshot: KeySnapshot | None) -> KeySnapshot:
    snapshot = _known(snapshot)
    refused = key_refusal(snapshot)
    if refused is not None:
        raise refused
    return snapshot


def model_entry(snapshot: KeySnapshot, model: str) -> dict[str, Any] | None:
    """One model in OpenAI's model shape, with the providers this key can use for it and their
    prices (USD per 1M tokens), or None when the key cannot use it now."""
    try:
        usable = routing.per_provider(routing.usable(snapshot, model))  # one line per provider, not per key
    except GatewayError:
        return None
    return {
        "id": model,
        "object": "model",
        "created": 0,
        "owned_by": usable[0].provider,
        "providers": [
            {
                "provider": c.provider,
                "model": f"{c.provider}/{c.offer.model}",
                # null when the price is unknown (a pinned model the catalog does not know)
                "inputPrice": str(c.offer.input_price) if c.offer.priced else None,
                "outputPrice": str(c.offer.output_price) if c.offer.priced else None,
                **({"cachedInputPrice": str(c.offer.cached_input_price)} if c.offer.cached_input_price is not None else {}),
                "contextLength": c.offer.context_length,
            }
            for c in usable
        ],
    }


def models_list(snapshot: KeySnapshot) -> dict[str, Any]:
    """The models this key can use now (its IAM rules, the project's mode, the organization's
    provider keys, and its custom providers' models with declared prices), in OpenAI's list
    format."""
    ids = [*catalog.model_ids(), *(f"{name}/{model}" for name, creds in sorted(snapshot.custom_keys.items())
                                    for model in sorted(creds.prices))]
    return {"object": "list", "data": [e for e in (model_entry(snapshot, m) for m in ids) if e is not None]}


async def key_state(snapshot: KeySnapshot) -> dict[str, Any]:
    """GET /v1/key: this key's own state, money as decimal strings of USD. The usage counts
    what the spend store has counted (ahead of the database); `remaining` also takes off what
    requests in flight hold. Period limits, rate limits and expiry are null when the key has none."""
    store = get_store()
    usage, reserved = await store.key_usage(snapshot.key_id, to_nanos(snapshot.usage))
    limit = snapshot.limit_nanos
    state: dict[str, Any] = {
        "id": snapshot.key_id,
        "projectId": snapshot.project_id,
        "usageLimit": None if limit is None else format_money(from_nanos(limit)),
        "usage": format_money(from_nanos(usage)),
        "remaining": None if limit is None else format_money(from_nanos(max(limit - usage - reserved, 0))),
        "periodUsageLimit": None, "periodUsageDuration": None, "periodUsage": None, "periodResetsAt": None,
        "rateLimitRpm": snapshot.rate_limit_rpm, "rateLimitTpm": snapshot.rate_limit_tpm,
        "expiresAt": snapshot.expires_at.isoformat() if snapshot.expires_at else None,
    }
    account = chat.period_account(snapshot)
    if account is not None and snapshot.period_limit is not None and snapshot.period_duration:
        _, end = periods.window(snapshot.period_duration)
        spent = await store.period_usage(snapshot.key_id, account.period, account.period_usage)
        state.update(periodUsageLimit=format_money(snapshot.period_limit), periodUsageDuration=snapshot.period_duration,
                     periodUsage=format_money(from_nanos(spent)), periodResetsAt=end.isoformat())
    return state


def _one_model(snapshot: KeySnapshot, model: str) -> dict[str, Any]:
    entry = model_entry(snapshot, model)
    if entry is None:
        raise routing.not_found(model)
    return entry


Handler = Callable[[chat.Exchange, bytes, http.Send, Callable[[], None], chat.Reload], Awaitable[None]]


def _messages(scope: http.Scope) -> tuple[str, Handler, chat.ChatApi]:
    api = messages.MessagesApi(messages.client_headers(scope))  # the client's Anthropic headers go on to Claude
    return api.endpoint, functools.partial(chat.handle, api=api), api


# The API endpoints (POST): each request gets the key's checks, the reservation and one usage
# row (`serve`). Path → (the usage log's `endpoint`, its handler, the API whose error shape it answers in).
ENDPOINTS: dict[str, Callable[[http.Scope], tuple[str, Handler, chat.ChatApi]]] = {
    "/v1/chat/completions": lambda scope: ("chat.completions", chat.handle, chat.CHAT),
    "/v1/messages": _messages,
    "/v1/responses": lambda scope: ("responses", functools.partial(chat.handle, api=responses.RESPONSES), responses.RESPONSES),
    "/v1/embeddings": lambda scope: ("embeddings", embeddings.handle, chat.CHAT),
}


def _log_request(exchange: chat.Exchange) -> None:
    """One DEBUG line per request, as it ends: what was asked of whom and how it went, never
    what was said (the request's ids come with the line)."""
    provider, model, _ = exchange.served_by()
    duration_ms = int((time.monotonic() - exchange.started) * 1000)
    log.debug("%s %s -> %s/%s: %d in %d ms", exchange.endpoint, exchange.requested_model or "-", provider or "-",
              model or "-", exchange.status, duration_ms,
              extra={"endpoint": exchange.endpoint, "status": exchange.status, "requested_model": exchange.requested_model,
                     "provider": provider, "model": model, "streamed": exchange.stream, "cached": exchange.cached_entry is not None,
                     "duration_ms": duration_ms, "canceled": exchange.canceled})


class GatewayApp:
    def __init__(self) -> None:
        self.snapshots = SnapshotCache()
        self.usage = usagelog.pipeline()
        self.inflight: dict[str, set[tuple[asyncio.Task[Any], chat.Exchange]]] = {}  # project id → {(task, exchange)}
        self.bad_keys = FailureThrottle()
        self._background: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------------

    def ensure_started(self) -> None:
        if not self._background:
            store = get_store()
            if isinstance(store, MemoryStore):
                store.sink = self.usage.sink
            self._background = [
                asyncio.create_task(events.listen(self.on_event)),
                asyncio.create_task(self.usage.run()),
                asyncio.create_task(self._renew_holds()),
            ]

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await self.usage.flush()
        await close_sessions()

    async def _renew_holds(self) -> None:
        """Keeps this process's reservations alive while their requests live (a process that
        stops renewing, killed, has its holds expire: gateway/store.py)."""
        while True:
            await asyncio.sleep(settings.GATEWAY_HOLD_SECONDS / 3)
            try:
                await get_store().renew(list(chat.ACTIVE_HOLDS))
            except Exception:
                log.warning("could not renew reservations; they expire in %s s unless renewed",
                            settings.GATEWAY_HOLD_SECONDS, exc_info=True)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "resync":
            # Events may have been missed: reload every key before trusting it again, but do
            # not drop them. The subscription is renewed whenever its connection idles out, and
            # dropping every key then would refuse them all while the database is away.
            self.snapshots.expire_all()
        elif kind in ("config", "project_deleted"):
            self.snapshots.forget_organization(event.get("organization", ""))
        if kind == "project_deleted":
            for task, exchange in list(self.inflight.get(event.get("project", ""), ())):
                exchange.cancel_reason = "project_deleted"
                task.cancel()

    # --- requests --------------------------------------------------------------------------

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        self.ensure_started()
        path, method = scope["path"].rstrip("/"), scope["method"]
        origin = cors.allowed_origin(scope)
        if method == "OPTIONS":  # a preflight: answered before anything else, without a key
            preflight = cors.preflight_headers(scope, origin) if origin else {"allow": cors.METHODS}
            await send({"type": "http.response.start", "status": 204, "headers": http.encode_headers(preflight)})
            return await send({"type": "http.response.body", "body": b""})
        if origin:
            send = cors.with_cors(send, origin)
        request_id = http.header(scope, b"x-request-id") or ""
        if not REQUEST_ID.match(request_id):
            request_id = "req_" + random_string(20)
        logs.start(request_id=request_id)  # on every line this request logs, and its tasks
        headers = {"x-request-id": request_id}
        shape = messages.error_body if path.startswith("/v1/messages") else GatewayError.body
        try:
            if path in ENDPOINTS:
                if method != "POST":
                    raise GatewayError(405, f"Use POST for {path}.", "method_not_allowed")
                endpoint, handler, api = ENDPOINTS[path](scope)
                return await self.serve(scope, receive, send, request_id, handler, api, endpoint)
            if path == "/v1/messages/count_tokens":
                if method != "POST":
                    raise GatewayError(405, "Use POST for /v1/messages/count_tokens.", "method_not_allowed")
                snapshot = _check_access(await self._fresh(scope, await self._snapshot(scope)))
                raw = await http.read_body(scope, receive, settings.GATEWAY_MAX_BODY_BYTES)
                counted = await messages.count_tokens(snapshot, raw, messages.client_headers(scope))
                return await http.send_json(send, 200, counted, headers)
            if path == "/v1/key":
                if method != "GET":
                    raise GatewayError(405, "Use GET for /v1/key.", "method_not_allowed")
                snapshot = _known(await self._fresh(scope, await self._snapshot(scope)))
                return await http.send_json(send, 200, {"data": await key_state(snapshot)}, headers)
            if path == "/v1/models" or path.startswith("/v1/models/"):
                if method != "GET":
                    raise GatewayError(405, "Use GET for /v1/models.", "method_not_allowed")
                snapshot = _check_access(await self._fresh(scope, await self._snapshot(scope)))
                if path == "/v1/models":
                    return await http.send_json(send, 200, models_list(snapshot), headers)
                return await http.send_json(send, 200, _one_model(snapshot, path.removeprefix("/v1/models/")), headers)
            raise GatewayError(404, f"Unknown endpoint {scope['path']}.", "not_found")
        except GatewayError as e:
            await http.send_error(send, e, headers, shape)
        except DatabaseError:
            log.warning("database unavailable for a cold key", exc_info=True)
            error = GatewayError(503, "The gateway cannot verify this API key right now; try again shortly.",
                                 "service_unavailable", headers={"Retry-After": "2"})
            await http.send_error(send, error, headers, shape)
        except Exception:
            log.exception("unexpected error in %s", path)
            error = GatewayError(503, "The gateway could not handle this request.", "internal_error")
            await http.send_error(send, error, headers, shape)

    async def _snapshot(self, scope: http.Scope) -> KeySnapshot | None:
        address = (scope.get("client") or ("unknown",))[0]
        key = _presented_key(scope)
        token_hash = sha256_hex(key) if key else ""
        # Keys already held never touch the counter; an unknown one from a guessing address is
        # looked up at most once a second (gateway/throttle.py).
        if not self.snapshots.warm(token_hash) and not await self.bad_keys.may_look_up(address):
            raise GatewayError(429, "Too many requests with invalid API keys; try again in a second.", "rate_limited",
                               headers={"Retry-After": "1"})
        snapshot = await self.snapshots.get(token_hash) if key else None
        if snapshot is None:
            await self.bad_keys.failed(address)
            if not key:
                raise GatewayError(401, "Missing API key: send 'Authorization: Bearer <key>'.", "invalid_api_key")
        else:  # on every line this request logs from here on
            logs.bind(organization_id=snapshot.org_id, project_id=snapshot.project_id, api_key_id=snapshot.key_id)
        return snapshot

    async def _reload(self, scope: http.Scope) -> KeySnapshot | None:
        key = _presented_key(scope)
        return await self.snapshots.reload(sha256_hex(key)) if key else None

    async def _fresh(self, scope: http.Scope, snapshot: KeySnapshot | None) -> KeySnapshot | None:
        """The snapshot, reloaded when the organization's configuration moved on since."""
        if snapshot is not None and await get_store().config_version(snapshot.org_id) > snapshot.config_version:
            return await self._reload(scope)
        return snapshot

    async def serve(self, scope: http.Scope, receive: http.Receive, send: http.Send, request_id: str,
                    handler: Handler, api: chat.ChatApi = chat.CHAT, endpoint: str = "chat.completions") -> None:
        """One request of an API endpoint (`handler`: chat.handle for chat completions and the
        APIs served over them, or embeddings.handle), with what they share: the key's checks,
        the body's size cap, the in-flight registry the project-deletion stop uses, errors in
        the API's shape, and the usage record once."""
        # A request of a known key is logged whatever happens to it, refusals included.
        snapshot = _known(await self._snapshot(scope))
        exchange = chat.Exchange(
            snapshot=snapshot, request_id=request_id, no_cache=(http.header(scope, b"x-no-cache") or "").lower() == "true",
            api=api, endpoint=endpoint,
        )
        task = asyncio.current_task()
        assert task is not None  # an ASGI server runs each request in a task
        watchers: list[asyncio.Task[None]] = []
        entry = (task, exchange)
        self.inflight.setdefault(snapshot.project_id, set()).add(entry)

        def watch() -> None:
            watchers.append(asyncio.create_task(self._watch_disconnect(receive, task, exchange)))

        try:
            if key_refusal(snapshot) is not None:  # refused only on a current snapshot
                exchange.snapshot = snapshot = _known(await self._fresh(scope, snapshot))
            _check_access(snapshot)
            raw = await http.read_body(scope, receive, settings.GATEWAY_MAX_BODY_BYTES)
            await handler(exchange, raw, send, watch, lambda: self._reload(scope))
        except GatewayError as e:
            await chat.error_during(exchange, e, send)
        except ConnectionResetError:
            exchange.canceled, exchange.status, exchange.error = True, 499, "the client went away"
        except asyncio.CancelledError:
            if exchange.cancel_reason is None:
                raise  # the server is shutting down: not ours to swallow
            task.uncancel()
            await self._canceled(exchange, send)
        except Exception:
            log.exception("unexpected error in %s", scope["path"])
            await chat.error_during(exchange, GatewayError(502, "The gateway failed to handle this request.", "upstream_error"), send)
        finally:
            for watcher in watchers:
                watcher.cancel()
            self.inflight.get(snapshot.project_id, set()).discard(entry)
            await asyncio.shield(chat.conclude(exchange))  # once: an answer that went out whole was concluded
            if log.isEnabledFor(logging.DEBUG):
                _log_request(exchange)

    async def _canceled(self, exchange: chat.Exchange, send: http.Send) -> None:
        if exchange.cancel_reason == "client":
            exchange.canceled, exchange.status = True, 499
            exchange.error = exchange.error or "the client closed the connection"
            return
        error = GatewayError(403, "The project was deleted; its requests were stopped.", "permission_denied")
        exchange.canceled = True
        try:
            await chat.error_during(exchange, error, send)
        except Exception:
            pass  # the client may be gone too

    async def _watch_disconnect(self, receive: http.Receive, task: asyncio.Task[Any], exchange: chat.Exchange) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if exchange.cancel_reason is None and not exchange.finished and not task.done():
                    exchange.cancel_reason = "client"
                    task.cancel()
                return
