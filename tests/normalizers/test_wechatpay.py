"""WeChat Pay ALL bill: goldens, integrity failures, conservation and a round-trip property."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import IntegrityError
from normalizers.testing import channel_for, normalize_bytes, normalize_file
from tests.normalizers.regen_goldens import golden_paths, sample_files

SAMPLES = Path(__file__).parent / "samples" / "wechatpay"
CHANNEL = channel_for("wechatpay")
WECHAT_SAMPLES = [p for c, p in sample_files() if p.parent == SAMPLES]


@pytest.mark.parametrize("path", WECHAT_SAMPLES, ids=lambda p: p.name)
def test_sample_matches_its_golden_files(path):
    sink, _ = normalize_file(CHANNEL, path)
    std, rej = golden_paths(path)
    assert sink.records_io.getvalue() == std.read_text(encoding="utf-8")
    assert sink.rejects_io.getvalue() == rej.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", WECHAT_SAMPLES, ids=lambda p: p.name)
def test_every_data_row_is_a_record_or_a_reject_and_amounts_agree_with_the_summary(path):
    sink, report = normalize_file(CHANNEL, path)
    declared_rows = int(next(v for k, v in report.declared.items() if k == "总交易单数"))
    assert len(sink.records) + len(sink.reject_lines) == declared_rows == report.data_rows
    lines = [r.source_line for r in sink.records] + sink.reject_lines
    assert len(set(lines)) == len(lines)
    if not report.unverified:  # with no rejected rows, the standard amounts reproduce the bill's totals
        payments = sum((r.amount for r in sink.records if r.txn_type == "PAYMENT"), Decimal(0))
        refunds = sum((r.amount for r in sink.records if r.txn_type == "REFUND"), Decimal(0))
        declared_orders = report.declared.get("订单总金额") or report.declared["总交易额"]
        declared_refunds = report.declared.get("申请退款总金额") or report.declared["总退款金额"]
        assert payments == Decimal(declared_orders)
        assert refunds == Decimal(declared_refunds)


@pytest.mark.parametrize("path", [p for c, p in sample_files(include_bad=True) if p.parent == SAMPLES],
                         ids=lambda p: p.name)
def test_every_bad_sample_fails_as_a_whole_naming_file_and_line(path):
    with pytest.raises(IntegrityError) as info:
        normalize_file(CHANNEL, path)
    assert info.value.exit_code == 4 and info.value.file == path.name and info.value.line


def test_success_and_refund_bills_and_gzip_are_recognised():
    names = {p.name for p in WECHAT_SAMPLES}
    assert {"success_bill_new.csv", "refund_bill_new.csv", "mixed_all.csv.gz", "old_columns_all.csv"} <= names
    sink, _ = normalize_file(CHANNEL, SAMPLES / "refund_bill_new.csv")
    assert [r.txn_time for r in sink.records] == ["2026-11-20 12:30:00", "2026-11-20 13:40:00"]
    plain, _ = normalize_file(CHANNEL, SAMPLES / "mixed_all_bom.csv")
    packed, _ = normalize_file(CHANNEL, SAMPLES / "mixed_all.csv.gz")
    assert [r.as_csv_row()[:-2] for r in plain.records] == [r.as_csv_row()[:-2] for r in packed.records]


def test_the_reference_sample_becomes_one_payment():
    sink, report = normalize_file(CHANNEL, SAMPLES / "reference_sample_all.csv")
    (rec,) = sink.records
    assert (rec.order_no, rec.txn_type, rec.status, rec.amount, rec.fee) == (
        "S20210128170702357723", "PAYMENT", "SUCCESS", Decimal("0.01"), Decimal("0.00"))
    assert rec.txn_time == "2021-01-28 17:07:11" and rec.source_line == 2
    assert report.declared["总交易单数"] == report.computed["总交易单数"] == "1"


def test_a_rejected_row_is_kept_with_line_reason_and_raw_text_and_leaves_totals_unverified():
    sink, report = normalize_file(CHANNEL, SAMPLES / "mixed_all_bom.csv")
    assert sink.reject_lines == [8, 9]
    rejects = sink.rejects_io.getvalue()
    assert "expected 27 fields, found 26" in rejects and "unknown 交易状态 'WEIRD'" in rejects
    assert "`S1005" in rejects  # raw text kept
    assert "应结订单总金额" in report.unverified and "总交易单数" not in report.unverified


def test_summary_disagreeing_with_rows_is_an_integrity_failure_naming_file_and_line():
    with pytest.raises(IntegrityError) as info:
        normalize_file(CHANNEL, SAMPLES / "bad_summary_all.csv")
    err = info.value
    assert err.exit_code == 4
    assert err.file == "bad_summary_all.csv" and err.line == 12
    assert "总交易单数 says 10" in err.message


def test_truncated_bill_without_summary_is_an_integrity_failure():
    with pytest.raises(IntegrityError, match="summary line .* is missing"):
        normalize_file(CHANNEL, SAMPLES / "bad_truncated_all.csv")


def test_unknown_column_set_fails_with_exit_4():
    data = "交易时间,商户订单号,金额\r\n`2026-11-20 00:00:00,`X,`1.00\r\n".encode()
    with pytest.raises(IntegrityError, match="unknown column set") as info:
        normalize_bytes(CHANNEL, "odd.csv", data)
    assert info.value.line == 1


def test_gbk_header_is_undecodable():
    header = (SAMPLES / "reference_sample_all.csv").read_text(encoding="utf-8").splitlines()[0]
    with pytest.raises(IntegrityError, match="not UTF-8"):
        normalize_bytes(CHANNEL, "gbk.csv", header.encode("gbk") + b"\r\n")


def test_empty_file_is_an_integrity_failure():
    with pytest.raises(IntegrityError, match="empty"):
        normalize_bytes(CHANNEL, "empty.csv", b"")


# -- property: rows written in the bill format come back exactly ------------------------------------------------

NEW_HEADER = (SAMPLES / "reference_sample_all.csv").read_text(encoding="utf-8").splitlines()[0]
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
money = st.integers(min_value=0, max_value=10**9).map(lambda n: Decimal(n) / 100)
fee5 = st.integers(min_value=0, max_value=10**7).map(lambda n: Decimal(n) / 100000)
text = st.text(alphabet=st.characters(blacklist_characters=",`\r\n", blacklist_categories=("Cs", "Cc")),
               min_size=1, max_size=12).map(str.strip).filter(bool)
ROW_FIELDS = {
    "refund": st.booleans(), "order_no": text, "refund_no": text, "amount": money, "coupon": money, "fee": fee5,
    "goods": text, "openid": text, "second": st.integers(0, 86399),
}
row_strategy = st.fixed_dictionaries(ROW_FIELDS)


def _render(rows) -> bytes:
    lines = [NEW_HEADER]
    tot = {k: Decimal(0) for k in ("settle", "refund", "refund_coupon", "fee", "order", "applied")}
    for i, r in enumerate(rows):
        t = (dt.datetime(2026, 11, 20) + dt.timedelta(seconds=r["second"])).strftime("%Y-%m-%d %H:%M:%S")
        coupon = min(r["coupon"], r["amount"])
        if r["refund"]:
            vals = [t, "wx1", "1601959334", "0", "", f"42{i}", r["order_no"], r["openid"], "JSAPI", "REFUND", "OTHERS",
                    "CNY", "0.00", "0.00", f"50{i}", r["refund_no"], f"{r['amount'] - coupon:.2f}", f"{coupon:.2f}",
                    "ORIGINAL", "SUCCESS", r["goods"], "", f"{-r['fee']:.5f}", "0.60%", "0.00", f"{r['amount']:.2f}", ""]
            tot["refund"] += r["amount"] - coupon
            tot["applied"] += r["amount"]
            tot["refund_coupon"] += coupon
            tot["fee"] -= r["fee"]
        else:
            vals = [t, "wx1", "1601959334", "0", "", f"42{i}", r["order_no"], r["openid"], "JSAPI", "SUCCESS",
                    "OTHERS", "CNY", f"{r['amount'] - coupon:.2f}", f"{coupon:.2f}", "0", "0", "0.00", "0.00", "", "",
                    r["goods"], "", f"{r['fee']:.5f}", "0.60%", f"{r['amount']:.2f}", "0.00", ""]
            tot["settle"] += r["amount"] - coupon
            tot["order"] += r["amount"]
            tot["fee"] += r["fee"]
        lines.append(",".join("`" + v for v in vals))
    lines += [SUMMARY_HEADER, ",".join("`" + v for v in [
        str(len(rows)), f"{tot['settle']:.2f}", f"{tot['refund']:.2f}", f"{tot['refund_coupon']:.2f}",
        f"{tot['fee']:.5f}",
        f"{tot['order']:.2f}", f"{tot['applied']:.2f}"])]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, max_size=8), st.booleans())
def test_generated_rows_round_trip_exactly(rows, packed):
    data = _render(rows)
    sink, report = normalize_bytes(CHANNEL, "gen.csv", gzip.compress(data) if packed else data)
    assert not sink.reject_lines and not report.unverified
    assert len(sink.records) == len(rows)
    for r, rec in zip(rows, sink.records):
        coupon = min(r["coupon"], r["amount"])
        assert rec.txn_type == ("REFUND" if r["refund"] else "PAYMENT")
        assert rec.order_no == r["order_no"] and rec.payer_id == r["openid"]
        assert rec.amount == r["amount"] and rec.coupon_amount == coupon
        assert rec.refund_no == (r["refund_no"] if r["refund"] else "")
        sign = -1 if r["refund"] else 1
        assert abs(rec.fee - sign * r["fee"]) <= Decimal("0.005")


def test_clean_samples_take_the_bulk_path_and_the_mixed_one_goes_row_by_row():
    for name in ("reference_sample_all.csv", "success_bill_new.csv", "refund_bill_new.csv", "old_columns_all.csv"):
        sink, _ = normalize_file(CHANNEL, SAMPLES / name)
        assert sink.bulk_batches == 1, name
    sink, _ = normalize_file(CHANNEL, SAMPLES / "mixed_all_bom.csv")
    assert sink.bulk_batches == 0 and sink.reject_lines


tricky_text = st.one_of(text, st.sampled_from([' padded ', '"quoted"', '\u3000全角', 'a\x1c', '-', '']))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({**ROW_FIELDS, "order_no": tricky_text, "goods": tricky_text,
                                       "openid": tricky_text}), max_size=8))
def test_bulk_and_row_by_row_give_identical_output(rows):
    from normalizers.wechatpay import WeChatPayNormalizer

    data = _render(rows)
    outputs = []
    for bulk in (True, False):
        WeChatPayNormalizer.bulk = bulk
        try:
            sink, report = normalize_bytes(CHANNEL, "gen.csv", data)
        except IntegrityError as exc:
            outputs.append(("integrity", exc.message))
            continue
        finally:
            WeChatPayNormalizer.bulk = True
        outputs.append((sink.records_io.getvalue(), sink.rejects_io.getvalue(), report.as_dict()))
    assert outputs[0] == outputs[1]
