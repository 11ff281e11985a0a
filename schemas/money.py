"""Money as Decimal with exactly two decimals, and its text form. Never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
MONEY_PRECISION = 18  # DecimalType(18, 2): up to 9,999,999,999,999,999.99
MONEY_SCALE = 2
_LIMIT = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)


class MoneyError(ValueError):
    """Text that is not an amount, or an amount that does not fit."""


def parse_money(text: str, *, places: int = 2) -> Decimal:
    """Parse a decimal string with at most ``places`` decimals; reject floats' notations and junk."""
    text = text.strip()
    if not text or any(c in text for c in "eEnN_ ") or text.startswith("+"):
        raise MoneyError(f"not an amount: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"not an amount: {text!r}") from None
    if value.as_tuple().exponent < -places:
        raise MoneyError(f"more than {places} decimals: {text!r}")
    if abs(value) >= _LIMIT:
        raise MoneyError(f"amount too large: {text!r}")
    return value


def round_money(value: Decimal) -> Decimal:
    """Round to the cent, half up (the rounding channels use for fees)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(value: Decimal) -> str:
    """The standard text of an amount: exactly two decimals, no exponent.

    Refuses a value with more precision than a cent: rounding is a decision
    the caller makes explicitly with ``round_money``.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be Decimal, got {type(value).__name__}")
    quantized = value.quantize(CENT)
    if quantized != value:
        raise MoneyError(f"{value} has more than 2 decimals; round it explicitly")
    text = format(quantized, "f")
    return "0.00" if text == "-0.00" else text
