"""Money as Decimal with exactly two decimals, and its text form. Never float."""

from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

CENT = Decimal("0.01")
MONEY_PRECISION = 18  # DecimalType(18, 2): up to 9,999,999,999,999,999.99
MONEY_SCALE = 2


MAX_MONEY = Decimal("9999999999999999.99")  # the largest DecimalType(18, 2) value
# Totals of a statement are exact Decimal sums: the default context has 28 digits, and a sum past them would be
# rounded without a word. 60 digits hold the sum of 10**40 rows at MAX_MONEY with 5 decimals (WeChat's fee).
TOTALS_CONTEXT = Context(prec=60)


class MoneyError(ValueError):
    """Text that is not an amount, or an amount that does not fit."""


_AMOUNT = re.compile(r"-?([0-9]{1,16})(?:\.([0-9]+))?")
_PLAIN = re.compile(r"-?[0-9]+(?:\.([0-9]+))?")
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
        too_large = re.fullmatch(r"-?[0-9]{17,}(?:\.[0-9]+)?", text)
        raise MoneyError(f"amount too large: {text!r} is beyond DECIMAL(18,2) (at most {MAX_MONEY})" if too_large
                         else f"not an amount: {text!r}")
    if m.group(2) is not None and len(m.group(2)) > places:
        raise MoneyError(f"more than {places} decimals: {text!r}")
    return Decimal(text)


def check_money(value: Decimal, what: str = "amount") -> Decimal:
    """``value`` when DecimalType(18, 2) holds it once rounded to the cent, else ``MoneyError``.

    The one range rule of every amount, fee and coupon a normalizer produces, whatever the statement's form
    (major units, minor units, 5 decimals): a value past it used to crash the Parquet copy (ArrowInvalid) or be
    refused by Spark. ``parse_money`` applies it to text; converters of minor units and roundings call it on
    their result (``StandardRecord`` calls it again on every money column, as a last guard).
    """
    if value.is_finite() and -MAX_MONEY <= value <= MAX_MONEY:  # the usual case, without a context switch
        return value
    with localcontext(TOTALS_CONTEXT):
        rounded = value.quantize(CENT, rounding=ROUND_HALF_UP) if value.is_finite() else value
        if not value.is_finite() or abs(rounded) > MAX_MONEY:
            raise MoneyError(f"{what} {format(value, 'f')} is beyond DECIMAL(18,2) (at most {MAX_MONEY})")
    return value


def parse_total(text: str, *, places: int = 2) -> Decimal:
    """A control total as the statement declares it: a plain decimal with at most ``places`` decimals, any number
    of digits. Totals are not amounts of one record: several rows at ``MAX_MONEY`` add up past 18 digits, and
    refusing such a total made a bill whose sums agree fail as "says X, the rows add up to X"."""
    text = text.strip()
    m = _PLAIN.fullmatch(text)
    if m is None:
        raise MoneyError(f"not a total: {text!r}")
    if m.group(1) is not None and len(m.group(1)) > places:
        raise MoneyError(f"more than {places} decimals: {text!r}")
    return Decimal(text)


def exact_totals(function):
    """Run ``function`` (a normalizer's ``normalize``) with ``TOTALS_CONTEXT`` as the Decimal context, so that the
    statement's running totals are never rounded, however many digits they reach."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with localcontext(TOTALS_CONTEXT):
            return function(*args, **kwargs)
    return wrapper


def round_money(value: Decimal) -> Decimal:
    """Round to the cent, half up (the rounding channels use for fees). Exact at any size (the quantize of the
    default 28-digit context fails past it)."""
    with localcontext(TOTALS_CONTEXT):
        return value.quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(value: Decimal) -> str:
    """The standard text of an amount: exactly two decimals, no exponent.

    Refuses a value with more precision than a cent: rounding is a decision
    the caller makes explicitly with ``round_money``.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be Decimal, got {type(value).__name__}")
    with localcontext(TOTALS_CONTEXT):  # a total may have more digits than the default context's 28
        quantized = value.quantize(CENT)
    if quantized != value:
        raise MoneyError(f"{value} has more than 2 decimals; round it explicitly")
    text = format(quantized, "f")
    return "0.00" if text == "-0.00" else text
