"""The Parquet copy of the standard records, and the WeChat normalizer's blocks and threads.

The copy (``_columnar/{stem}.parquet`` beside ``{stem}.csv``) must hold the
CSV's rows in order, with the values Spark's CSV reader gives for the CSV
(an empty field is null). The WeChat normalizer converts blocks on several
threads; how the file falls into blocks, and how many threads convert them,
must not change a byte of the output.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import random
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from connectors.landing import land
from core.errors import IntegrityError
from core.settings import ChannelSettings
from core.storage import Storage
from normalizers import wechatpay_bill
from normalizers.publish import ColumnarCopy, _CsvSink, columnar_name, normalize_channel, standard_name
from normalizers.testing import channel_for, normalize_bytes, normalize_file
from normalizers.wechatpay import WeChatPayNormalizer
from schemas import csvio, standard
from schemas.layout import standard_dir
from schemas.standard import StandardRecord
from tests.normalizers.regen_goldens import sample_files
from tests.normalizers.test_wechatpay import _render

DAY = dt.date(2026, 11, 20)
SAMPLES = Path(__file__).parent / "samples" / "wechatpay"


def csv_as_spark_reads(data: bytes) -> pa.Table:
    """A standard CSV read with schemas.standard's Arrow reader, then "" as null (Spark's nullValue is "")."""
    table = standard.read_arrow(io.BytesIO(data))
    columns = [pc.if_else(pc.equal(c, ""), pa.scalar(None, pa.string()), c) if pa.types.is_string(c.type) else c
               for c in table.columns]
    return pa.Table.from_arrays(columns, schema=standard.arrow_schema())


def assert_same_rows(parquet: pa.Table, csv_bytes: bytes) -> None:
    assert parquet.schema.equals(standard.arrow_schema())
    expected = csv_as_spark_reads(csv_bytes)
    assert parquet.num_rows == expected.num_rows
    assert parquet.combine_chunks().equals(expected.combine_chunks())


# -- the copy in memory, for every sample of every normalizer ---------------------------------------------------

@pytest.mark.parametrize("channel,path", list(sample_files()), ids=lambda v: getattr(v, "name", None))
def test_the_parquet_copy_holds_exactly_the_csv_rows(channel, path):
    sink, _ = normalize_file(channel, path)
    assert_same_rows(sink.columnar_table(), sink.records_io.getvalue().encode("utf-8"))


def test_empty_fields_are_null_in_the_copy_and_kept_otherwise():
    out = pa.BufferOutputStream()
    copy = ColumnarCopy(out, batch_rows=2, group_rows=3)
    base = dict(channel="wechatpay", merchant_id="m", txn_type="PAYMENT", order_no="O1", refund_no="",
                channel_txn_id="T1", channel_refund_id="", status="SUCCESS", currency="CNY",
                amount=Decimal("1.5"), fee=Decimal("-0.00"), coupon_amount=Decimal("0"), txn_time="2026-11-20 00:00:00",
                payer_id="", bank=" ", source_file="f.csv", source_line=2)
    copy.record(StandardRecord(**base))
    table = pa.table({name: pa.array([base[name] if name != "fee" else None], standard.arrow_schema().field(name).type)
                      for name in standard.COLUMNS})
    copy.table(table)  # a bulk table with a null (empty in the CSV) money field
    copy.record(StandardRecord(**dict(base, refund_no="R1", txn_type="REFUND", source_line=4)))
    copy.close()
    got = pq.read_table(pa.BufferReader(out.getvalue())).to_pylist()
    assert [r["refund_no"] for r in got] == [None, None, "R1"]
    assert [r["payer_id"] for r in got] == [None] * 3 and [r["bank"] for r in got] == [" "] * 3
    assert [r["fee"] for r in got] == [Decimal("0.00"), None, Decimal("0.00")]
    assert got[0]["amount"] == Decimal("1.50") and [r["source_line"] for r in got] == [2, 2, 4]
    assert copy.rows == 3


# -- blocks and threads -----------------------------------------------------------------------------------------

def _bill(n: int, seed: int, odd_every: int = 0) -> bytes:
    """A WeChat ALL bill of ``n`` rows; with ``odd_every``, some rows need the row path or are rejects."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        order = f"S{seed}{i:07d}"
        if odd_every and i % odd_every == odd_every // 2:
            order = rnd.choice([f" {order} ", f'"{order}"', f"{order}\u3000", f"a,{order}"[2:]])
        rows.append({"refund": rnd.random() < 0.2, "order_no": order, "refund_no": f"R{i}",
                     "amount": Decimal(rnd.randint(1, 10**6)) / 100, "coupon": Decimal(rnd.randint(0, 100)) / 100,
                     "fee": Decimal(rnd.randint(0, 10**5)) / 100000, "goods": rnd.choice(["咖啡", "a b", "书"]),
                     "openid": f"o{rnd.randint(0, 999)}", "second": rnd.randint(0, 86399)})
    lines = _render(rows).split(b"\r\n")
    if odd_every:
        for k in range(2, n + 1, odd_every * 3):  # a row with a field missing: a reject (line k)
            lines[k - 1] = lines[k - 1].rsplit(b",", 1)[0]
    return b"\r\n".join(lines)


