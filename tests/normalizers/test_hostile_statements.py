"""Hostile statements, as real bytes: impossible times, the largest amounts, lines and files too large, broken zips,
and messages that must not quote what was not parsed ("Nothing lost, nothing wrong in silence").

Each format is written by hand here (not by the normalizer's own tables), for WeChat Pay, Alipay, UnionPay,
PayPal and a bank by spec.
"""

from __future__ import annotations

import gzip
import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, IntegrityError
from normalizers.base import MAX_LINE_BYTES
from normalizers.testing import channel_for, normalize_bytes
from normalizers.unionpay import fen_to_yuan
from normalizers.wechatpay import WeChatPayNormalizer
from schemas.money import MAX_MONEY, MoneyError, check_money, parse_total
from schemas.times import TimeError, arrow_times_valid, parse_time
from tests.normalizers.test_alipay import HEADER as ALIPAY_HEADER, GbkName
from tests.normalizers.test_unionpay import AMOUNT, CARD, CODE, FEE, MER_ID, MERCHANT, ORDER, QUERY_ID, render_line
from tests.normalizers.test_unionpay import TIME as UP_TIME

SAMPLES = Path(__file__).parent / "samples"
IMPOSSIBLE = ["2026-02-30 10:00:00", "2026-11-20 24:00:00", "2026-13-45 99:99:99", "2026-11-20 23:59:60",
              "0000-11-20 10:00:00"]
MAX = "9999999999999999.99"
TOO_LARGE = ["12345678901234567.00", "12345678901234567890"]  # 17 integer digits; 20 digits


# -- the statements, written by hand -----------------------------------------------------------------------------

WECHAT_HEADER = (SAMPLES / "wechatpay" / "reference_sample_all.csv").read_text(encoding="utf-8").splitlines()[0]
WECHAT_SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"


def wechat_bill(rows, *, declared_orders: str | None = None) -> bytes:
    """An ALL bill (new columns) of payments: each row (time, amount, fee) with its order number S<n>."""
    lines, settle, fees = [WECHAT_HEADER], Decimal(0), Decimal(0)
    for i, (when, amount, fee) in enumerate(rows):
        lines.append(",".join("`" + v for v in [
            when, "wx1", "1601959334", "0", "", f"42{i:08d}", f"S{i}", "oUser", "JSAPI", "SUCCESS", "OTHERS", "CNY",
            amount, "0.00", "0", "0", "0.00", "0.00", "", "", "goods", "", fee, "0.60%", amount, "0.00", ""]))
        try:
            settle += Decimal(amount)
            fees += Decimal(fee)
        except ArithmeticError:
            pass
    total = declared_orders or f"{settle:.2f}"
    lines += [WECHAT_SUMMARY, ",".join("`" + v for v in [str(len(rows)), f"{settle:.2f}", "0.00", "0.00",
                                                         f"{fees:.5f}", total, "0.00"])]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def both_paths(data: bytes, name: str = "bill.csv", channel=None):
    """(sink, report) of the WeChat bill through the bulk path and row by row; asserts both agree."""
    out = []
    for bulk in (True, False):
        WeChatPayNormalizer.bulk = bulk
        try:
            out.append(normalize_bytes(channel or channel_for("wechatpay"), name, data))
        finally:
            WeChatPayNormalizer.bulk = True
    (bulk_sink, bulk_report), (row_sink, row_report) = out
    assert bulk_sink.records_io.getvalue() == row_sink.records_io.getvalue()
    assert bulk_sink.rejects_io.getvalue() == row_sink.rejects_io.getvalue()
    assert bulk_report.as_dict() == row_report.as_dict()
    return bulk_sink, bulk_report


