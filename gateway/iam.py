"""An API key's IAM rules, applied to one offer (a provider serving a model).

No active rule: everything is allowed. Any matching deny wins. Allow rules of one type are
OR'd (any of them may allow), allow rules of different types AND'd (each type must allow).

Pricing rules: an allow rule admits offers within its limits (`pricingType` free/paid, and
input/output prices at most `maxInputPrice` / `maxOutputPrice`); a deny rule refuses
offers of its `pricingType` or priced above its maxima. A model whose price the gateway does
not know (pinned, outside the catalog) is within no allow rule's limits and refused by any deny rule with a maximum.

Model rules name a model by any id its provider uses (gateway/catalog.py resolves them).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.catalog import Offer, resolve

RULE_LABELS = {
    "allow_models": "Allow only these models",
    "deny_models": "Deny these models",
    "allow_providers": "Allow only these providers",
    "deny_providers": "Deny these providers",
    "allow_pricing": "Allow only models within a price",
    "deny_pricing": "Deny models by price",
}


@dataclass(frozen=True)
class Rule:
    """An active IAM rule: `rule_type` one of RULE_LABELS, `value` its stored ruleValue."""

    rule_type: str
    value: dict[str, Any]


def _provider_names(offer: Offer) -> set[str]:
    return {offer.provider, offer.custom_name} - {""}


def _names_model(offer: Offer, ref: str) -> bool:
    """Whether a rule's model id names this offer's model, under any id its provider uses
    (`claude-sonnet-4-20250514` names `claude-sonnet-4-0`), pinned or bare."""
    provider = offer.custom_name or offer.provider
    prefix, slash, rest = ref.partition("/")
    if slash and prefix == provider:
        ref = rest
    if ref in offer.ids or ref == offer.model:
        return True
    if offer.custom_name or not offer.priced:
        return False
    other = resolve(offer.provider, ref)
    return other is not None and bool(other.ids & offer.ids)


def _pricing_type(offer: Offer) -> str:
    # A custom provider's model without declared prices costs nothing through the gateway.
    return "free" if offer.is_free or (offer.custom_name and not offer.priced) else "paid"


def _unknown(offer: Offer) -> bool:
    """A catalog model whose price the gateway does not know (a pinned model it passes through)."""
    return not offer.priced and not offer.custom_name


def _within(offer: Offer, value: dict[str, Any]) -> bool:
    if _unknown(offer):  # an unknown price is within no limit
        return False
    if "pricingType" in value and value["pricingType"] != _pricing_type(offer):
        return False
    if "maxInputPrice" in value and offer.input_price > Decimal(value["maxInputPrice"]):
        return False
    if "maxOutputPrice" in value and offer.output_price > Decimal(value["maxOutputPrice"]):
        return False
    return True


def _denies(offer: Offer, value: dict[str, Any]) -> bool:
    if _unknown(offer) and ("maxInputPrice" in value or "maxOutputPrice" in value):
        return True
    if "pricingType" in value and value["pricingType"] == _pricing_type(offer):
        return True
    if "maxInputPrice" in value and offer.input_price > Decimal(value["maxInputPrice"]):
        return True
    return "maxOutputPrice" in value and offer.output_price > Decimal(value["maxOutputPrice"])


def _matches(rule: Rule, offer: Offer) -> bool:
    kind = rule.rule_type.split("_", 1)[1]
    if kind == "models":
        return any(_names_model(offer, ref) for ref in rule.value.get("models", ()))
    if kind == "providers":
        return bool(_provider_names(offer) & set(rule.value.get("providers", ())))
    return _denies(offer, rule.value) if rule.rule_type.startswith("deny") else _within(offer, rule.value)


def allows(rules: tuple[Rule, ...], offer: Offer) -> bool:
    """Whether the rules let this offer serve (docstring of the module for the semantics)."""
    allowed_by_type: dict[str, bool] = {}
    for rule in rules:
        matched = _matches(rule, offer)
        if rule.rule_type.startswith("deny_"):
            if matched:
                return False
        else:
            allowed_by_type[rule.rule_type] = allowed_by_type.get(rule.rule_type, False) or matched
    return all(allowed_by_type.values())


def refusals(rules: tuple[Rule, ...], offer: Offer) -> list[str]:
    """Why the rules refuse this offer, one reason per rule at fault ([] when allowed)."""
    reasons: list[str] = []
    allowed_by_type: dict[str, bool] = {}
    for rule in rules:
        matched = _matches(rule, offer)
        if rule.rule_type.startswith("deny_"):
            if matched:
                reasons.append(f"denied by the rule “{RULE_LABELS[rule.rule_type]}”")
        else:
            allowed_by_type[rule.rule_type] = allowed_by_type.get(rule.rule_type, False) or matched
    reasons += [f"not admitted by any rule “{RULE_LABELS[t]}”" for t, ok in allowed_by_type.items() if not ok]
    return reasons
