"""A key's snapshot: everything the data plane needs to know about the caller (the API key,
its project and organization, its IAM rules, the organization's provider keys), as plain
frozen data. Pure: it imports no app, so the allow check and routing can use it anywhere.
gateway/keys.py loads snapshots from the database and holds them in memory.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.iam import Rule
from gateway.pricing import to_nanos


@dataclass(frozen=True)
class ProviderCreds:
    provider: str
    name: str
    token: str = field(repr=False)
    base_url: str
    # A custom provider's declared prices: model id → (input, output) USD per 1M tokens.
    prices: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    key_id: str = ""  # the ProviderKey row (the gateway counts the provider's rejections of it)


def _prices_of(stored: Any) -> dict[str, tuple[Decimal, Decimal]]:
    """A provider key's stored prices ({"<model>": {"inputPrice": "0.5", "outputPrice": "1.5"}},
    checked when written) as (input, output) Decimals of USD per 1M tokens."""
    return {
        model: (Decimal(entry["inputPrice"]), Decimal(entry["outputPrice"]))
        for model, entry in (stored or {}).items()
    }


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
    own_keys: dict[str, ProviderCreds]  # provider id → the organization's first key (by priority)
    custom_keys: dict[str, ProviderCreds]  # custom provider name → its key and base URL
    # provider id → every active key of the organization for it, in priority order (the
    # gateway moves to the next on a refusal, a 429, a 5xx or a timeout); own_keys holds the first.
    own_key_lists: dict[str, tuple[ProviderCreds, ...]] = field(default_factory=dict)
    # The organization's configuration version when this was read (core/events.py): a
    # reservation that reports a newer one makes the gateway reload the snapshot.
    config_version: int = 0
    # Recurring limit: USD per `period_duration` window (core/periods.py), and what the
    # database had counted in the window starting at `period_start` when this was read.
    period_limit: Decimal | None = None
    period_duration: str | None = None
    period_start: datetime | None = None
    period_usage: Decimal = Decimal(0)
    expires_at: datetime | None = None  # the key stops working then
    token_expires_at: datetime | None = None  # the presented token was rolled: it stops working then
    rate_limit_rpm: int | None = None  # requests per minute
    rate_limit_tpm: int | None = None  # tokens per minute
    log_content: bool = False  # keep the request's messages and answer with its usage record (gateway/content.py)

    @property
    def limit_nanos(self) -> int | None:
        return None if self.usage_limit is None else to_nanos(self.usage_limit)

    @property
    def credited_nanos(self) -> int:
        return to_nanos(self.credits + self.credits_spent)


def snapshot_of(
    *, key: Any | None, project: Any, rules: Iterable[Any], provider_keys: Iterable[Any], with_tokens: bool = True,
    config_version: int = 0, period: tuple[datetime, Decimal] | None = None, token_expires_at: datetime | None = None,
) -> KeySnapshot:
    """The snapshot of an ApiKey row (or None: a key of the project with no limit and no
    rules), its Project (with `organization` loaded), its active IamRule rows and the
    organization's active ProviderKey rows, oldest first. Duck-typed so that this module
    needs no app: a provider key gives its secret through `plaintext_token()`, read only
    `with_tokens` (choosing a provider does not need it), and a custom one its declared
    prices through `prices`. The keys of a built-in provider serve it in `priority` order (a
    stable sort: the caller's order among equals); custom providers go by name. `period`:
    the key's current window start and what the database counted in it; `token_expires_at`:
    when the presented (rolled) token stops."""
    org = project.organization
    lists: dict[str, list[ProviderCreds]] = {}
    custom: dict[str, ProviderCreds] = {}
    for pk in sorted(provider_keys, key=lambda pk: getattr(pk, "priority", 0)):
        prices = _prices_of(pk.prices) if pk.provider == "custom" else {}
        creds = ProviderCreds(pk.provider, pk.name, pk.plaintext_token() if with_tokens else "", pk.base_url, prices,
                              key_id=getattr(pk, "id", ""))
        if pk.provider == "custom":
            custom[pk.name] = creds
        else:
            lists.setdefault(pk.provider, []).append(creds)
    own = {provider: chain[0] for provider, chain in lists.items()}
    return KeySnapshot(
        key_id=key.id if key else "",
        key_active=key.status == "active" if key else True,
        disabled_reason=key.disabled_reason if key else None,
        usage_limit=key.usage_limit if key else None,
        usage=key.usage if key else Decimal(0),
        project_id=project.id,
        project_active=project.status == "active",
        mode=project.mode,
        caching_enabled=project.caching_enabled,
        cache_duration_seconds=project.cache_duration_seconds,
        cache_version=project.cache_version,
        org_id=org.id,
        org_active=org.status == "active",
        credits=org.credits,
        credits_spent=org.credits_spent,
        rules=tuple(Rule(r.rule_type, r.rule_value) for r in rules),
        own_keys=own,
        custom_keys=custom,
        own_key_lists={provider: tuple(chain) for provider, chain in lists.items()},
        config_version=config_version,
        period_limit=key.period_usage_limit if key else None,
        period_duration=key.period_usage_duration if key else None,
        period_start=period[0] if period else None,
        period_usage=period[1] if period else Decimal(0),
        expires_at=key.expires_at if key else None,
        token_expires_at=token_expires_at,
        rate_limit_rpm=key.rate_limit_rpm if key else None,
        rate_limit_tpm=key.rate_limit_tpm if key else None,
        log_content=bool(getattr(project, "log_content", False)),
    )
