"""A key's snapshot: everything the data plane needs to know about the caller (the API key,
its project and organization, its IAM rules, the organization's provider keys), as plain
frozen data. Pure: it imports no app, so the allow check and routing can use it anywhere.
gateway/keys.py loads snapshots from the database and holds them in memory.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
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
    own_keys: dict[str, ProviderCreds]  # provider id → the organization's key
    custom_keys: dict[str, ProviderCreds]  # custom provider name → its key and base URL
    # The organization's configuration version when this was read (core/events.py): a
    # reservation that reports a newer one makes the gateway reload the snapshot.
    config_version: int = 0

    @property
    def limit_nanos(self) -> int | None:
        return None if self.usage_limit is None else to_nanos(self.usage_limit)

    @property
    def credited_nanos(self) -> int:
        return to_nanos(self.credits + self.credits_spent)


def snapshot_of(
    *, key: Any | None, project: Any, rules: Iterable[Any], provider_keys: Iterable[Any], with_tokens: bool = True,
    config_version: int = 0,
) -> KeySnapshot:
    """The snapshot of an ApiKey row (or None: a key of the project with no limit and no
    rules), its Project (with `organization` loaded), its active IamRule rows and the
    organization's active ProviderKey rows, oldest first. Duck-typed so that this module
    needs no app: a provider key gives its secret through `plaintext_token()`, read only
    `with_tokens` (choosing a provider does not need it), and a custom one its declared
    prices through `prices`. The first key of a built-in provider serves it; custom providers
    go by name."""
    org = project.organization
    own: dict[str, ProviderCreds] = {}
    custom: dict[str, ProviderCreds] = {}
    for pk in provider_keys:
        prices = _prices_of(pk.prices) if pk.provider == "custom" else {}
        creds = ProviderCreds(pk.provider, pk.name, pk.plaintext_token() if with_tokens else "", pk.base_url, prices)
        if pk.provider == "custom":
            custom[pk.name] = creds
        else:
            own.setdefault(pk.provider, creds)
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
        config_version=config_version,
    )
