"""Prefixed string ids (`org_…`, `proj_…`), as the contract shows them."""

import secrets
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:  # django-stubs makes fields generic; Django's own classes take no parameters
    _CharField = models.CharField[str, str]
else:
    _CharField = models.CharField

_ALPHABET = string.ascii_letters + string.digits


def random_string(length: int) -> str:
    """`length` characters of [A-Za-z0-9], uniformly: bytes of 248 and above are dropped
    (248 = 4 × 62) so that the modulo favours no character. One system call, not one per
    character: ids are made on every gateway request."""
    out: list[str] = []
    while len(out) < length:
        out.extend(_ALPHABET[b % 62] for b in secrets.token_bytes(length + 8) if b < 248)
    return "".join(out[:length])


def make_id(prefix: str) -> str:
    return f"{prefix}_{random_string(20)}"


class PrefixedIdField(_CharField):
    """A primary key like `proj_4fQ…`: readable in logs, unguessable, typed by its prefix."""

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        self.prefix = prefix
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("primary_key", True)
        kwargs.setdefault("editable", False)
        super().__init__(**kwargs)

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        for key in ("max_length", "primary_key", "editable"):
            kwargs.pop(key, None)
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        if add and not getattr(model_instance, self.attname):
            setattr(model_instance, self.attname, make_id(self.prefix))
        return super().pre_save(model_instance, add)
