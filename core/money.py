"""Money is Decimal USD; the API shows it as a decimal string ("100.00")."""

from decimal import Decimal

CENT = Decimal("0.01")
MONEY_MAX_DIGITS = 24
MONEY_DECIMAL_PLACES = 10  # a request can cost a millionth of a dollar


def format_money(value: Decimal | None) -> str | None:
    """At least two decimals, and every digit that is not a trailing zero."""
    if value is None:
        return None
    value = Decimal(value)
    normalized = value.normalize()
    if normalized.as_tuple().exponent > -2:
        return str(value.quantize(CENT))
    return f"{normalized:f}"