def _run(data: bytes, *, workers: int, bulk: bool = True, name: str = "gen.csv"):
    WeChatPayNormalizer.workers, WeChatPayNormalizer.bulk = workers, bulk
    try:
        sink, report = normalize_bytes(channel_for("wechatpay"), name, data)
    finally:
        WeChatPayNormalizer.workers, WeChatPayNormalizer.bulk = None, True
    return sink, report


@pytest.mark.parametrize("odd_every", [0, 97])
@pytest.mark.parametrize("packed", [False, True])
def test_blocks_and_threads_do_not_change_a_byte(monkeypatch, odd_every, packed):
    data = _bill(1500, seed=7 + odd_every, odd_every=odd_every)
    if packed:
        data = gzip.compress(data)
    monkeypatch.setattr(wechatpay_bill, "BLOCK_BYTES", 8 << 10)  # about 30 lines per block: ~50 blocks
    outputs, sinks = [], []
    for workers, bulk in ((1, False), (1, True), (3, True)):
        sink, report = _run(data, workers=workers, bulk=bulk)
        sinks.append(sink)
        outputs.append((sink.records_io.getvalue(), sink.rejects_io.getvalue(), report.as_dict()))
        assert_same_rows(sink.columnar_table(), sink.records_io.getvalue().encode("utf-8"))
    assert outputs[0] == outputs[1] == outputs[2]
    row_path, bulk_sink = sinks[0], sinks[2]
    assert row_path.bulk_batches == 0 and bulk_sink.bulk_batches > 10
    # conservation: every data line is one record or one reject, each line once
    lines = [r.source_line for r in bulk_sink.records] + bulk_sink.reject_lines
    assert sorted(lines) == list(range(2, 1502))
    if odd_every:
        assert bulk_sink.reject_lines and bulk_sink.bulk_batches < 50  # some blocks went row by row
    else:
        assert not bulk_sink.reject_lines


def test_invalid_utf8_in_a_column_the_bulk_path_does_not_read_is_still_a_reject(monkeypatch):
    lines = _bill(200, seed=11).split(b"\r\n")
    lines[150] = lines[150].replace("`咖啡".encode(), b"`\xff\xfe").replace("`书".encode(), b"`\xff\xfe") \
        .replace(b"`a b", b"`\xff\xfe")  # the goods name (商品名称) of line 151
    data = b"\r\n".join(lines)
    monkeypatch.setattr(wechatpay_bill, "BLOCK_BYTES", 8 << 10)
    outputs = []
    for workers, bulk in ((1, False), (2, True)):
        sink, report = _run(data, workers=workers, bulk=bulk)
        outputs.append((sink.records_io.getvalue(), sink.rejects_io.getvalue(), report.as_dict()))
        assert sink.reject_lines == [151] and "not valid UTF-8" in sink.rejects_io.getvalue()
    assert outputs[0] == outputs[1]


def test_a_fee_too_wide_for_arrow_goes_row_by_row_with_the_same_result():
    rows = [{"refund": False, "order_no": f"S{i}", "refund_no": "", "amount": Decimal("10.00"),
             "coupon": Decimal("0.00"), "fee": Decimal("1234567890123456.12345") if i == 1 else Decimal("0.06"),
             "goods": "书", "openid": "o1", "second": i} for i in range(3)]
    data = _render(rows)
    outputs = []
    for workers, bulk in ((1, False), (2, True)):
        sink, report = _run(data, workers=workers, bulk=bulk)
        outputs.append((sink.records_io.getvalue(), sink.rejects_io.getvalue(), report.as_dict()))
        assert sink.bulk_batches == 0 and not sink.reject_lines
        assert_same_rows(sink.columnar_table(), sink.records_io.getvalue().encode("utf-8"))
    assert outputs[0] == outputs[1] and "1234567890123456.12" in outputs[0][0]


