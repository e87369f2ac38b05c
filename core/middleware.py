"""Response headers every Django page gets."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# Scripts only from this server (htmx is served from django-htmx's static files, no CDN; no
# inline script, no eval). Inline styles stay allowed: the server-drawn SVG charts carry
# their own <style> and htmx adds its indicator style; a style cannot run code.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    """Adds the Content-Security-Policy header to every Django answer that has none (the
    dashboard, the admin, the API docs; /v1 never passes through Django)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
