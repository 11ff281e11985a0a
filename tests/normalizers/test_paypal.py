"""PayPal settlement report (STL): goldens, integrity failures, conservation and a round-trip property."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import IntegrityError
from normalizers.testing import channel_for, normalize_bytes, normalize_file
from tests.normalizers.regen_goldens import golden_paths, sample_files

SAMPLES = Path(__file__).parent / "samples" / "paypal"
CHANNEL = channel_for("paypal")
PAYPAL_SAMPLES = [p for c, p in sample_files() if p.parent == SAMPLES]
BAD_SAMPLES = [p for c, p in sample_files(include_bad=True) if p.parent == SAMPLES]
REFERENCE = SAMPLES / "STL-20261120.01.009.CSV"
CH = ["Transaction ID", "Invoice ID", "PayPal Reference ID", "PayPal Reference ID Type", "Transaction Event Code",
      "Transaction Initiation Date", "Transaction Completion Date", "Transaction Debit or Credit",
      "Gross Transaction Amount", "Gross Transaction Currency", "Fee Debit or Credit", "Fee Amount", "Fee Currency",
      "Custom Field", "Consumer ID", "Payment Tracking ID", "Store ID", "Bank Reference ID",
      "Credit Transactional Fee", "Credit Promotional Fee", "Credit Term"]


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    data = path.read_bytes()
    text = data.decode("utf-16") if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else \
        data.decode("utf-8-sig")
    return [(n, next(csv.reader([line]))) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


@pytest.mark.parametrize("path", PAYPAL_SAMPLES, ids=lambda p: p.name)
def test_sample_matches_its_golden_files(path):
    sink, _ = normalize_file(CHANNEL, path)
    std, rej = golden_paths(path)
    assert sink.records_io.getvalue() == std.read_text(encoding="utf-8")
    assert sink.rejects_io.getvalue() == rej.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", PAYPAL_SAMPLES, ids=lambda p: p.name)
def test_every_sb_row_is_a_record_or_a_reject_and_amounts_agree_with_the_report_footer(path):
    sink, report = normalize_file(CHANNEL, path)
    rows = _rows(path)
    sb_lines = [n for n, row in rows if row[0] == "SB"]
    assert sorted([r.source_line for r in sink.records] + sink.reject_lines) == sb_lines
    assert int(report.declared["report RC"]) == len(sb_lines) == report.data_rows
    assert not report.unverified
    # Records carry the amounts of their SB rows; the rejected rows carry the rest of the footer's totals.
    columns = next(row for _, row in rows if row[0] == "CH")
    col = {name: i for i, name in enumerate(columns)}
    rejected = {n: row for n, row in rows if n in set(sink.reject_lines)}
    for rf in (row for _, row in rows if row[0] == "RF"):
        currency, gross_cr, gross_dr = rf[1], int(rf[2]), int(rf[3])
        mine = [r for r in sink.records if r.currency == currency]
        cr = sum(r.amount for r in mine if r.txn_type == "PAYMENT") * 100
        dr = sum(r.amount for r in mine if r.txn_type == "REFUND") * 100
        for row in rejected.values():
            if row[col["Gross Transaction Currency"]] == currency:
                amount = int(row[col["Gross Transaction Amount"]])
                if row[col["Transaction Debit or Credit"]] == "CR":
                    cr += amount
                else:
                    dr += amount
        assert (cr, dr) == (gross_cr, gross_dr)


def test_the_reference_sample_maps_payments_refunds_and_fees():
    sink, report = normalize_file(CHANNEL, REFERENCE)
    by_line = {r.source_line: r for r in sink.records}
    pay = by_line[5]
    assert (pay.txn_type, pay.order_no, pay.channel_txn_id, pay.amount, pay.fee, pay.currency, pay.txn_time) == (
        "PAYMENT", "ORD-20261119-0001", "5TY05013RG002845M", Decimal("100.00"), Decimal("3.20"), "USD",
        "2026-11-20 01:00:12")  # 09:00:12 -0800 is 01:00:12 next day in Shanghai
    refund = by_line[7]
    assert (refund.txn_type, refund.order_no, refund.refund_no, refund.channel_txn_id, refund.channel_refund_id,
            refund.amount, refund.fee) == ("REFUND", "ORD-20261119-0001", "RFD-20261119-0001-1", "5TY05013RG002845M",
                                           "1JU08902781691411", Decimal("50.00"), Decimal("-1.45"))
    assert by_line[6].currency == "EUR" and by_line[16].merchant_id == "ZX98YW76VU54T"
    assert sink.reject_lines == [8, 10, 18]
    rejects = sink.rejects_io.getvalue()
    assert "T0400 (withdrawal)" in rejects and "without a merchant refund number" in rejects
    assert report.declared["section 1 USD gross CR"] == report.computed["section 1 USD gross CR"] == "133456"


def test_utf8_bom_and_utf16_read_the_same_rows():
    data = REFERENCE.read_bytes()
    plain, _ = normalize_bytes(CHANNEL, REFERENCE.name, data)
    bom, _ = normalize_bytes(CHANNEL, REFERENCE.name, codecs.BOM_UTF8 + data)
    wide, _ = normalize_bytes(CHANNEL, REFERENCE.name, data.decode("utf-8").encode("utf-16"))
    assert plain.records_io.getvalue() == bom.records_io.getvalue() == wide.records_io.getvalue()
    assert plain.rejects_io.getvalue() == bom.rejects_io.getvalue() == wide.rejects_io.getvalue()


EXPECTED_FAILURES = {
    "bad_section_count_STL-20261120.01.009.CSV": (13, "SC says 5 rows, the section 1 has 6 SB rows"),
    "bad_report_count_STL-20261120.01.009.CSV": (23, "RC says 8 rows, the report has 9 SB rows"),
    "bad_totals_STL-20261120.01.009.CSV": (12, "SF USD gross CR says 133556, the SB rows add up to 133456"),
    "bad_truncated_STL-20261120.01.009.CSV": (18, "file footer (FF) is missing"),
}


@pytest.mark.parametrize("path", BAD_SAMPLES, ids=lambda p: p.name)
def test_bad_samples_fail_as_a_whole_naming_file_and_line(path):
    with pytest.raises(IntegrityError) as info:
        normalize_file(CHANNEL, path)
    err = info.value
    line, text = EXPECTED_FAILURES[path.name]
    assert err.exit_code == 4 and err.file == path.name and err.line == line and text in err.message
    assert err.channel == "paypal" and err.date == "2026-11-20" and err.hint


def test_unknown_column_set_fails_with_exit_4():
    text = REFERENCE.read_text(encoding="utf-8").replace('"Invoice ID"', '"Invoice Number"', 1)
    with pytest.raises(IntegrityError, match="unknown column set: CH lacks Invoice ID") as info:
        normalize_bytes(CHANNEL, REFERENCE.name, text.encode())
    assert info.value.line == 4


def test_an_unreadable_sb_row_is_rejected_and_leaves_totals_unverified():
    data = REFERENCE.read_bytes().replace(b"kaeufer@example.de", b"k\xe4ufer@example.de")
    sink, report = normalize_bytes(CHANNEL, REFERENCE.name, data)
    assert 6 in sink.reject_lines and "not valid UTF-8" in sink.rejects_io.getvalue()
    assert "section 1 EUR gross CR" in report.unverified and "section 2 USD gross CR" not in report.unverified


def test_refund_columns_are_configurable():
    channel = channel_for("paypal", refund_order_column="Custom Field", refund_no_column="Invoice ID")
    sink, _ = normalize_file(channel, REFERENCE)
    refund = next(r for r in sink.records if r.source_line == 7)
    assert (refund.order_no, refund.refund_no) == ("RFD-20261119-0001-1", "ORD-20261119-0001")


# -- property: rows rendered in the STL layout come back exactly ------------------------------------------------

free_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20).map(
    str.strip).filter(bool)
row_strategy = st.fixed_dictionaries({
    "refund": st.booleans(), "invoice": free_text, "custom": free_text, "consumer": free_text,
    "gross": st.integers(0, 10**12), "fee": st.integers(0, 10**8), "currency": st.sampled_from(["USD", "EUR", "JPY"]),
    "when": st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2035, 1, 1)),
    "offset": st.integers(-12 * 60, 14 * 60).map(lambda m: m - m % 15),
})


def _q(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _render(rows, encoding: str) -> bytes:
    """An STL report with one section: text quoted, numbers and dates not."""
    lines = ['"RH",2026/11/20 03:00:00 -0800,"A","ACCT1",009', '"FH",01',
             '"SH",2026/11/19 00:00:00 -0800,2026/11/19 23:59:59 -0800,"ACCT1",""', ",".join(map(_q, ["CH"] + CH))]
    totals: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        sign = "-" if r["offset"] < 0 else "+"
        stamp = r["when"].strftime("%Y/%m/%d %H:%M:%S ") + f"{sign}{abs(r['offset']) // 60:02d}{abs(r['offset']) % 60:02d}"
        dc, fee_dc = ("DR", "CR") if r["refund"] else ("CR", "DR")
        t = totals.setdefault(r["currency"], [0, 0, 0, 0])
        t[0 if dc == "CR" else 1] += r["gross"]
        t[2 if fee_dc == "CR" else 3] += r["fee"]
        lines.append(",".join([
            _q("SB"), _q(f"TXN{i}"), _q(r["invoice"]), _q(f"ORIG{i}" if r["refund"] else ""),
            _q("TXN" if r["refund"] else ""), _q("T1107" if r["refund"] else "T0006"), stamp, stamp, _q(dc),
            str(r["gross"]), _q(r["currency"]), _q(fee_dc), str(r["fee"]), _q(r["currency"]), _q(r["custom"]),
            _q(r["consumer"]), _q(""), _q(""), _q(""), _q(""), _q(""), _q("")]))
    footers = [",".join([_q(kind), _q(cur)] + [str(v) for v in t]) for cur, t in sorted(totals.items())
               for kind in ("SF",)]
    lines += footers + [f'"SC",{len(rows)}'] + [f.replace('"SF"', '"RF"', 1) for f in footers]
    lines += [f'"RC",{len(rows)}', f'"FF",{len(rows)}']
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, max_size=8), st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_generated_rows_round_trip_exactly(rows, encoding):
    sink, report = normalize_bytes(CHANNEL, "STL-20261120.01.009.CSV", _render(rows, encoding))
    assert not sink.reject_lines and not report.unverified
    assert len(sink.records) == len(rows) == report.data_rows
    for i, (r, rec) in enumerate(zip(rows, sink.records)):
        assert rec.txn_type == ("REFUND" if r["refund"] else "PAYMENT")
        assert rec.order_no == r["invoice"] and rec.refund_no == (r["custom"] if r["refund"] else "")
        assert rec.amount == Decimal(r["gross"]) / 100
        assert rec.fee == (-1 if r["refund"] else 1) * Decimal(r["fee"]) / 100
        assert rec.currency == r["currency"] and rec.payer_id == r["consumer"] and rec.merchant_id == "ACCT1"
        assert rec.channel_txn_id == (f"ORIG{i}" if r["refund"] else f"TXN{i}")
        assert rec.channel_refund_id == (f"TXN{i}" if r["refund"] else "")
        utc = r["when"] - dt.timedelta(minutes=r["offset"])
        assert rec.txn_time == (utc + dt.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