def test_a_truncated_gzip_over_many_blocks_names_the_last_line_read(monkeypatch):
    packed = gzip.compress(_bill(12000, seed=3))  # about 3 MB: the gzip reader's 1 MB buffer does not reach the end
    monkeypatch.setattr(wechatpay_bill, "BLOCK_BYTES", 8 << 10)
    with pytest.raises(IntegrityError, match="gzip stream is truncated") as info:
        _run(packed[: len(packed) // 2], workers=3)
    assert info.value.exit_code == 4 and info.value.file == "gen.csv" and 2000 < info.value.line < 10000


def test_bad_totals_over_many_blocks_fail_as_a_whole(monkeypatch):
    data = _bill(600, seed=5).replace(b"\r\n`600,", b"\r\n`601,")
    monkeypatch.setattr(wechatpay_bill, "BLOCK_BYTES", 8 << 10)
    with pytest.raises(IntegrityError, match="总交易单数 says 601") as info:
        _run(data, workers=2)
    assert info.value.line == 603


def test_py_whitespace_is_what_str_strip_removes():
    assert wechatpay_bill.PY_WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


# -- the published folder ---------------------------------------------------------------------------------------

def _publish(tmp_path: Path, sample: Path) -> tuple[Storage, dict, ChannelSettings]:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / sample.name).write_bytes(sample.read_bytes())
    channel = ChannelSettings(name="wechatpay", normalizer="wechatpay", conf_file="<test>",
                              download={"type": "localdir", "path": str(inbox), "filename": sample.name,
                                        "max_attempts": 1}, max_rejected_rows=5)
    storage = Storage((tmp_path / "root").as_uri())
    land(storage, channel, DAY, work_dir=str(tmp_path / "work"), force=True)
    return storage, normalize_channel(storage, channel, DAY), channel


@pytest.mark.parametrize("sample", ["mixed_all_bom.csv", "refund_bill_new.csv", "mixed_all.csv.gz"])
def test_the_published_folder_holds_the_copy_listed_in_the_manifest(tmp_path, sample):
    storage, manifest, _ = _publish(tmp_path, SAMPLES / sample)
    folder = tmp_path / "root" / standard_dir("wechatpay", DAY)
    (entry,) = manifest["files"]
    stem = entry["standard_file"][: -len(".csv")]
    assert entry["columnar_file"] == f"_columnar/{stem}.parquet" == columnar_name(entry["standard_file"])
    assert entry["columnar_rows"] == entry["records"]
    assert json.loads((folder / "_manifest.json").read_text(encoding="utf-8")) == manifest
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["_SUCCESS", "_columnar", "_manifest.json", "_rejects.csv", entry["standard_file"]])
    parquet = pq.read_table(folder / entry["columnar_file"])
    assert parquet.num_rows == entry["records"]
    assert_same_rows(parquet, (folder / entry["standard_file"]).read_bytes())
    # the published CSV is what the in-memory sink (the goldens) holds
    sink, _ = normalize_file(channel_for("wechatpay"), SAMPLES / sample)
    assert (folder / entry["standard_file"]).read_text(encoding="utf-8") == sink.records_io.getvalue()
    # named for the statement without its compression: mixed_all.csv.gz gives mixed_all.csv
    assert entry["standard_file"] == sample.removesuffix(".gz")


def test_standard_names_drop_compression_and_stay_unique_in_the_folder():
    taken = {"_rejects.csv", "_manifest.json", "_success"}
    raws = ["bill.csv.gz", "bill.zip", "bill.csv", "BILL.txt", "20261120.TXT.GZ", "noext", "_rejects.csv"]
    names = [standard_name(r, taken) for r in raws]
    assert names == ["bill.csv", "bill-2.csv", "bill-3.csv", "BILL-4.csv", "20261120.csv", "noext.csv",
                     "_rejects-2.csv"]
    assert len({n.lower() for n in names}) == len(names)
    assert {columnar_name(n).lower() for n in names} <= taken


