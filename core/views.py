"""The error pages: JSON in the endpoint's shape under /api/ and /v1/, the dashboard's own
styled pages elsewhere (CSRF_FAILURE_VIEW and config/urls.py's handlers point here)."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.middleware.csrf import REASON_BAD_ORIGIN, REASON_NO_CSRF_COOKIE
from django.shortcuts import render
from django.template import loader

from core.rest import error_body


def _json_for_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _json_for_api(request):
        return JsonResponse(error_body("no such endpoint", "not_found"), status=404)
    context = {"title": "Page not found", "status": 404, "request_path": request.path}
    return render(request, "404.html", context, status=404)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _json_for_api(request):
        return JsonResponse(error_body("not allowed", "permission_denied"), status=403)
    context = {"title": "Not allowed", "status": 403, "exception": str(exception or "")}
    return render(request, "403.html", context, status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    if _json_for_api(request):
        return JsonResponse(error_body("internal error; it has been logged", "internal_error"), status=500)
    # Rendered without a request context: the page must not need the database.
    return HttpResponseServerError(loader.get_template("500.html").render())


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A styled page saying what went wrong and what to do, instead of Django's bare 403.
    `reason` is Django's (csrf.REASON_*); it is not shown verbatim."""
    context = {
        "title": "The form could not be checked", "status": 403,
        "no_cookie": reason == REASON_NO_CSRF_COOKIE,
        "bad_origin": reason.startswith(REASON_BAD_ORIGIN.split("%")[0]),
        "secure_cookies": settings.CSRF_COOKIE_SECURE,
    }
    return render(request, "403_csrf.html", context, status=403)
