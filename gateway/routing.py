"""Which providers may serve a request: the model asked for, the project's mode, the
organization's keys and the API key's IAM rules, cheapest first."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from gateway import catalog, iam
from gateway.errors import GatewayError
from gateway.providers import PROVIDERS
from gateway.snapshot import KeySnapshot


@dataclass(frozen=True, slots=True)
class Candidate:
    offer: catalog.Offer
    token: str
    base_url: str
    paid_with_credits: bool
    # The base URL came from the organization's provider key (not the operator's settings):
    # it is resolved to public addresses only, at connect time (gateway/upstream.py).
    org_url: bool = False
    key_id: str = ""  # the organization's ProviderKey it uses; "" for the gateway's own key

    @property
    def provider(self) -> str:
        """The provider as logs and headers show it (a custom provider by its name)."""
        return self.offer.custom_name or self.offer.provider

    @property
    def mode(self) -> str:
        return "credits" if self.paid_with_credits else "api-keys"

    @property
    def wire_format(self) -> str:
        return PROVIDERS[self.offer.provider].wire_format


def offers_for(snapshot: KeySnapshot, model: str) -> list[catalog.Offer]:
    """`provider/model` pins a provider (a model the catalog does not know passes through
    unpriced), `<custom name>/model` names a custom one, a bare id takes every provider of the
    model."""
    prefix, slash, rest = model.partition("/")
    if slash and prefix in PROVIDERS and prefix != "custom":
        return [catalog.resolve(prefix, rest) or catalog.unknown_offer(prefix, rest)] if rest else []
    if slash and prefix in snapshot.custom_keys:
        return [catalog.custom_offer(prefix, rest, snapshot.custom_keys[prefix].prices.get(rest))] if rest else []
    return list(catalog.offers_of(model))


def _payments(snapshot: KeySnapshot, offer: catalog.Offer) -> list[Candidate]:
    """How this offer can be paid under the project's mode: one candidate per organization
    key of the provider, in priority order, else the gateway's own key (credits), else none."""
    if offer.custom_name:
        creds = snapshot.custom_keys.get(offer.custom_name)
        if creds is None or snapshot.mode == "credits":
            return []
        return [Candidate(offer, creds.token, creds.base_url, paid_with_credits=False, org_url=True, key_id=creds.key_id)]
    own = snapshot.own_key_lists.get(offer.provider)
    if own is None and offer.provider in snapshot.own_keys:  # a snapshot made without the lists
        own = (snapshot.own_keys[offer.provider],)
    if own and snapshot.mode != "credits":
        default_url = settings.PROVIDER_BASE_URLS[offer.provider]
        return [Candidate(offer, creds.token, creds.base_url or default_url, paid_with_credits=False,
                          org_url=bool(creds.base_url), key_id=creds.key_id) for creds in own]
    gateway_key = settings.PROVIDER_API_KEYS.get(offer.provider)
    if gateway_key and snapshot.mode != "api-keys" and offer.priced:  # credits pay only a known price
        return [Candidate(offer, gateway_key, settings.PROVIDER_BASE_URLS[offer.provider], paid_with_credits=True)]
    return []


def _effective_price(candidate: Candidate) -> Decimal:
    price = candidate.offer.input_price + candidate.offer.output_price
    return price * (100 + settings.CREDIT_FEE_PERCENT) / 100 if candidate.paid_with_credits else price


def candidates(snapshot: KeySnapshot, model: str) -> list[Candidate]:
    """The candidates to try in order: those of the first 1 + UPSTREAM_MAX_RETRIES providers,
    each provider with all its keys; or the reason none can."""
    return first_providers(usable(snapshot, model), 1 + settings.UPSTREAM_MAX_RETRIES)


def first_providers(chosen: list[Candidate], count: int) -> list[Candidate]:
    """The candidates of the first `count` providers: the retry budget counts providers, so a
    provider with several keys tries them all without crowding out the next provider."""
    providers = list(dict.fromkeys(c.provider for c in chosen))[:count]
    return [c for c in chosen if c.provider in providers]


def per_provider(chosen: list[Candidate]) -> list[Candidate]:
    """The first candidate of each provider (where to show one line per provider)."""
    first: dict[str, Candidate] = {}
    for c in chosen:
        first.setdefault(c.provider, c)
    return list(first.values())


def usable(snapshot: KeySnapshot, model: str) -> list[Candidate]:
    """Every way `model` may be served for this key now, cheapest provider first (a provider
    the organization has several keys for: one candidate per key, in priority order); raises
    the GatewayError saying why none can (404 unknown model, 403 IAM rules, 400 no key)."""
    return _choose(snapshot, model, offers_for(snapshot, model))


def embedding_candidates(snapshot: KeySnapshot, model: str) -> list[Candidate]:
    """The providers to try for an embeddings request, as `candidates` does for chat."""
    prefix, slash, rest = model.partition("/")
    if slash and prefix in PROVIDERS and prefix != "custom":
        known = catalog.resolve_embedding(prefix, rest) if rest else None
        unknown = catalog.unknown_embedding_offer(prefix, rest) if rest and prefix in catalog.EMBEDDING_PROVIDERS else None
        offers = [o for o in (known or unknown,) if o is not None]
    elif slash and prefix in snapshot.custom_keys:
        offers = [catalog.custom_embedding_offer(prefix, rest, snapshot.custom_keys[prefix].prices.get(rest))] if rest else []
    else:
        offers = list(catalog.embedding_offers(model))
    return first_providers(_choose(snapshot, model, offers), 1 + settings.UPSTREAM_MAX_RETRIES)


def _choose(snapshot: KeySnapshot, model: str, offers: list[catalog.Offer]) -> list[Candidate]:
    if not offers:
        raise not_found(model)
    allowed = [o for o in offers if iam.allows(snapshot.rules, o)]
    if not allowed:
        raise GatewayError(403, f"This API key's IAM rules do not allow the model '{model}'.", "permission_denied", param="model")
    payable = [c for o in allowed for c in _payments(snapshot, o)]
    if not payable:
        raise _unpayable(snapshot, model, allowed)
    payable.sort(key=_effective_price)  # stable: a provider's keys stay together, in priority order
    return payable


def not_found(model: str) -> GatewayError:
    """OpenAI's answer for a model it does not have."""
    return GatewayError(404, f"The model '{model}' does not exist or you do not have access to it.", "model_not_found",
                        param="model")


def _unpayable(snapshot: KeySnapshot, model: str, offers: list[catalog.Offer]) -> GatewayError:
    if not any(o.priced or o.custom_name for o in offers) and snapshot.mode != "api-keys":
        return not_found(model)  # credits never pay for an unknown price
    providers = ", ".join(sorted({o.custom_name or o.provider for o in offers}))
    if snapshot.mode == "api-keys" or any(o.custom_name for o in offers):
        return GatewayError(
            400,
            f"No provider key for {providers} in this organization. Add one under Provider Keys, "
            "or switch the project to the credits or hybrid mode.",
            "provider_key_missing",
            param="model",
        )
    return GatewayError(
        400,
        f"The model '{model}' cannot be paid with credits on this gateway ({providers} is not set up). "
        "Add your own provider key.",
        "provider_unavailable",
        param="model",
    )