def alipay_zip(rows, *, received_total: str | None = None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """An Alipay bill zip of payments: each row (created, finished, amount, 支付宝红包[, 集分宝])."""
    lines, total = ["#支付宝业务明细查询", "#账号：[20880000000001560156]", ALIPAY_HEADER], Decimal(0)
    for i, (created, finished, amount, coupon, *points) in enumerate(rows):
        lines.append(",".join([f"2026112022{i:018d}\t", f"A{i}\t", "交易\t", "goods", created, finished, "s\t", "s\t",
                               "op\t", "\t", "*某(a***@qq.com)\t", amount, amount, coupon, (points or ["0.00"])[0],
                               "0.00", "0.00",
                               "0.00", "", "0.00\t", "0.00", "\t", "0.00", "0.00", ""]))
        try:
            total += Decimal(amount)
        except ArithmeticError:
            pass
    lines += [f"#交易合计：{len(rows)}笔，商家实收共{received_total or f'{total:.2f}'}元，商家优惠共0.00元",
              "#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元"]
    return zip_of(("\r\n".join(lines) + "\r\n").encode("gbk"), compression=compression)


def zip_of(member: bytes, *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr(GbkName("20880000000001560156_20261120_业务明细.csv"), member)
    return buf.getvalue()


def unionpay_line(stamp: str = "1120120000", amount: str = "000000000100", fee: str = "D000000000001") -> bytes:
    return render_line({CODE: "S22", UP_TIME: stamp, CARD: "6225880212341234", AMOUNT: amount, QUERY_ID: "1" * 21,
                        ORDER: "A1", MERCHANT: MER_ID, FEE: fee})


PAYPAL_CH = ('"CH","Transaction ID","Invoice ID","PayPal Reference ID","PayPal Reference ID Type",'
             '"Transaction Event Code","Transaction Initiation Date","Transaction Completion Date",'
             '"Transaction Debit or Credit","Gross Transaction Amount","Gross Transaction Currency",'
             '"Fee Debit or Credit","Fee Amount","Fee Currency","Custom Field","Consumer ID","Payment Tracking ID",'
             '"Store ID","Bank Reference ID","Credit Transactional Fee","Credit Promotional Fee","Credit Term"')


def paypal_report(rows) -> bytes:
    """An STL report, one section in USD: each row (completion date, gross in hundredths); footers add up."""
    lines = ['"RH",2026/11/20 03:12:44 -0800,"A","AB12CD34EF56G",009', '"FH",01',
             '"SH",2026/11/19 00:00:00 -0800,2026/11/19 23:59:59 -0800,"AB12CD34EF56G",""', PAYPAL_CH]
    gross = 0
    for i, (when, minor) in enumerate(rows):
        lines.append(f'"SB","TX{i:015d}","ORD-{i}","","","T0006",{when},{when},"CR",{minor},"USD","DR",0,"USD","",'
                     '"buyer@example.com","","","","","",""')
        gross += int(minor)
    tail = ',"CR",0,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0,' + str(len(rows))
    lines += [f'"SF","USD",{gross},0,0,0{tail}', f'"SC",{len(rows)}', f'"RF","USD",{gross},0,0,0{tail}',
              f'"RC",{len(rows)}', f'"FF",{len(rows)}']
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


BANK = dict(format="csv", encoding="utf-8", header=True,
            footer_patterns=[r"^TOTAL,(?P<count>[0-9]+),(?P<sum>-?[0-9.]+)$"],
            columns={"order_no": "order", "amount": "amount", "txn_time": "time"},
            constants={"status": "SUCCESS", "currency": "CNY"}, totals={"count": "count", "sum": "sum"})


def bank_statement(rows, *, total: str | None = None) -> bytes:
    """A bank CSV by the spec BANK: each row (time, amount); the footer gives the count and the sum."""
    lines, s = ["time,order,amount"], Decimal(0)
    for i, (when, amount) in enumerate(rows):
        lines.append(f"{when},B{i},{amount}")
        try:
            s += Decimal(amount)
        except ArithmeticError:
            pass
    lines.append(f"TOTAL,{len(rows)},{total or f'{s:.2f}'}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def bank(**extra):
    return channel_for("bankspec", name="bank_test", **{**BANK, **extra})


def reasons(sink) -> str:
    return sink.rejects_io.getvalue()


# -- 1. impossible times -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", IMPOSSIBLE + ["2026-1-5 01:02:03", " 2026-11-20 10:00:00", "2026-11-20T10:00:00",
                                               "٢٠٢٦-11-20 10:00:00"])
def test_the_time_rule_refuses_what_is_not_a_calendar_moment(text):
    with pytest.raises(TimeError, match="is not a valid time"):
        parse_time(text, what="交易时间")


def test_the_time_rule_takes_real_moments_leap_days_included():
    assert parse_time("2024-02-29 23:59:59").day == 29
    assert parse_time("20261120235959", "%Y%m%d%H%M%S").second == 59
    with pytest.raises(TimeError, match="day is out of range"):
        parse_time("20250229000000", "%Y%m%d%H%M%S")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\Z") |
                st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")), min_size=1, max_size=20))
def test_the_bulk_filter_takes_only_what_the_time_rule_takes(values):
    import pyarrow as pa

    def valid(text):
        try:
            parse_time(text)
            return True
        except TimeError:
            return False

    assert [arrow_times_valid(pa.array([v])) for v in values] == [valid(v) for v in values]
    assert arrow_times_valid(pa.array(values)) == all(valid(v) for v in values)
    mask = pa.array([valid(v) for v in values])
    assert arrow_times_valid(pa.array(values), mask)


def test_wechat_rows_with_impossible_times_are_rejected_in_both_paths_and_the_block_goes_row_by_row():
    rows = [("2026-11-20 10:00:00", "1.00", "0.01000")] + [(t, "2.00", "0.01000") for t in IMPOSSIBLE]
    sink, report = both_paths(wechat_bill(rows))
    assert [r.order_no for r in sink.records] == ["S0"]
    assert sink.reject_lines == [3, 4, 5, 6, 7] and sink.reject_orders == ["S1", "S2", "S3", "S4", "S5"]
    text = reasons(sink)
    assert "交易时间 '2026-02-30 10:00:00' is not a valid time (yyyy-MM-dd HH:mm:ss): day is out of range" in text
    assert "hour must be in 0..23" in text and "month must be in 1..12" in text and "second must be in 0..59" in text
    assert not report.unverified  # the amounts were read: the bill's totals still add up
    WeChatPayNormalizer.bulk = True
    one_bad = wechat_bill([("2026-11-20 10:00:00", "1.00", "0.01000"), ("2026-02-30 10:00:00", "2.00", "0.01000")])
    sink, _ = normalize_bytes(channel_for("wechatpay"), "bill.csv", one_bad)
    assert sink.bulk_batches == 0 and sink.reject_lines == [3]


def test_wechat_refund_times_follow_the_same_rule():
    header = (SAMPLES / "wechatpay" / "refund_bill_new.csv").read_text(encoding="utf-8").splitlines()
    assert "退款成功时间" in header[0]
    data = (SAMPLES / "wechatpay" / "refund_bill_new.csv").read_bytes()
    clean, _ = both_paths(data)
    first_refund_time = clean.records[0].txn_time
    assert first_refund_time in data.decode("utf-8")
    bad = data.replace(first_refund_time.encode(), b"2026-11-31 12:30:00", 1)
    sink, _ = both_paths(bad)
    assert len(sink.reject_lines) == 1 and "is not a valid time" in reasons(sink)


@pytest.mark.parametrize("created, finished", [("2026-11-20 10:00:00", "2026-02-30 10:00:00"),
                                               ("2026-13-45 99:99:99", "2026-11-20 10:00:01"),
                                               ("", "2026-11-20 24:00:00")])
def test_alipay_rows_with_impossible_times_are_rejected(created, finished):
    data = alipay_zip([("2026-11-20 09:00:00", "2026-11-20 09:00:05", "1.00", "0.00"), (created, finished, "2.00",
                                                                                       "0.00")])
    sink, report = normalize_bytes(channel_for("alipay"), "bill.zip", data)
    assert [r.order_no for r in sink.records] == ["A0"] and sink.reject_lines == [5]
    assert "is not a valid time" in reasons(sink) and not report.unverified


@pytest.mark.parametrize("stamp, why", [("0230120000", "no year has this date"), ("1345999999", "no year has"),
                                        ("1120240000", "hour must be in 0..23"),
                                        ("1120235960", "second must be in 0..59")])
def test_unionpay_lines_with_impossible_times_are_rejected(stamp, why):
    data = unionpay_line() + b"\r\n" + unionpay_line(stamp) + b"\r\n"
    sink, _ = normalize_bytes(channel_for("unionpay"), "INN26112001ZM_777290058110097.txt", data)
    assert len(sink.records) == 1 and sink.reject_lines == [2]
    assert why in reasons(sink) and "not a valid time" in reasons(sink)


@pytest.mark.parametrize("when", ["2026/02/30 09:00:12 -0800", "2026/11/19 24:00:00 -0800",
                                  "2026/13/45 99:99:99 -0800"])
def test_paypal_rows_with_impossible_times_are_rejected(when):
    data = paypal_report([("2026/11/19 09:00:12 -0800", "100"), (when, "200")])
    sink, report = normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV", data)
    assert len(sink.records) == 1 and sink.reject_lines == [6]
    assert "is not a valid time" in reasons(sink) and not report.unverified


@pytest.mark.parametrize("when", IMPOSSIBLE[:3])
def test_bank_rows_with_impossible_times_are_rejected(when):
    data = bank_statement([("2026-11-20 10:00:00", "1.00"), (when, "2.00")])
    sink, report = normalize_bytes(bank(), "bank.csv", data)
    assert len(sink.records) == 1 and sink.reject_lines == [3]
    assert "txn_time" in reasons(sink) and "is not a valid time" in reasons(sink) and not report.unverified


# -- 2. the largest amounts --------------------------------------------------------------------------------------

def test_the_amount_rule():
    assert check_money(Decimal(MAX)) == MAX_MONEY
    for value in ("10000000000000000.00", "-10000000000000000.00", "9999999999999999.995", "NaN"):
        with pytest.raises(MoneyError, match=r"beyond DECIMAL\(18,2\)"):
            check_money(Decimal(value), "fee")
    assert parse_total("29999999999999999.97") == Decimal("29999999999999999.97")
    with pytest.raises(MoneyError, match="more than 2 decimals"):
        parse_total("1.001")


def test_a_wechat_bill_at_the_largest_amount_adds_up_past_18_digits():
    sink, report = both_paths(wechat_bill([("2026-11-20 10:00:00", MAX, "0.00000")] * 3))
    assert [str(r.amount) for r in sink.records] == [MAX] * 3 and not sink.reject_lines
    assert report.computed["订单总金额"] == report.declared["订单总金额"] == "29999999999999999.97"
    sink.columnar_table()  # the Parquet copy holds them
    with pytest.raises(IntegrityError) as info:  # a real mismatch names both numbers exactly
        both_paths(wechat_bill([("2026-11-20 10:00:00", MAX, "0.00000")] * 3,
                               declared_orders="29999999999999999.96"))
    assert "订单总金额 says 29999999999999999.96, the rows add up to 29999999999999999.97" in info.value.message


def test_totals_are_summed_in_a_context_that_does_not_round():
    from schemas.money import exact_totals

    def total(values):
        result = Decimal(0)
        for v in values:
            result += v
        return result

    values = [Decimal("9" * 27 + ".99")] * 10  # a running total past the default context's 28 digits
    assert total(values) != Decimal("9" * 28 + ".90")  # the default context rounds, silently
    assert exact_totals(total)(values) == Decimal("9" * 28 + ".90")


@pytest.mark.parametrize("amount", TOO_LARGE)
def test_a_wechat_amount_beyond_decimal_18_2_is_a_rejected_row(amount):
    sink, report = both_paths(wechat_bill([("2026-11-20 10:00:00", "1.00", "0.00000"),
                                           ("2026-11-20 10:00:01", amount, "0.00000")]))
    assert len(sink.records) == 1 and sink.reject_lines == [3]
    assert "beyond DECIMAL(18,2)" in reasons(sink) and report.unverified
    sink.columnar_table()


def test_a_wechat_fee_that_rounds_past_decimal_18_2_is_a_rejected_row():
    sink, _ = both_paths(wechat_bill([("2026-11-20 10:00:00", "1.00", "9999999999999999.99999")]))
    assert not sink.records and sink.reject_lines == [2]
    assert "手续费 10000000000000000.00 is beyond DECIMAL(18,2)" in reasons(sink)


def test_an_alipay_bill_at_the_largest_amount_adds_up_past_18_digits():
    sink, report = normalize_bytes(channel_for("alipay"), "bill.zip", alipay_zip(
        [("2026-11-20 09:00:00", "2026-11-20 09:00:05", MAX, "0.00")] * 3))
    assert [str(r.amount) for r in sink.records] == [MAX] * 3
    assert report.computed["交易合计商家实收"] == report.declared["交易合计商家实收"] == "29999999999999999.97"


@pytest.mark.parametrize("amount, coupon, points, says", [
    (TOO_LARGE[0], "0.00", "0.00", "amount too large: '12345678901234567.00' is beyond DECIMAL(18,2)"),
    (TOO_LARGE[1], "0.00", "0.00", "amount too large: '12345678901234567890' is beyond DECIMAL(18,2)"),
    ("1.00", MAX, MAX, "coupon (支付宝红包（元） + 集分宝（元） + 支付宝优惠（元）) 19999999999999999.98 is beyond"),
])
def test_an_alipay_amount_beyond_decimal_18_2_is_a_rejected_row(amount, coupon, points, says):
    data = alipay_zip([("2026-11-20 09:00:00", "2026-11-20 09:00:05", "1.00", "0.00"),
                       ("2026-11-20 09:00:00", "2026-11-20 09:00:05", amount, coupon, points)])
    sink, _ = normalize_bytes(channel_for("alipay"), "bill.zip", data)
    assert len(sink.records) == 1 and sink.reject_lines == [5]
    assert says in reasons(sink)


def test_unionpay_amounts_go_through_the_same_range():
    # The ZM layout's widths (12 and 13 digits of fen) cannot hold an amount past DECIMAL(18,2): the converter
    # still applies the rule, for any field a wider layout would bring.
    assert fen_to_yuan("999999999999", "交易金额", signed=False, blank_is_zero=False) == Decimal("9999999999.99")
    with pytest.raises(MoneyError, match=r"交易金额 123456789012345678\.90 is beyond DECIMAL\(18,2\)"):
        fen_to_yuan("12345678901234567890", "交易金额", signed=False, blank_is_zero=False)
    sink, _ = normalize_bytes(channel_for("unionpay"), "x.txt",
                              unionpay_line(amount="999999999999", fee="D999999999999") + b"\r\n")
    assert str(sink.records[0].amount) == "9999999999.99" and str(sink.records[0].fee) == "9999999999.99"


def test_a_paypal_report_at_the_largest_amount_adds_up_and_20_digits_are_a_rejected_row():
    top = "999999999999999999"  # hundredths: 9999999999999999.99
    sink, report = normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV",
                                   paypal_report([("2026/11/19 09:00:12 -0800", top)] * 3))
    assert [str(r.amount) for r in sink.records] == [MAX] * 3
    assert report.computed["report USD gross CR"] == str(3 * int(top))
    sink, report = normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV", paypal_report(
        [("2026/11/19 09:00:12 -0800", "100"), ("2026/11/19 09:00:13 -0800", "12345678901234567890")]))
    assert len(sink.records) == 1 and sink.reject_lines == [6]
    assert "Gross Transaction Amount 123456789012345678.90 is beyond DECIMAL(18,2)" in reasons(sink)
    assert not report.unverified  # the footer's totals still include it, exactly
    sink.columnar_table()  # this crashed with ArrowInvalid


