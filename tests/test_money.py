from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.money import MoneyError, format_money, parse_money, round_money

cents = st.integers(min_value=-(10**15), max_value=10**15).map(lambda n: Decimal(n) / 100)


@given(cents)
def test_format_then_parse_is_exact(value):
    text = format_money(value)
    assert text.split(".")[1].__len__() == 2
    assert parse_money(text) == value


@pytest.mark.parametrize("text", ["", "1e3", "NaN", "1.234", "+1.00", "1 000.00", "abc", "1_000"])
def test_parse_rejects_what_is_not_an_amount(text):
    with pytest.raises(MoneyError):
        parse_money(text)


def test_format_refuses_floats_and_sub_cent_values():
    with pytest.raises(TypeError):
        format_money(1.5)
    with pytest.raises(MoneyError):
        format_money(Decimal("0.005"))
    assert format_money(Decimal("-0.00")) == "0.00"
    assert format_money(Decimal("12.3")) == "12.30"


def test_round_money_is_half_up():
    assert round_money(Decimal("0.00500")) == Decimal("0.01")
    assert round_money(Decimal("7.40736")) == Decimal("7.41")
    assert round_money(Decimal("-0.06300")) == Decimal("-0.06")
