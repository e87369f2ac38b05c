"""Who is calling: an API key with its project, organization, IAM rules and provider keys,
read once from the database and then held in process memory (no SQL on a warm key).

A snapshot lives SNAPSHOT_TTL seconds at most and is dropped at once when an event says
its organization's configuration changed (core/events.py).
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from gateway.iam import Rule
from gateway.pricing import to_nanos

log = logging.getLogger(__name__)
STALE_RETRY_SECONDS = 3


@dataclass(frozen=True)
class ProviderCreds:
    provider: str
    name: str
    token: str = field(repr=False)
    base_url: str


@dataclass(frozen=True)
class KeySnapshot:
    key_id: str
    key_active: bool
    disabled_reason: str | None
    usage_limit: Decimal | None
    usage: Decimal
    project_id: str
    project_active: bool
    mode: str
    caching_enabled: bool
    cache_duration_seconds: int
    cache_version: int
    org_id: str
    org_active: bool
    credits: Decimal
    credits_spent: Decimal
    rules: tuple[Rule, ...]
    own_keys: dict[str, ProviderCreds]  # provider id → the organization's key
    custom_keys: dict[str, ProviderCreds]  # custom provider name → its key and base URL

    @property
    def limit_nanos(self) -> int | None:
        return None if self.usage_limit is None else to_nanos(self.usage_limit)

    @property
    def credited_nanos(self) -> int:
        return to_nanos(self.credits + self.credits_spent)


def load_snapshot(token_hash: str) -> KeySnapshot | None:
    """Three queries: the key with its project and organization, its rules, the provider keys."""
    from apikeys.models import ApiKey, IamRule, ProviderKey
    from apikeys.services import provider_key_token

    # Django retires a broken or aged connection at each request's start and end; /v1 runs
    # outside that cycle, so it is done here. Otherwise a connection broken by a database
    # restart stays broken: every later load fails although the database is back. (Never
    # inside a transaction, which closing would end.)
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
    key = ApiKey.objects.select_related("project__organization").filter(token_hash=token_hash).first()
    if key is None:
        return None
    project, org = key.project, key.project.organization
    rules = tuple(
        Rule(r.rule_type, r.rule_value)
        for r in IamRule.objects.filter(api_key=key, status=IamRule.Status.ACTIVE).order_by("created_at")
    )
    own, custom = {}, {}
    for pk in ProviderKey.objects.filter(organization=org, status=ProviderKey.Status.ACTIVE).order_by("created_at"):
        creds = ProviderCreds(pk.provider, pk.name, provider_key_token(pk), pk.base_url)
        if pk.provider == "custom":
            custom[pk.name] = creds
        else:
            own.setdefault(pk.provider, creds)
    return KeySnapshot(
        key_id=key.id,
        key_active=key.status == ApiKey.Status.ACTIVE,
        disabled_reason=key.disabled_reason,
        usage_limit=key.usage_limit,
        usage=key.usage,
        project_id=project.id,
        project_active=project.status == project.Status.ACTIVE,
        mode=project.mode,
        caching_enabled=project.caching_enabled,
        cache_duration_seconds=project.cache_duration_seconds,
        cache_version=project.cache_version,
        org_id=org.id,
        org_active=org.status == org.Status.ACTIVE,
        credits=org.credits,
        credits_spent=org.credits_spent,
        rules=rules,
        own_keys=own,
        custom_keys=custom,
    )


class SnapshotCache:
    def __init__(self, ttl: float | None = None):
        self.ttl = settings.GATEWAY_SNAPSHOT_TTL if ttl is None else ttl
        self._entries: dict[str, tuple[KeySnapshot, float]] = {}
        self._loading: dict[str, asyncio.Future] = {}

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