def test_a_bank_statement_at_the_largest_amount_adds_up_and_beyond_is_a_rejected_row():
    sink, report = normalize_bytes(bank(), "bank.csv", bank_statement([("2026-11-20 10:00:00", MAX)] * 3))
    assert [str(r.amount) for r in sink.records] == [MAX] * 3
    assert report.computed["sum"] == "29999999999999999.97" and not report.unverified
    for amount in TOO_LARGE:
        sink, _ = normalize_bytes(bank(), "bank.csv", bank_statement([("2026-11-20 10:00:00", "1.00"),
                                                                      ("2026-11-20 10:00:01", amount)]))
        assert len(sink.records) == 1 and sink.reject_lines == [3] and "DECIMAL(18,2)" in reasons(sink)
    scaled = bank(amount_scale=2)
    sink, _ = normalize_bytes(scaled, "bank.csv", bank_statement([("2026-11-20 10:00:00", "100"),
                                                                  ("2026-11-20 10:00:01", "12345678901234567890")],
                                                                 total="12345678901234567990"))
    assert len(sink.records) == 1 and "beyond DECIMAL(18,2)" in reasons(sink)


# -- 3. lines and statements too large ---------------------------------------------------------------------------

def gzip_of_zeros(header: bytes, mib: int) -> bytes:
    """``header`` then ``mib`` MiB of zero bytes without a newline, gzip'd (a few hundred KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts, chunk = [packer.compress(header)], b"\0" * (1 << 20)
    parts += [packer.compress(chunk) for _ in range(mib)]
    return b"".join(parts) + packer.flush()


@pytest.mark.parametrize("header", [b"", (WECHAT_HEADER + "\r\n").encode("utf-8")], ids=["line1", "line2"])
def test_a_wechat_gzip_bomb_without_newline_fails_at_once_in_bounded_memory(header):
    bomb = gzip_of_zeros(header, 256)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(IntegrityError, match="longer than 1048576 bytes") as info:
            normalize_bytes(channel_for("wechatpay"), "bill.csv.gz", bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 10
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"  # a block (16 MiB) and a line, not the 256 MiB
    err = info.value
    assert err.exit_code == 4 and err.line == (2 if header else 1) and err.file == "bill.csv.gz"
    assert err.channel == "wechatpay" and err.date == "2026-11-20" and "max_line_bytes" in err.hint


def test_the_default_line_limit_is_1_mib_exactly():
    line = b"x" * MAX_LINE_BYTES
    for data, fails in ((line + b"\n", False), (line + b"x\n", True)):
        try:
            normalize_bytes(channel_for("unionpay"), "x.txt", unionpay_line() + b"\r\n" + data + unionpay_line())
        except IntegrityError as exc:
            assert fails and exc.line == 2 and "longer than" in exc.message
        else:
            assert not fails


def test_wechat_statement_size_and_line_length_are_options():
    data = wechat_bill([("2026-11-20 10:00:00", "1.00", "0.00000")] * 200)
    with pytest.raises(IntegrityError, match="more than 5000 bytes") as info:
        normalize_bytes(channel_for("wechatpay", max_statement_bytes=5000), "bill.csv", data)
    assert info.value.line and 2 <= info.value.line <= 200 and "max_statement_bytes" in info.value.hint
    with pytest.raises(IntegrityError, match="more than 5000 bytes"):
        normalize_bytes(channel_for("wechatpay", max_statement_bytes=5000), "bill.csv.gz", gzip.compress(data))
    with pytest.raises(IntegrityError, match="longer than 100 bytes") as info:
        normalize_bytes(channel_for("wechatpay", max_line_bytes=100), "bill.csv", data)
    assert info.value.line == 1
    normalize_bytes(channel_for("wechatpay", max_statement_bytes=len(data)), "bill.csv", data)  # at the limit


@pytest.mark.parametrize("value", [0, -1, "1MB", True, 1.5])
def test_a_bad_limit_is_a_configuration_error(value):
    with pytest.raises(ConfigError, match="max_line_bytes"):
        normalize_bytes(channel_for("wechatpay", max_line_bytes=value), "bill.csv", b"")


def test_alipay_lines_and_entry_size_are_bounded():
    rows = [("2026-11-20 09:00:00", "2026-11-20 09:00:05", "1.00", "0.00")] * 50
    with pytest.raises(IntegrityError, match="longer than 60 bytes") as info:
        normalize_bytes(channel_for("alipay", max_line_bytes=60), "bill.zip", alipay_zip(rows))
    assert info.value.line == 3 and "业务明细.csv" in info.value.file
    with pytest.raises(IntegrityError, match="more than 3000 bytes"):
        normalize_bytes(channel_for("alipay", max_statement_bytes=3000), "bill.zip", alipay_zip(rows))
    # at the real default: a 2 MiB line of varied bytes (not a zip bomb by ratio)
    import random
    noise = random.Random(1).randbytes(1 << 20).hex().encode()
    with pytest.raises(IntegrityError, match="longer than 1048576 bytes"):
        normalize_bytes(channel_for("alipay"), "bill.zip", zip_of(b"#x\r\n" + noise))


def test_unionpay_and_paypal_lines_and_size_are_bounded():
    data = (unionpay_line() + b"\r\n") * 20
    with pytest.raises(IntegrityError, match="more than 3000 bytes") as info:
        normalize_bytes(channel_for("unionpay", max_statement_bytes=3000), "x.txt", data)
    assert info.value.line == 5
    report = paypal_report([("2026/11/19 09:00:12 -0800", "100")] * 20)
    with pytest.raises(IntegrityError, match="more than 2000 bytes"):
        normalize_bytes(channel_for("paypal", max_statement_bytes=2000), "STL-20261120.01.009.CSV", report)
    with pytest.raises(IntegrityError, match="longer than 1048576 bytes") as info:
        normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV", report[:200] + b"y" * (3 << 20))
    assert info.value.line == 4
    utf16 = report.decode("utf-8").encode("utf-16")
    sink, _ = normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV", utf16)
    assert len(sink.records) == 20
    with pytest.raises(IntegrityError, match="longer than 400 bytes") as info:
        normalize_bytes(channel_for("paypal", max_line_bytes=400), "STL-20261120.01.009.CSV", utf16)
    assert info.value.line == 4  # the CH line: 440 UTF-16 bytes
    with pytest.raises(IntegrityError, match="more than 3000 bytes"):
        normalize_bytes(channel_for("paypal", max_statement_bytes=3000), "STL-20261120.01.009.CSV", utf16)


def test_bank_statements_are_read_as_a_stream_within_the_limits():
    data = bank_statement([("2026-11-20 10:00:00", "1.00")] * 50)
    with pytest.raises(IntegrityError, match="more than 500 bytes") as info:
        normalize_bytes(bank(max_statement_bytes=500), "bank.csv", data)
    assert 2 < info.value.line < 50
    with pytest.raises(IntegrityError, match="longer than 1048576 bytes") as info:
        normalize_bytes(bank(), "bank.csv", data[:100] + b"9" * (2 << 20))
    camt = SAMPLES / "bank_camt053"
    from recon.config import load_channel
    channel = load_channel(camt / "channel.toml")
    channel.normalizer_options["max_line_bytes"] = 40
    with pytest.raises(IntegrityError, match="longer than 40 bytes"):
        normalize_bytes(channel, "camt.xml", (camt / "camt053_20261120.xml").read_bytes())


def test_bank_utf16_statements_are_decoded_as_a_stream():
    data = bank_statement([("2026-11-20 10:00:00", "1.00")] * 5).decode().encode("utf-16")
    sink, _ = normalize_bytes(bank(encoding="utf-16"), "bank.csv", data)
    assert len(sink.records) == 5
    with pytest.raises(IntegrityError, match="not valid utf-16"):
        normalize_bytes(bank(encoding="utf-16"), "bank.csv",
                        data.replace("B2".encode("utf-16-le"), b"\x00\xd8A\x00"))  # a lone surrogate


def test_a_field_past_the_csv_modules_limit_is_a_reject_or_exit_4_not_a_traceback():
    big = "x" * (200 << 10)
    data = alipay_zip([("2026-11-20 09:00:00", "2026-11-20 09:00:05", "1.00", "0.00")] * 2)
    member = zipfile.ZipFile(io.BytesIO(data)).read(zipfile.ZipFile(io.BytesIO(data)).namelist()[0])
    lines = member.split(b"\r\n")
    lines[4] = lines[4].replace(b"goods", big.encode(), 1)
    sink, report = normalize_bytes(channel_for("alipay"), "bill.zip", zip_of(b"\r\n".join(lines)))
    assert sink.reject_lines == [5] and sink.reject_orders == ["A1"]
    assert "not valid CSV: field larger than field limit" in reasons(sink)
    assert report.unverified
    report_data = paypal_report([("2026/11/19 09:00:12 -0800", "100")]).replace(b"buyer@example.com", big.encode())
    with pytest.raises(IntegrityError, match="not valid CSV") as info:
        normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV", report_data)
    assert info.value.line == 5


# -- 4. broken zips ----------------------------------------------------------------------------------------------

GOOD_ROWS = [("2026-11-20 09:00:00", "2026-11-20 09:00:05", "1.00", "0.00")]


def _member_data_offset(data: bytes) -> int:
    """Where the first entry's data starts (after its local header)."""
    name_len, extra_len = struct.unpack("<HH", data[26:30])
    return 30 + name_len + extra_len


