"""What a request costs, in exact Decimal USD and in integer nano-dollars for the counters."""

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings

from gateway.catalog import Offer
from gateway.tokens import Usage

NANO = Decimal("0.000000001")
MILLION = Decimal(1_000_000)
# A conservative bytes-per-token ratio for the prompt estimate: real text runs near 4.
PROMPT_BYTES_PER_TOKEN = 2


def to_nanos(usd: Decimal) -> int:
    return int((usd / NANO).to_integral_value(rounding=ROUND_HALF_UP))


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) * NANO).quantize(NANO)


@dataclass(frozen=True)
class Cost:
    input: Decimal
    output: Decimal
    fee: Decimal

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.fee

    @property
    def nanos(self) -> int:
        return to_nanos(self.total)


ZERO_COST = Cost(Decimal(0), Decimal(0), Decimal(0))


def _usd(tokens: int, price_per_million: Decimal) -> Decimal:
    return (Decimal(tokens) * price_per_million / MILLION).quantize(NANO, rounding=ROUND_HALF_UP)


def cost_of(offer: Offer, usage: Usage, *, paid_with_credits: bool) -> Cost:
    """Provider cost split in input and output, plus the gateway fee when credits pay."""
    input_cost = _usd(usage.prompt_tokens, offer.input_price)
    output_cost = _usd(usage.completion_tokens, offer.output_price)
    fee = Decimal(0)
    if paid_with_credits:
        fee = ((input_cost + output_cost) * settings.CREDIT_FEE_PERCENT / 100).quantize(NANO, rounding=ROUND_HALF_UP)
    return Cost(input_cost, output_cost, fee)


def prompt_estimate(body_size: int) -> int:
    return math.ceil(body_size / PROMPT_BYTES_PER_TOKEN)


def output_cap(offer: Offer, body: dict[str, Any]) -> int:
    """The most output tokens the request can produce: what it asks for, within the model's maximum."""
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    cap = offer.max_output or 0
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return min(asked, cap) if cap else asked
    return cap


def worst_case(offer: Offer, body: dict[str, Any], body_size: int, *, paid_with_credits: bool) -> Cost:
    """The most this request can cost on this offer: reserved before calling upstream."""
    usage = Usage(prompt_estimate(body_size), output_cap(offer, body))
    return cost_of(offer, usage, paid_with_credits=paid_with_credits)
