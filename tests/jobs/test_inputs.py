"""Every CSV the job reads, as other tools write it: CRLF or LF, a BOM, columns in any order, checked by name."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from core.errors import IntegrityError
from core.storage import Storage
from jobs.local_orders import read_local_orders
from schemas import standard
from schemas.local import COLUMNS as LOCAL_COLUMNS
from schemas.outputs import CORRECTION_COLUMNS, OPEN_ITEM_COLUMNS, open_item_spark_schema

D = dt.date(2026, 11, 20)
BOM = b"\xef\xbb\xbf"
BANNED = ("collectToPython", "py4j", "Py4J", "An error occurred while calling", "\tat ", "at org.apache")

LOCAL_ROWS = [
    {"order_no": "A,1", "refund_no": "", "txn_type": "PAYMENT", "channel": "wechatpay", "currency": "CNY",
     "amount": "12.30", "status": "PAID", "created_at": "2026-11-20 10:00:00", "paid_at": "2026-11-20 10:00:05"},
    {"order_no": "A2", "refund_no": "R2", "txn_type": "REFUND", "channel": "wechatpay", "currency": "CNY",
     "amount": "1.00", "status": "SUCCESS", "created_at": "2026-11-20 11:00:00", "paid_at": "2026-11-20 11:00:09"},
]


def _csv_bytes(columns, rows: list[dict], *, crlf=True, bom=False) -> bytes:
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\r\n" if crlf else "\n")  # Python's default dialect writes CRLF
    w.writerow(columns)
    for r in rows:
        w.writerow([r.get(c, "") for c in columns])
    return (BOM if bom else b"") + out.getvalue().encode("utf-8")


def _root(tmp_path) -> Storage:
    (tmp_path / "root").mkdir(exist_ok=True)
    return Storage((tmp_path / "root").as_uri())


def _local(tmp_path, files: dict[str, bytes]) -> Storage:
    folder = tmp_path / "root" / "local" / D.isoformat()
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return _root(tmp_path)


def _no_cr(rows) -> None:
    for row in rows:
        for k, v in row.asDict().items():
            assert not (isinstance(v, str) and "\r" in v), (k, v)


def test_a_crlf_export_with_a_bom_in_another_column_order_reads_like_ours(spark, tmp_path):
    reordered = ("paid_at", "amount", "order_no", "status", "channel", "currency", "txn_type", "created_at",
                 "refund_no")
    storage = _local(tmp_path, {"a.csv": _csv_bytes(LOCAL_COLUMNS, LOCAL_ROWS[:1], crlf=True, bom=True),
                                "b.csv": _csv_bytes(reordered, LOCAL_ROWS[1:], crlf=True, bom=True),
                                "c.csv": _csv_bytes(reordered, [], crlf=True, bom=True),  # header only
                                "d.csv": b""})  # empty
    df = read_local_orders(spark, storage, {"format": "csv"}, D)
    assert tuple(df.columns) == LOCAL_COLUMNS
    got = df.orderBy("order_no").collect()
    _no_cr(got)
    assert [r.asDict() for r in got] == [dict(r, amount=Decimal(r["amount"]), refund_no=r["refund_no"] or None)
                                         for r in LOCAL_ROWS]
    assert got[0].order_no == "A,1"  # a quoted value holding a comma


def test_one_file_per_header_is_one_spark_read(spark, tmp_path):
    storage = _local(tmp_path, {f"{i}.csv": _csv_bytes(LOCAL_COLUMNS, LOCAL_ROWS) for i in range(3)})
    plan = read_local_orders(spark, storage, {"format": "csv"}, D)._jdf.queryExecution().analyzed().toString()
    assert plan.count("Relation [") == 1


@pytest.mark.parametrize("header, said", [
    ([c for c in LOCAL_COLUMNS if c != "paid_at"], "missing column 'paid_at'"),
    (list(LOCAL_COLUMNS) + ["note"], "unknown column 'note'"),
    (list(LOCAL_COLUMNS) + ["amount"], "column 'amount' more than once"),
    ([c if c != "amount" else "Amount" for c in LOCAL_COLUMNS], "missing column 'amount'; unknown column 'Amount'"),
])
def test_a_header_that_lacks_adds_or_repeats_a_column_is_refused_naming_file_and_column(spark, tmp_path, header,
                                                                                      said):
    good = _csv_bytes(LOCAL_COLUMNS, LOCAL_ROWS)
    storage = _local(tmp_path, {"a.csv": good, "b.csv": _csv_bytes(header, LOCAL_ROWS, bom=True)})
    with pytest.raises(IntegrityError) as err:
        read_local_orders(spark, storage, {"format": "csv"}, D)
    text = str(err.value)
    assert err.value.exit_code == 4 and said in text
    assert err.value.file == storage.uri("local", D.isoformat(), "b.csv") and err.value.file in text
    assert "fix the order system's export and re-run" in text and D.isoformat() in text


def test_a_parquet_export_lacking_a_column_is_refused(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "root" / "local" / D.isoformat()
    folder.mkdir(parents=True)
    cols = [c for c in LOCAL_COLUMNS if c != "currency"]
    pq.write_table(pa.table({c: [r[c] or None for r in LOCAL_ROWS] for c in cols}), folder / "part-0.parquet")
    storage = _root(tmp_path)
    with pytest.raises(IntegrityError) as err:
        read_local_orders(spark, storage, {"format": "parquet"}, D)
    assert "missing column 'currency'" in str(err.value) and "part-0.parquet" in str(err.value)


def _standard_row(line: int, **kw) -> dict:
    row = dict(channel="wechatpay", merchant_id="1900000109", txn_type="PAYMENT", order_no=f"A{line}", refund_no="",
               channel_txn_id=f"42000{line}", channel_refund_id="", status="SUCCESS", currency="CNY",
               amount="12.30", fee="0.07", coupon_amount="0.00", txn_time="2026-11-20 10:00:00",
               payer_id="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", bank="ICBC, Beijing", source_file="bill.csv",
               source_line=str(line))
    row.update(kw)
    return row


def _standard(tmp_path, data: bytes) -> Storage:
    folder = tmp_path / "root" / "standard" / "wechatpay" / D.isoformat()
    folder.mkdir(parents=True)
    (folder / "wechatpay_20261120.csv").write_bytes(data)
    (folder / "_manifest.json").write_text(json.dumps({"files": []}))  # no Parquet copy: the CSV is read
    return _root(tmp_path)


def test_a_standard_csv_with_crlf_and_a_bom_reads_back_with_no_cr(spark, tmp_path):
    from jobs.reconcile import read_standard

    columns = list(standard.COLUMNS)
    columns[-1], columns[0] = columns[0], columns[-1]  # source_line first, channel last
    storage = _standard(tmp_path, _csv_bytes(columns, [_standard_row(2), _standard_row(3)], bom=True))
    got = read_standard(spark, storage, [("wechatpay", D)]).orderBy("source_line").collect()
    _no_cr(got)
    assert [r.source_line for r in got] == [2, 3] and [r.channel for r in got] == ["wechatpay"] * 2
    assert got[0].bank == "ICBC, Beijing" and got[0].amount == Decimal("12.30")


def test_open_items_and_corrections_with_crlf_read_back_with_no_cr(spark, tmp_path):
    from jobs.reconcile import _corrections_already, _read_open_items

    storage = _root(tmp_path)
    prev = tmp_path / "root" / "recon" / D.isoformat()
    prev.mkdir(parents=True)
    item = dict(_standard_row(2), side="CHANNEL", first_seen=D.isoformat(), age_days="0", carried_as="",
                created_at="", paid_at="2026-11-20 23:58:00")
    (prev / "open_items.csv").write_bytes(_csv_bytes(OPEN_ITEM_COLUMNS, [item], bom=True))
    (prev / "corrections.csv").write_bytes(_csv_bytes(CORRECTION_COLUMNS, [{"idempotency_key": "k1"}], bom=True))
    (prev / "_SUCCESS").write_bytes(b"")
    items = _read_open_items(spark, storage, D, open_item_spark_schema()).collect()
    _no_cr(items)
    assert items[0].paid_at == "2026-11-20 23:58:00" and items[0].age_days == 0
    keys = _corrections_already(spark, storage, D + dt.timedelta(days=1)).collect()
    assert [k.idempotency_key for k in keys] == ["k1"]


def test_a_non_numeric_source_line_names_file_line_value_and_no_py4j(spark, tmp_path):
    from jobs.read_errors import spark_error
    from jobs.reconcile import read_standard

    rows = [_standard_row(2), _standard_row(3, source_line="abc")]
    storage = _standard(tmp_path, _csv_bytes(standard.COLUMNS, rows))
    with pytest.raises(Exception) as raised:
        read_standard(spark, storage, [("wechatpay", D)]).collect()
    err = spark_error(raised.value, storage, date=D.isoformat())
    text = str(err)
    assert err.exit_code == 4 and err.line == 3 and err.channel == "wechatpay"
    assert "a standard file cannot be read: value 'abc' of source_line is not a whole number" in text
    assert "wechatpay_20261120.csv line 3" in text and "recon normalize" in text
    assert not [b for b in BANNED if b in text]


def test_a_file_too_large_to_rescan_still_names_the_file_and_spark_record(spark, tmp_path, monkeypatch):
    from jobs import read_errors

    monkeypatch.setattr(read_errors, "MAX_SCAN_BYTES", 10)
    data = _csv_bytes(LOCAL_COLUMNS, LOCAL_ROWS, crlf=False).decode() + "A9,,PAYMENT\n"
    storage = _local(tmp_path, {"orders.csv": data.encode()})
    with pytest.raises(Exception) as raised:
        read_local_orders(spark, storage, {"format": "csv"}, D).collect()
    err = read_errors.spark_error(raised.value, storage, date=D.isoformat())
    text = str(err)
    assert err.exit_code == 4 and err.line is None and "orders.csv" in text
    assert "the record 'A9,,PAYMENT' does not have the header's number of fields" in text
    assert not [b for b in BANNED if b in text]


def test_our_own_checks_keep_their_message(spark, tmp_path):
    from jobs.read_errors import spark_error

    storage = _local(tmp_path, {"orders.csv": _csv_bytes(LOCAL_COLUMNS, [dict(LOCAL_ROWS[0], amount="1.234")])})
    with pytest.raises(Exception) as raised:
        read_local_orders(spark, storage, {"format": "csv"}, D).collect()
    err = spark_error(raised.value, storage, date=D.isoformat())
    assert err.exit_code == 4 and "amount '1.234' is not a decimal exact to the cent" in err.message
    assert not [b for b in BANNED if b in str(err)]


def test_python_readers_take_crlf_and_a_bom(tmp_path):
    from recon.fixes_plan import _read_csv
    from reports.data import csv_dicts
    from schemas import csvio

    storage = _root(tmp_path)
    data = _csv_bytes(LOCAL_COLUMNS, LOCAL_ROWS, bom=True)
    storage.write_bytes(data, "x", "orders.csv")
    dicts = list(csv_dicts(storage, "x", "orders.csv"))
    assert dicts == LOCAL_ROWS
    header, rows = _read_csv(storage, "x", "orders.csv")
    assert header == list(LOCAL_COLUMNS) and rows == [[r[c] for c in LOCAL_COLUMNS] for r in LOCAL_ROWS]
    assert csvio.read_rows(io.StringIO(data.decode("utf-8"), newline=""))[0] == list(LOCAL_COLUMNS)


def test_a_short_row_fails_the_read_even_when_the_plan_uses_only_some_columns(spark, tmp_path):
    from pyspark.sql import types as T

    from jobs import inputs

    data = _csv_bytes(LOCAL_COLUMNS, LOCAL_ROWS) + b"A9,,PAYMENT,wechatpay\r\n"
    storage = _local(tmp_path, {"orders.csv": data})
    schema = T.StructType([T.StructField(c, T.StringType()) for c in LOCAL_COLUMNS])
    df = inputs.read_csv(spark, storage, [f"local/{D}/orders.csv"], schema, what="x", hint="y")
    with pytest.raises(Exception) as raised:
        df.select("order_no").collect()  # Spark's column pruning would read A9 with nulls
    assert "MALFORMED" in str(raised.value)


@pytest.mark.parametrize("root, uri, rel", [
    ("file:///tmp/r", "file:/tmp/r/standard/wechatpay/2026-11-20/a.csv", "standard/wechatpay/2026-11-20/a.csv"),
    ("file:///tmp/r", "file:///tmp/r/local/2026-11-20/a%20b.csv", "local/2026-11-20/a b.csv"),
    ("file:///tmp/r", "file:///tmp/rx/a.csv", None),
    ("hdfs://nn/data", "hdfs://nn:8020/data/recon/2026-11-20/open_items.csv", "recon/2026-11-20/open_items.csv"),
    ("hdfs://nn/data", "hdfs://other/data/x.csv", None),
])
def test_spark_file_names_are_found_under_the_root(root, uri, rel):
    from types import SimpleNamespace

    from jobs.read_errors import _relative

    assert _relative(SimpleNamespace(root_uri=root), uri) == rel
