"""What every admin page shares: writes go through the services, and a service's refusal
(a ServiceError: a limit reached, the last owner, a malformed rule) is shown as a message
instead of a 500, with nothing saved."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db import models
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from core.errors import ServiceError

if TYPE_CHECKING:  # django-stubs makes ModelAdmin generic; Django's own class takes no parameter
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


class ServiceAdmin(_ModelAdmin):
    """A ModelAdmin whose save_model / save_formset / delete_model call services. Django runs
    each change form in a transaction, so a refusal leaves nothing half-written."""

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ServiceError as e:
            self.message_user(request, e.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)
        except ServiceError as e:
            self.message_user(request, e.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def record_formset_saves(
    formset: Any,
    *,
    new: Sequence[models.Model],
    changed: Sequence[tuple[models.Model, BaseForm]],
    deleted: Sequence[models.Model],
) -> None:
    """What a formset's own save() would have recorded, for the admin's change history,
    when its rows were written by services instead: `changed` holds (object, form)."""
    formset.new_objects = new
    formset.changed_objects = [(obj, form.changed_data) for obj, form in changed]
    formset.deleted_objects = deleted


class ReadOnlyAdmin(_ModelAdmin):
    """Records of what happened: searchable, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