def test_a_bill_that_fails_publishes_nothing_and_withdraws_the_earlier_copy(tmp_path):
    storage, _, channel = _publish(tmp_path, SAMPLES / "mixed_all_bom.csv")
    bad = SAMPLES / "bad_summary_all.csv"
    (tmp_path / "inbox" / "mixed_all_bom.csv").write_bytes(bad.read_bytes())
    land(storage, channel, DAY, work_dir=str(tmp_path / "work"), force=True)
    with pytest.raises(IntegrityError):
        normalize_channel(storage, channel, DAY)
    parent = tmp_path / "root" / "standard" / "wechatpay"
    assert list(parent.iterdir()) == []  # no staging folder, no columnar copy, the old result withdrawn


# -- Spark ------------------------------------------------------------------------------------------------------

def _sink_folder(folder: Path) -> None:
    """A standard CSV and its copy written through the publishing sink: single records and a bulk table,
    with empty refund numbers, an empty payer, a blank bank, a value needing quotes and an empty fee."""
    folder.mkdir(parents=True)
    (folder / "_columnar").mkdir()
    base = dict(channel="wechatpay", merchant_id="m1", txn_type="PAYMENT", order_no="O1", refund_no="",
                channel_txn_id="T1", channel_refund_id="", status="SUCCESS", currency="CNY",
                amount=Decimal("10.00"), fee=Decimal("0.06"), coupon_amount=Decimal("0.00"),
                txn_time="2026-11-20 10:00:00", payer_id="", bank=" ", source_file="s.csv", source_line=2)
    with open(folder / "s.csv", "wb") as rec, open(folder / "_columnar" / "s.parquet", "wb") as col:
        copy = ColumnarCopy(col, batch_rows=2, group_rows=2)
        sink = _CsvSink("wechatpay", DAY, "s.csv", rec, csvio.writer(io.StringIO()), copy)
        sink.record(StandardRecord(**base))
        sink.record(StandardRecord(**dict(base, order_no="O2", payer_id='say "hi", then', source_line=3)))
        table = pa.table({
            name: pa.array([dict(base, order_no=f"B{i}", txn_type="REFUND" if i else "PAYMENT",
                                 refund_no=f"R{i}" if i else "", source_line=4 + i)[name] for i in range(3)],
                           standard.arrow_schema().field(name).type)
            for name in standard.COLUMNS})
        table = table.set_column(standard.COLUMNS.index("fee"), "fee",
                                 pa.array([None, Decimal("-0.01"), None], pa.decimal128(18, 2)))
        sink.records_table(table)
        sink.record(StandardRecord(**dict(base, order_no="O3", merchant_id="", source_line=7)))
        sink.close()
        copy.close()


def test_spark_reads_the_copy_as_it_reads_the_csv_folder(spark, tmp_path):
    from jobs.inputs import CSV_READ_OPTIONS as READ_OPTIONS  # what the job reads a standard CSV with

    storage, manifest, _ = _publish(tmp_path, SAMPLES / "mixed_all_bom.csv")
    published = tmp_path / "root" / standard_dir("wechatpay", DAY)
    written = tmp_path / "sink" / "standard"
    _sink_folder(written)
    for folder, parquet in ((published, published / manifest["files"][0]["columnar_file"]),
                            (written, written / "_columnar" / "s.parquet")):
        from_csv = spark.read.schema(standard.spark_schema()).options(**READ_OPTIONS).csv(folder.as_uri())
        from_parquet = spark.read.parquet(parquet.as_uri())
        assert [(f.name, f.dataType) for f in from_parquet.schema.fields] == \
            [(f.name, f.dataType) for f in standard.spark_schema().fields]
        n = from_csv.count()
        assert n == from_parquet.count() == pq.read_metadata(parquet).num_rows > 0
        assert from_csv.exceptAll(from_parquet).count() == 0
        assert from_parquet.exceptAll(from_csv).count() == 0
    rows = {r["order_no"]: r for r in spark.read.parquet((written / "_columnar" / "s.parquet").as_uri()).collect()}
    assert rows["O1"]["refund_no"] is None and rows["O1"]["payer_id"] is None and rows["O1"]["bank"] == " "
    assert rows["B0"]["fee"] is None and rows["B1"]["fee"] == Decimal("-0.01") and rows["O3"]["merchant_id"] is None
    assert rows["O2"]["payer_id"] == 'say "hi", then'
