"""Who is calling: an API key with its project, organization, IAM rules and provider keys,
read once from the database and then held in process memory (no SQL on a warm key).

A snapshot lives SNAPSHOT_TTL seconds at most and is dropped at once when an event says
its organization's configuration changed (core/events.py).
"""

import asyncio
import logging
import time
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q

from apikeys.models import ApiKey, IamRule, ProviderKey
from apikeys.selectors import api_key_period
from core import events
from gateway.snapshot import KeySnapshot, snapshot_of

log = logging.getLogger(__name__)
STALE_RETRY_SECONDS = 3


def _by_token(token_hash: str, now: datetime) -> Q:
    """The key whose token this is, or whose token was this before a roll still in its grace."""
    return Q(token_hash=token_hash) | Q(previous_token_hash=token_hash, previous_token_expires_at__gt=now)


def load_snapshot(token_hash: str) -> KeySnapshot | None:
    """Four queries (five for a key with a recurring limit: its window's spend): the key's
    organization, then the key with its project and organization, its rules and the provider
    keys. The organization's configuration version is read before the configuration itself:
    a change that lands in between makes the snapshot look older than it is (one reload too
    many), never newer. A token replaced by a roll loads its key until its grace ends."""
    # Django retires a broken or aged connection at each request's start and end; /v1 runs
    # outside that cycle, so it is done here. Otherwise a connection broken by a database
    # restart stays broken: every later load fails although the database is back. (Never
    # inside a transaction, which closing would end.)
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
    now = datetime.now(UTC)
    org_id = ApiKey.objects.filter(_by_token(token_hash, now)).values_list("project__organization_id", flat=True).first()
    if org_id is None:
        return None
    version = events.config_version(org_id)
    key = ApiKey.objects.select_related("project__organization").filter(_by_token(token_hash, now)).first()
    if key is None:
        return None
    rolled = key.token_hash != token_hash
    rules = IamRule.objects.filter(api_key=key, status=IamRule.Status.ACTIVE).order_by("created_at")
    provider_keys = ProviderKey.objects.filter(
        organization_id=key.project.organization_id, status=ProviderKey.Status.ACTIVE
    ).order_by("created_at")
    period = api_key_period(key, now)
    return snapshot_of(key=key, project=key.project, rules=rules, provider_keys=provider_keys, config_version=version,
                       period=(period.start, period.usage) if period else None,
                       token_expires_at=key.previous_token_expires_at if rolled else None)


class SnapshotCache:
    def __init__(self, ttl: float | None = None):
        self.ttl = settings.GATEWAY_SNAPSHOT_TTL if ttl is None else ttl
        self._entries: dict[str, tuple[KeySnapshot, float]] = {}
        self._loading: dict[str, asyncio.Future[KeySnapshot | None]] = {}

    async def get(self, token_hash: str) -> KeySnapshot | None:
        entry = self._entries.get(token_hash)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        # One load per key however many requests arrive while it is cold.
        pending = self._loading.get(token_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._loading[token_hash] = future
        try:
            try:
                snapshot = await sync_to_async(load_snapshot)(token_hash)
            except DatabaseError:
                if entry is None:
                    raise
                # The database is away: a key that was good a moment ago stays good, and
                # the next reload is tried in a few seconds.
                log.warning("database unavailable; serving a stale snapshot of a warm key")
                snapshot = entry[0]
                self._entries[token_hash] = (snapshot, time.monotonic() + STALE_RETRY_SECONDS)
                future.set_result(snapshot)
                return snapshot
            if snapshot is not None:
                self._entries[token_hash] = (snapshot, time.monotonic() + self.ttl)
            future.set_result(snapshot)
            return snapshot
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            del self._loading[token_hash]

    async def reload(self, token_hash: str) -> KeySnapshot | None:
        """The key as the database has it now (the held snapshot is known to be stale)."""
        self._entries.pop(token_hash, None)
        return await self.get(token_hash)

    def warm(self, token_hash: str) -> bool:
        """Whether this key is held now (answering it needs no database)."""
        return token_hash in self._entries

    def forget_organization(self, org_id: str) -> None:
        for token_hash in [h for h, (s, _) in self._entries.items() if s.org_id == org_id]:
            self._entries.pop(token_hash, None)

    def expire_all(self) -> None:
        """Every snapshot is reloaded at its next use, but kept until then: should the
        database be away, the key is still served from it (as when its TTL runs out)."""
        self._entries = {h: (snapshot, 0.0) for h, (snapshot, _) in self._entries.items()}