def _bad_crc() -> bytes:
    data = bytearray(alipay_zip(GOOD_ROWS, compression=zipfile.ZIP_STORED))
    at = _member_data_offset(data) + 10  # a byte of the '#支付宝业务明细查询' line
    data[at] ^= 0x01
    return bytes(data)


def _lying_size(factor: int) -> bytes:
    """The central directory's uncompressed size of the entry multiplied by ``factor`` (or divided, if < 0)."""
    data = bytearray(alipay_zip(GOOD_ROWS))
    cd = data.rfind(b"PK\x01\x02")
    real = struct.unpack("<I", data[cd + 24:cd + 28])[0]
    fake = real * factor if factor > 0 else real // -factor
    data[cd + 24:cd + 28] = struct.pack("<I", fake)
    data[22:26] = struct.pack("<I", fake)  # the local header too
    return bytes(data)


def _encrypted() -> bytes:
    data = bytearray(alipay_zip(GOOD_ROWS))
    cd = data.rfind(b"PK\x01\x02")
    for flags_at in (6, cd + 8):
        flags = struct.unpack("<H", data[flags_at:flags_at + 2])[0]
        data[flags_at:flags_at + 2] = struct.pack("<H", flags | 0x1)
    return bytes(data)


def _corrupt_deflate() -> bytes:
    data = bytearray(alipay_zip(GOOD_ROWS * 20))
    at = _member_data_offset(data)
    data[at:at + 40] = b"\xff" * 40
    return bytes(data)


