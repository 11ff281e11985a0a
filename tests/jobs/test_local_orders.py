"""The local export read by either engine: amounts come in exact to the cent or the read fails, naming what to
fix, in the same words."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.errors import IntegrityError
from core.storage import Storage
from jobs.local_orders import read_local_orders

D = dt.date(2026, 11, 20)
HEADER = "order_no,refund_no,txn_type,channel,currency,amount,status,created_at,paid_at\n"


def _export(tmp_path, amounts: list[str]) -> Storage:
    folder = tmp_path / "root" / "local" / D.isoformat()
    folder.mkdir(parents=True)
    rows = [f"A{i},,PAYMENT,wechatpay,CNY,{a},PAID,2026-11-20 10:00:00,2026-11-20 10:00:0{i}\n"
            for i, a in enumerate(amounts)]
    (folder / "orders.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    return Storage((tmp_path / "root").as_uri())


def test_amounts_exact_to_the_cent_are_read_as_they_are(spark, tmp_path):
    storage = _export(tmp_path, ["12.30", "12.3", "100", "-0.01", "0.00", "9999999999999999.99"])
    got = read_local_orders(spark, storage, {"format": "csv"}, D).orderBy("order_no").collect()
    assert [r.amount for r in got] == [Decimal("12.30"), Decimal("12.30"), Decimal("100.00"), Decimal("-0.01"),
                                       Decimal("0.00"), Decimal("9999999999999999.99")]


def _duckdb(storage: Storage):
    import duckdb

    from jobs.duck import read

    con = duckdb.connect()
    read.create_local_export(con, storage, "local_in", "csv", D, "fix the export", lambda paid, created: "false")
    return con, read


def test_duckdb_reads_amounts_exact_to_the_cent_as_they_are(tmp_path):
    storage = _export(tmp_path, ["12.30", "12.3", "100", "-0.01", "0.00", "9999999999999999.99"])
    con, read = _duckdb(storage)
    read.check_amounts(con, storage, "local_in", D, "fix the export")
    assert [r[0] for r in con.execute("SELECT amount FROM local_in ORDER BY order_no").fetchall()] == [
        Decimal("12.30"), Decimal("12.30"), Decimal("100.00"), Decimal("-0.01"), Decimal("0.00"),
        Decimal("9999999999999999.99")]


CASES = [
    ("12.345", "'12.345'"),       # Spark's own decimal parsing would round it to 12.35
    ('"1,234.56"', "'1,234.56'"),  # ... drop the separator
    ("1e2", "'1e2'"),             # ... and read an exponent
    ("", "empty"),
    ("4111 1111 1111 1111", "of 19 characters, not shown,"),  # a card number in the wrong column
    ("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "of 28 characters, not shown,"),  # a WeChat openid
]


@pytest.mark.parametrize("value, shown", CASES)
def test_an_amount_not_exact_to_the_cent_fails_the_read_naming_order_value_and_file(spark, tmp_path, value, shown):
    storage = _export(tmp_path, ["12.30", value])
    df = read_local_orders(spark, storage, {"format": "csv"}, D)
    with pytest.raises(Exception) as err:
        df.collect()
    said = str(err.value)
    assert "local order A1" in said and f"amount {shown} is not a decimal exact to the cent" in said
    assert "orders.csv" in said and "wechatpay" in said and D.isoformat() in said
    assert "1111 1111" not in said and "uMuAJO" not in said


@pytest.mark.parametrize("value, shown", CASES)
def test_duckdb_refuses_an_amount_not_exact_to_the_cent_in_the_same_words(tmp_path, value, shown):
    """The DuckDB engine reads the amount as NULL where its text is not exact, and the check reads the text
    again from the file to say what it was."""
    storage = _export(tmp_path, ["12.30", value])
    con, read = _duckdb(storage)
    with pytest.raises(IntegrityError) as err:
        read.check_amounts(con, storage, "local_in", D, "fix the export")
    said = str(err.value)
    assert "local order A1" in said and f"amount {shown} is not a decimal exact to the cent" in said
    assert "orders.csv" in said and "wechatpay" in said and D.isoformat() in said
    assert "1111 1111" not in said and "uMuAJO" not in said
