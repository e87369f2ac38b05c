"""What every dashboard page shares, whatever app it belongs to: who may open it, and
rendering one template either as a whole page or, for htmx, as one of its partials.

Views stay parse → service → render: a NotFound from a service or an access check is the
404 page, a PermissionDenied the 403 page, and a ServiceError a user can cause is shown in
place on the form it came from (`show_error`).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect

from core.errors import NotFound, PermissionDenied, ServiceError

View = Callable[..., HttpResponse]


def dashboard_view(view: View) -> View:
    """Signed-in users only; NotFound is a 404 page and a role too low a 403 page."""

    @wraps(view)
    def signed_in(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if any("\x00" in value for value in kwargs.values()):  # no id has one; PostgreSQL refuses them
            raise Http404("not found")
        htmx = getattr(request, "htmx", None)
        if htmx and not request.user.is_authenticated:  # the session ended: the whole page logs in
            back = quote(htmx.current_url_abs_path or "/")
            return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?next={back}")
        return checked(request, *args, **kwargs)

    @login_required
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as e:
            raise Http404(e.message) from None
        except PermissionDenied as e:
            raise DjangoPermissionDenied(e.message) from None

    return signed_in


def wants_partial(request: HttpRequest) -> bool:
    """True when htmx asks for a piece of a page. Not for a boosted link (it swaps the whole
    body) nor for htmx's history restore (the back button after the page left htmx's cache:
    it must get the whole page, or the browser shows a bare fragment)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx and not htmx.boosted and not htmx.history_restore_request)


def render_page(
    request: HttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None, status: int = 200
) -> HttpResponse:
    """The whole page, or only `template#partial` when htmx asks for a piece of it. The
    answer varies with HX-Request, so no cache hands a fragment to a full page load."""
    name = f"{template}#{partial}" if partial and wants_partial(request) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def redirect_page(request: HttpRequest, url: str) -> HttpResponse:
    """A redirect that also moves the whole page when htmx made the request."""
    if getattr(request, "htmx", None):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def show_error(form: Form, error: ServiceError) -> None:
    """Puts a service's error on the form field it names, or above the form. Services name
    fields in the domain's terms (`usage_limit`, `rule_value.models`), which are the form's
    field names; a dotted name goes to its last part, or where the form's `field_for(name)`
    says when it packs several fields into one value."""
    placed = False
    field_for = getattr(form, "field_for", None)
    for name, messages in (error.fields or {}).items():
        for field in (name, name.rsplit(".", 1)[-1], field_for(name) if field_for else name):
            if field in form.fields:
                form.add_error(field, list(messages))
                placed = True
                break
    if not placed:
        form.add_error(None, error.message)
