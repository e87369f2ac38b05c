"""`Authorization: Bearer <session token>` for the management API, and what django-axes
needs to throttle sign-ins on every path (the API, the dashboard, the admin)."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import authentication, exceptions

from core.rest import error_body
from projects.services import session_user


class SessionTokenAuthentication(authentication.BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header: use 'Bearer <token>'")
        found = session_user(header[1])
        if found is None:
            raise exceptions.AuthenticationFailed("invalid or expired session token")
        return found  # (user, SessionToken): the token is request.auth, for logout

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The account a sign-in attempt is for: the email, lowercased, from the credentials (axes
    keys them by AXES_USERNAME_FORM_FIELD, Django's signals by `username`) or from the form
    (the dashboard's `email`, the admin's `username`)."""
    credentials = credentials or {}
    given = (credentials.get("email") or credentials.get("username")  # axes' own key, or authenticate()'s
             or request.POST.get("email") or request.POST.get("username") or "")
    return str(given).strip().lower()


def lockout_response(request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None) -> HttpResponse:
    """A locked-out sign-in: the API's JSON error with Retry-After, or the sign-in page saying so."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    message = f"Too many failed sign-ins for this account from this address; try again in {seconds // 60} minutes."
    if request.path.startswith("/api/"):
        answer: HttpResponse = JsonResponse(error_body(message, "rate_limited"), status=429)
    else:
        answer = render(request, "projects/locked_out.html", {"message": message}, status=429)
    answer["Retry-After"] = str(seconds)
    return answer
