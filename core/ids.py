"""Prefixed string ids (`org_…`, `proj_…`), as the contract shows them."""

import os
import string
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:  # django-stubs makes fields generic; Django's own classes take no parameters
    _CharField = models.CharField[str, str]
else:
    _CharField = models.CharField

_ALPHABET = string.ascii_letters + string.digits


class _RandomPool:
    """Bytes from the operating system's CSPRNG (os.urandom, as `secrets` uses), read 4 KB at
    a time: a gateway request makes four ids, and one getrandom() system call each cost more
    than the rest of their making. Each byte is handed out once (under a lock: threads make
    ids too), and a forked child starts empty, so that parent and child never share bytes."""

    SIZE = 4096

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # A new lock too: another thread of the parent may have held the old one at the fork.
        self._bytes = bytearray()
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            if len(self._bytes) < n:
                self._bytes = bytearray(os.urandom(max(self.SIZE, n)))
            out = bytes(self._bytes[-n:])
            del self._bytes[-n:]
        return out


_pool = _RandomPool()


def random_string(length: int) -> str:
    """`length` characters of [A-Za-z0-9], uniformly: bytes of 248 and above are dropped
    (248 = 4 × 62) so that the modulo favours no character. Ids are made on every gateway
    request: the bytes come from a pool (_RandomPool), not one system call each."""
    out: list[str] = []
    while len(out) < length:
        out.extend(_ALPHABET[b % 62] for b in _pool.take(length + 8) if b < 248)
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
