"""Would this key be allowed to call this model, and how? The gateway's own decisions, asked
without calling anyone: the key's state, the catalog, the IAM rules, the project's mode, the
organization's provider keys and credits, and the key's usage limit. Pure: the dashboard and
`POST /api/v1/api-keys/{id}/check` build a snapshot from the database and ask here, and
the data plane refuses requests with the same `key_refusal`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from core.money import format_money
from gateway import iam, routing
from gateway.errors import GatewayError
from gateway.snapshot import KeySnapshot


@dataclass(frozen=True)
class OfferVerdict:
    """One provider of the model under the key's IAM rules. Prices in USD per 1M tokens."""

    provider: str
    allowed: bool
    reasons: tuple[str, ...]
    input_price: str
    output_price: str
    custom: bool


@dataclass(frozen=True)
class Verdict:
    """`allowed`: the gateway would send the request upstream, to `provider` first, paid
    the `mode` way ("api-keys": the organization's provider key; "credits"). When not
    allowed, `mode` is the project's mode and `reasons` say why, each naming what to change."""

    model: str
    allowed: bool
    provider: str | None
    mode: str
    reasons: tuple[str, ...]
    known: bool
    offers: tuple[OfferVerdict, ...]


def _lapsed(snapshot: KeySnapshot) -> GatewayError | None:
    """An expired key, or a token replaced by a roll whose grace has ended (read against the
    clock at every request, so that it holds at once on every process)."""
    if snapshot.expires_at is None and snapshot.token_expires_at is None:
        return None
    now = datetime.now(UTC)
    if snapshot.expires_at is not None and snapshot.expires_at <= now:
        return GatewayError(401, f"This API key expired at {snapshot.expires_at.isoformat()}.", "invalid_api_key")
    if snapshot.token_expires_at is not None and snapshot.token_expires_at <= now:
        return GatewayError(401, "This API key was rolled: use its new token.", "invalid_api_key")
    return None


def key_refusal(snapshot: KeySnapshot) -> GatewayError | None:
    """Why the key cannot be used at all (a 401 or 403 in OpenAI's shape), else None."""
    lapsed = _lapsed(snapshot)
    if lapsed is not None:
        return lapsed
    if not snapshot.key_active:
        if snapshot.disabled_reason == "usage_limit":
            return GatewayError(401, "This API key has reached its usage limit.", "usage_limit_reached")
        return GatewayError(401, "This API key is disabled.", "invalid_api_key")
    if not snapshot.project_active:
        return GatewayError(403, "This API key's project is archived.", "permission_denied")
    if not snapshot.org_active:
        return GatewayError(403, "This API key's organization is suspended.", "permission_denied")
    return None


def _offers(snapshot: KeySnapshot, model: str) -> tuple[OfferVerdict, ...]:
    verdicts = []
    for offer in routing.offers_for(snapshot, model):
        reasons = iam.refusals(snapshot.rules, offer)
        verdicts.append(OfferVerdict(
            provider=offer.custom_name or offer.provider, allowed=not reasons, reasons=tuple(reasons),
            input_price=str(offer.input_price), output_price=str(offer.output_price), custom=bool(offer.custom_name),
        ))
    return tuple(verdicts)


def _spend_reasons(snapshot: KeySnapshot, candidates: list[routing.Candidate]) -> list[str]:
    """What the key's limit or the organization's credits would refuse before any call."""
    if snapshot.usage_limit is not None and snapshot.usage >= snapshot.usage_limit:
        return [f"the key's usage (${format_money(snapshot.usage)}) has reached its limit "
                f"(${format_money(snapshot.usage_limit)})"]
    if all(c.paid_with_credits for c in candidates) and snapshot.credits <= 0:
        return [f"only credits could pay, and the organization has ${format_money(snapshot.credits)} of credits "
                "(402 insufficient_credits): add credits or a provider key"]
    return []


def check(snapshot: KeySnapshot, model: str) -> Verdict:
    """The gateway's answer to a request for `model` with this key, short of calling the
    provider (a request's own size can still exceed what the limit or credits leave)."""
    offers = _offers(snapshot, model)
    refused = key_refusal(snapshot)
    reasons: list[str] = [refused.message] if refused else []
    candidates: list[routing.Candidate] = []
    try:
        candidates = routing.candidates(snapshot, model)
    except GatewayError as e:
        reasons.append(e.message)
    if candidates:
        reasons += _spend_reasons(snapshot, candidates)
    allowed = not reasons
    first = candidates[0] if candidates and allowed else None
    return Verdict(
        model=model, allowed=allowed, provider=first.provider if first else None,
        mode=first.mode if first else snapshot.mode, reasons=tuple(reasons), known=bool(offers), offers=offers,
    )
