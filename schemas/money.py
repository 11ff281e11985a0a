"""Money as Decimal with exactly two decimals, and its text form. Never float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MONEY_PRECISION = 18  # DecimalType(18, 2): up to 9,999,999,999,999,999.99
MONEY_SCALE = 2


class MoneyError(ValueError):
    """Text that is not an amount, or an amount that does not fit."""


_AMOUNT = re.compile(r"-?(\d{1,16})(?:\.(\d+))?")
# The same rule for an engine's regular expression (Spark's rlike): a plain decimal exact to the cent that
# DecimalType(18, 2) holds as it is.
CENTS_PATTERN = rf"-?[0-9]{{1,{MONEY_PRECISION - MONEY_SCALE}}}([.][0-9]{{1,{MONEY_SCALE}}})?"


def parse_money(text: str, *, places: int = 2) -> Decimal:
    """Parse a plain decimal string (``-12.30``) with at most ``places`` decimals.

    Exponents, signs other than a leading minus, separators, NaN and
    infinities are refused: an amount in a statement is plain digits.
    """
    text = text.strip()
    m = _AMOUNT.fullmatch(text)
    if m is None:
        too_large = re.fullmatch(r"-?\d{17,}(?:\.\d+)?", text)
        raise MoneyError(f"amount too large: {text!r}" if too_large else f"not an amount: {text!r}")
    if m.group(2) is not None and len(m.group(2)) > places:
        raise MoneyError(f"more than {places} decimals: {text!r}")
    return Decimal(text)


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