@pytest.mark.parametrize("make, says", [
    (_bad_crc, "Bad CRC-32"), (lambda: _lying_size(3), "its header says"),
    (lambda: _lying_size(-2), "Bad CRC-32|larger than declared"),
    (_encrypted, "is encrypted"), (_corrupt_deflate, "cannot be read"),
], ids=["bad_crc", "header_says_larger", "header_says_smaller", "encrypted", "corrupt_deflate"])
def test_an_alipay_zip_that_cannot_be_read_as_written_is_exit_4_naming_the_entry(make, says):
    with pytest.raises(IntegrityError, match=says) as info:
        normalize_bytes(channel_for("alipay"), "bill.zip", make())
    err = info.value
    assert err.exit_code == 4 and "bill.zip" in err.file and err.channel == "alipay" and err.date == "2026-11-20"
    assert "download the bill again" in err.hint or "ask Alipay" in err.hint


# -- 5. no unparsed line in a message ----------------------------------------------------------------------------

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def test_a_wechat_header_that_is_not_a_bill_header_is_not_quoted():
    data = f"交易时间,商户订单号,api_key={SECRET},password=hunter2\r\n`x,`y,`z,`w\r\n".encode()
    with pytest.raises(IntegrityError, match="unknown column set") as info:
        normalize_bytes(channel_for("wechatpay"), "bill.csv", data)
    text = str(info.value)
    assert SECRET not in text and "hunter2" not in text
    assert "4 columns, 2 of them not WeChat Pay column names (known: 交易时间, 商户订单号)" in text


def test_a_wechat_summary_header_that_is_not_one_is_not_quoted():
    data = wechat_bill([("2026-11-20 10:00:00", "1.00", "0.00000")]).replace(
        WECHAT_SUMMARY.encode(), f"总交易单数,token={SECRET}".encode())
    with pytest.raises(IntegrityError, match="summary header does not match") as info:
        normalize_bytes(channel_for("wechatpay"), "bill.csv", data)
    assert SECRET not in str(info.value) and "known: 总交易单数" in str(info.value)


def test_a_paypal_row_that_is_not_a_report_row_is_not_quoted():
    data = paypal_report([("2026/11/19 09:00:12 -0800", "100")]).replace(b'"FH",01', f"{SECRET},1".encode())
    with pytest.raises(IntegrityError, match="not a record type") as info:
        normalize_bytes(channel_for("paypal"), "STL-20261120.01.009.CSV", data)
    assert SECRET[:6] not in str(info.value) and info.value.line == 2
