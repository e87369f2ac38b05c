"""Money is Decimal USD; the API shows it as a decimal string ("100.00")."""

from decimal import Decimal
from typing import overload

CENT = Decimal("0.01")
MONEY_MAX_DIGITS = 24
MONEY_DECIMAL_PLACES = 10  # a request can cost a millionth of a dollar


@overload
def format_money(value: Decimal) -> str: ...
@overload
def format_money(value: None) -> None: ...
@overload
def format_money(value: Decimal | None) -> str | None: ...
def format_money(value: Decimal | None) -> str | None:
    """At least two decimals, and every digit that is not a trailing zero."""
    if value is None:
        return None
    value = Decimal(value)
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    assert isinstance(exponent, int)  # money is finite: no NaN or infinity ('n', 'N', 'F')
    if exponent > -2:
        return str(value.quantize(CENT))
    return f"{normalized:f}"
