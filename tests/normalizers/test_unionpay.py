"""UnionPay ZM file: goldens, integrity failures, conservation, card masking and a round-trip property."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import IntegrityError
from normalizers.testing import channel_for, normalize_bytes, normalize_file
from tests.normalizers.regen_goldens import golden_paths, sample_files

SAMPLES = Path(__file__).parent / "samples" / "unionpay"
CHANNEL = channel_for("unionpay")
UNIONPAY_SAMPLES = [p for c, p in sample_files() if p.parent == SAMPLES]
BAD_SAMPLES = [p for c, p in sample_files(include_bad=True) if p.parent == SAMPLES]
MER_ID = "777290058110097"
# A card-shaped run: 13-19 digits standing alone (order numbers like A2026… are not cards).
CARD_RUN = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")

# The ZM layout, written out again here so the renderer does not share the parser's table.
WIDTHS = [3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 2, 32, 2, 6, 10, 13, 13, 4, 15, 2, 2, 6, 2, 4, 32, 1, 21, 15, 1, 15, 32,
          13, 13, 8, 32, 13, 13, 12, 2, 1, 32, 98]
CODE, TIME, CARD, AMOUNT, QUERY_ID, ORDER, FEE, ORIG_QUERY_ID, MERCHANT, SUB_NAME, CUSTOM, COUPON, ORIG_ORDER = (
    0, 4, 5, 6, 9, 11, 15, 26, 27, 30, 34, 35, 40)


def render_line(values: dict[int, str]) -> bytes:
    """One ZM line: each field GBK-encoded, space padded to its width in bytes, one space between fields."""
    parts = []
    for i, width in enumerate(WIDTHS):
        data = values.get(i, "").encode("gbk")
        assert len(data) <= width
        parts.append(data + b" " * (width - len(data)))
    return b" ".join(parts)


def _card_numbers(data: bytes) -> set[str]:
    """The 帐号 slot (bytes 46-64) of every line long enough to have one."""
    start = sum(WIDTHS[:CARD]) + CARD
    return {line[start:start + WIDTHS[CARD]].strip().decode() for line in data.split(b"\n")
            if len(line) >= start + WIDTHS[CARD]}


@pytest.mark.parametrize("path", UNIONPAY_SAMPLES, ids=lambda p: p.name)
def test_sample_matches_its_golden_files(path):
    sink, _ = normalize_file(CHANNEL, path)
    std, rej = golden_paths(path)
    assert sink.records_io.getvalue() == std.read_text(encoding="utf-8")
    assert sink.rejects_io.getvalue() == rej.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", UNIONPAY_SAMPLES, ids=lambda p: p.name)
def test_every_line_is_a_record_or_a_reject_and_the_totals_are_the_records(path):
    sink, report = normalize_file(CHANNEL, path)
    lines = [n for n, data in enumerate(path.read_bytes().split(b"\n"), start=1) if data.strip()]
    seen = sorted([r.source_line for r in sink.records] + sink.reject_lines)
    assert seen == lines and report.data_rows == len(lines)
    for kind, key in (("PAYMENT", "payment_amount"), ("REFUND", "refund_amount")):
        assert Decimal(report.computed[key]) == sum((r.amount for r in sink.records if r.txn_type == kind), Decimal(0))
    assert Decimal(report.computed["fee"]) == sum((r.fee for r in sink.records), Decimal(0))


@pytest.mark.parametrize("path", UNIONPAY_SAMPLES + BAD_SAMPLES, ids=lambda p: p.name)
def test_card_numbers_never_appear_unmasked(path):
    cards = _card_numbers(path.read_bytes())
    assert cards, "the sample should carry card numbers"
    try:
        sink, _ = normalize_file(CHANNEL, path)
        outputs = sink.records_io.getvalue() + sink.rejects_io.getvalue()
    except IntegrityError as exc:
        outputs = str(exc)
    assert set(CARD_RUN.findall(outputs)) <= {MER_ID}
    assert not any(card in outputs for card in cards)
    if not path.name.startswith("bad_"):
        assert all(re.fullmatch(r"\d{6}\*{3,9}\d{4}", r.payer_id) for r in sink.records)


def test_the_reference_sample_maps_payments_refunds_fees_and_gbk_lines():
    sink, _ = normalize_file(CHANNEL, SAMPLES / "INN26112001ZM_777290058110097.txt")
    by_line = {r.source_line: r for r in sink.records}
    gbk = by_line[3]  # Chinese in 二级商户简称 / 商户自定义域 ahead of 优惠金额: byte widths matter
    assert (gbk.order_no, gbk.amount, gbk.fee, gbk.coupon_amount) == (
        "ORD20261120A0002", Decimal("258.00"), Decimal("1.55"), Decimal("5.00"))
    refund = by_line[4]
    assert (refund.txn_type, refund.order_no, refund.refund_no, refund.fee, refund.channel_txn_id,
            refund.channel_refund_id) == ("REFUND", "ORD20261120A0001", "RFD20261120A0001-1", Decimal("-0.30"),
                                          "792611200930150100245", "792611201433070100301")
    assert by_line[5].fee == Decimal("0.18")  # unsigned 13-digit fee
    assert by_line[1].txn_time == "2026-11-19 23:30:01"  # yesterday's late transaction in today's settlement
    assert sink.reject_lines == [6, 7, 8]
    rejects = sink.rejects_io.getvalue()
    assert "交易代码 'S31'" in rejects and "line is 605 bytes" in rejects and "without 原始交易订单号" in rejects


@pytest.mark.parametrize("path", BAD_SAMPLES, ids=lambda p: p.name)
def test_bad_samples_fail_as_a_whole_naming_file_and_line(path):
    with pytest.raises(IntegrityError) as info:
        normalize_file(CHANNEL, path)
    err = info.value
    assert err.exit_code == 4 and err.file == path.name and err.line and err.channel == "unionpay"
    assert err.date == "2026-11-20" and err.hint


def test_truncated_file_names_the_cut_line():
    with pytest.raises(IntegrityError, match="truncated") as info:
        normalize_file(CHANNEL, SAMPLES / "bad_truncated_INN26112001ZM_777290058110097.txt")
    assert info.value.line == 4


def test_a_long_last_line_is_a_reject_not_a_truncation():
    line = render_line({CODE: "S22", TIME: "1120120000", CARD: "6225880212341234", AMOUNT: "000000000100",
                        QUERY_ID: "1" * 21, ORDER: "A1", MERCHANT: MER_ID})
    sink, _ = normalize_bytes(CHANNEL, "x.txt", line + b"\r\n" + line + b"XX")
    assert len(sink.records) == 1 and sink.reject_lines == [2]


def test_empty_file_is_a_day_without_transactions():
    sink, report = normalize_bytes(CHANNEL, "INN26112001ZM_777290058110097.txt", b"")
    assert not sink.records and not sink.reject_lines and report.data_rows == 0


@pytest.mark.parametrize("settled, stamp, expected", [
    (dt.date(2027, 1, 1), "1231235959", "2026-12-31 23:59:59"),
    (dt.date(2026, 12, 31), "0101000001", "2027-01-01 00:00:01"),
    (dt.date(2028, 3, 1), "0229120000", "2028-02-29 12:00:00"),
])
def test_the_year_comes_from_the_settlement_date_across_the_new_year(settled, stamp, expected):
    line = render_line({CODE: "S22", TIME: stamp, CARD: "6225880212341234", AMOUNT: "000000000100",
                        QUERY_ID: "1" * 21, ORDER: "A1", MERCHANT: MER_ID})
    sink, _ = normalize_bytes(CHANNEL, "x.txt", line + b"\r\n", day=settled)
    assert sink.records[0].txn_time == expected


def test_times_move_to_the_configured_business_zone():
    line = render_line({CODE: "S22", TIME: "1120093015", CARD: "6225880212341234", AMOUNT: "000000000100",
                        QUERY_ID: "1" * 21, ORDER: "A1", MERCHANT: MER_ID})
    sink, _ = normalize_bytes(channel_for("unionpay", timezone="UTC"), "x.txt", line)
    assert sink.records[0].txn_time == "2026-11-20 01:30:15"


# -- property: lines rendered in the ZM layout come back exactly ------------------------------------------------

def _gbk_text(max_bytes: int):
    chars = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), st.sampled_from("AZaz09·（）-"))
    return st.text(chars, max_size=16).map(str.strip).filter(
        lambda s: _encodable(s) and len(s.encode("gbk")) <= max_bytes)


def _encodable(s: str) -> bool:
    try:
        s.encode("gbk")
        return True
    except UnicodeEncodeError:
        return False


# Starting with a letter, so an order number is never mistaken for a card-shaped digit run below.
order_text = st.builds(lambda head, tail: head + tail, st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ"),
                       st.text(st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), max_size=31))
line_strategy = st.fixed_dictionaries({
    "refund": st.booleans(), "order": order_text, "refund_no": order_text,
    "fen": st.integers(0, 10**12 - 1), "fee": st.integers(-(10**12 - 1), 10**12 - 1), "fee_signed": st.booleans(),
    "coupon": st.integers(0, 10**12 - 1), "card": st.text(st.sampled_from("0123456789"), min_size=13, max_size=19),
    "offset": st.integers(-150 * 86400, 150 * 86400), "sub_name": _gbk_text(32), "custom": _gbk_text(32),
})


def _render(r: dict, i: int, settled: dt.date) -> tuple[bytes, dt.datetime]:
    when = dt.datetime.combine(settled, dt.time(12)) + dt.timedelta(seconds=r["offset"])
    fee = r["fee"] if r["fee_signed"] else abs(r["fee"])
    fee_text = (("D" if fee >= 0 else "C") + f"{abs(fee):012d}") if r["fee_signed"] else f"{fee:013d}"
    values = {CODE: "S30" if r["refund"] else "S22", TIME: when.strftime("%m%d%H%M%S"), CARD: r["card"],
              AMOUNT: f"{r['fen']:012d}", QUERY_ID: f"{i:021d}", FEE: fee_text, MERCHANT: MER_ID,
              SUB_NAME: r["sub_name"], CUSTOM: r["custom"], COUPON: f"D{r['coupon']:012d}"}
    if r["refund"]:
        values.update({ORDER: r["refund_no"], ORIG_ORDER: r["order"], ORIG_QUERY_ID: f"9{i:020d}"})
    else:
        values[ORDER] = r["order"]
    return render_line(values), when


@settings(max_examples=60, deadline=None)
@given(st.lists(line_strategy, max_size=6), st.dates(dt.date(2020, 1, 1), dt.date(2035, 12, 31)))
def test_generated_lines_round_trip_exactly(rows, settled):
    rendered = [_render(r, i, settled) for i, r in enumerate(rows)]
    data = b"".join(line + b"\r\n" for line, _ in rendered)
    sink, report = normalize_bytes(CHANNEL, f"INN{settled:%y%m%d}01ZM_{MER_ID}.txt", data, day=settled)
    assert not sink.reject_lines and len(sink.records) == len(rows) == report.data_rows
    for i, (r, (_, when), rec) in enumerate(zip(rows, rendered, sink.records)):
        fee = r["fee"] if r["fee_signed"] else abs(r["fee"])
        assert rec.txn_type == ("REFUND" if r["refund"] else "PAYMENT")
        assert rec.order_no == r["order"] and rec.refund_no == (r["refund_no"] if r["refund"] else "")
        assert rec.amount == Decimal(r["fen"]) / 100 and rec.fee == Decimal(fee) / 100
        assert rec.coupon_amount == Decimal(r["coupon"]) / 100
        assert rec.txn_time == when.strftime("%Y-%m-%d %H:%M:%S")
        assert rec.payer_id == r["card"][:6] + "*" * (len(r["card"]) - 10) + r["card"][-4:]
        assert rec.channel_refund_id == (f"{i:021d}" if r["refund"] else "")
        assert rec.channel_txn_id == (f"9{i:020d}" if r["refund"] else f"{i:021d}")
        assert rec.merchant_id == MER_ID and rec.currency == "CNY" and rec.status == "SUCCESS"
    assert set(CARD_RUN.findall(sink.records_io.getvalue())) <= {MER_ID}
