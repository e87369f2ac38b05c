"""CORS for the /v1 gateway, so browser applications can call it with an API key (never
cookies: credentials are not allowed). Preflights answer 204; every answer to an allowed
origin carries Access-Control-Allow-Origin and exposes the gateway's own headers. Follows the
Fetch standard's CORS protocol (https://fetch.spec.whatwg.org/#http-cors-protocol)."""

from django.conf import settings

from gateway import http

# Headers a browser application may read from an answer.
EXPOSED = ("x-request-id, x-gateway-provider, x-gateway-cost, x-gateway-cache, x-gateway-max-tokens, retry-after, "
           "x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, "
           "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens")
METHODS = "GET, POST, OPTIONS"
MAX_AGE = "600"  # seconds a browser may cache a preflight


def allowed_origin(scope: http.Scope) -> str | None:
    """The value of Access-Control-Allow-Origin for this request, or None (no CORS headers)."""
    origin = http.header(scope, b"origin")
    if not origin:
        return None
    allowed = settings.CORS_ALLOWED_ORIGINS
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/") in allowed else None


def preflight_headers(scope: http.Scope, origin: str) -> dict[str, str]:
    """The answer to an OPTIONS preflight from an allowed origin: the methods, and the headers
    the browser asked to send (any: authentication is by API key)."""
    asked = http.header(scope, b"access-control-request-headers") or "authorization, content-type"
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": METHODS,
        "access-control-allow-headers": asked,
        "access-control-max-age": MAX_AGE,
        "vary": "Origin, Access-Control-Request-Headers",
    }


def with_cors(send: http.Send, origin: str) -> http.Send:
    """`send`, adding the CORS headers to the answer's start."""
    extra = [(b"access-control-allow-origin", origin.encode("latin-1")),
             (b"access-control-expose-headers", EXPOSED.encode()), (b"vary", b"Origin")]

    async def sending(message: http.Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending
