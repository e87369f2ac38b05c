"""An API key's IAM rules, applied to one offer (a provider serving a model).

No active rule: everything is allowed. Any matching deny wins. Allow rules of one type are
OR'd (any of them may allow), allow rules of different types AND'd (each type must allow).

Pricing rules: an allow rule admits offers within its limits (`pricingType` free/paid, and
input/output prices at most `maxInputPrice` / `maxOutputPrice`); a deny rule refuses
offers of its `pricingType` or priced above its maxima.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.catalog import Offer

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


def _model_names(offer: Offer) -> set[str]:
    provider = offer.custom_name or offer.provider
    return {offer.model, f"{provider}/{offer.model}"}


def _pricing_type(offer: Offer) -> str:
    return "free" if offer.is_free else "paid"


def _within(offer: Offer, value: dict[str, Any]) -> bool:
    if "pricingType" in value and value["pricingType"] != _pricing_type(offer):
        return False
    if "maxInputPrice" in value and offer.input_price > Decimal(value["maxInputPrice"]):
        return False
    if "maxOutputPrice" in value and offer.output_price > Decimal(value["maxOutputPrice"]):
        return False
    return True


def _denies(offer: Offer, value: dict[str, Any]) -> bool:
    if "pricingType" in value and value["pricingType"] == _pricing_type(offer):
        return True
    if "maxInputPrice" in value and offer.input_price > Decimal(value["maxInputPrice"]):
        return True
    return "maxOutputPrice" in value and offer.output_price > Decimal(value["maxOutputPrice"])


def _matches(rule: Rule, offer: Offer) -> bool:
    kind = rule.rule_type.split("_", 1)[1]
    if kind == "models":
        return bool(_model_names(offer) & set(rule.value.get("models", ())))
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
