"""Template filters of the dashboard."""

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

register = template.Library()


@register.filter
def usd(value: Any, signed: bool = False) -> str:
    """Money for people: cents from a dollar up, four decimals below, and the first two
    significant digits of sub-cent amounts ($0.0000045), never a float's noise."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    sign = "-" if amount < 0 else ("+" if signed and amount > 0 else "")
    amount = abs(amount)
    if amount == 0:
        text = "0.00"
    elif amount >= 1:
        text = f"{amount:,.2f}"
    elif amount >= Decimal("0.01"):
        text = f"{amount:.4f}".rstrip("0")
        text = text if len(text.split(".")[1]) >= 2 else f"{amount:.2f}"
    else:
        digits = -amount.adjusted() + 1  # two significant digits
        text = f"{amount:.{digits}f}".rstrip("0")
    return f"{sign}${text}"


@register.filter
def num(value: Any) -> str:
    """A count with thousands separators."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)
