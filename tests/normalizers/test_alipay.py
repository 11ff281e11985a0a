"""Alipay trade bill zip: goldens, hostile and broken archives, conservation and a GBK round-trip property."""

from __future__ import annotations

import io
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import IntegrityError
from normalizers.testing import channel_for, normalize_bytes, normalize_file
from tests.normalizers.regen_goldens import golden_paths, sample_files

SAMPLES = Path(__file__).parent / "samples" / "alipay"
CHANNEL = channel_for("alipay")
GOOD = [p for _, p in sample_files() if p.parent == SAMPLES]
BAD = [p for _, p in sample_files(include_bad=True) if p.parent == SAMPLES]
HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
          "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
          "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")


class GbkName(zipfile.ZipInfo):
    """An entry whose name is stored as GBK bytes without the UTF-8 flag, as Alipay writes them."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def test_samples_exist():
    assert {p.name for p in GOOD} == {"reference_sample.zip", "day_with_refunds.zip"}
    assert len(BAD) == 3


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_sample_matches_its_golden_files(path):
    sink, _ = normalize_file(CHANNEL, path)
    std, rej = golden_paths(path)
    assert sink.records_io.getvalue() == std.read_text(encoding="utf-8")
    assert sink.rejects_io.getvalue() == rej.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_archives_fail_as_a_whole_with_exit_4(path):
    with pytest.raises(IntegrityError) as info:
        normalize_file(CHANNEL, path)
    assert info.value.exit_code == 4 and path.name in info.value.describe()


def test_footer_disagreement_names_the_footer_line():
    with pytest.raises(IntegrityError) as info:
        normalize_file(CHANNEL, SAMPLES / "bad_footer_disagrees.zip")
    assert info.value.line == 10 and "交易合计 says 150.00" in info.value.message


def test_reference_rows_become_a_payment_and_its_refund():
    sink, report = normalize_file(CHANNEL, SAMPLES / "reference_sample.zip")
    pay, refund = sink.records
    assert (pay.txn_type, pay.order_no, pay.amount, pay.txn_time) == (
        "PAYMENT", "service_1568601259302", Decimal("0.01"), "2019-09-16 10:55:23")
    assert (refund.txn_type, refund.refund_no, refund.amount, refund.txn_time) == (
        "REFUND", "re_test_1568602607356", Decimal("0.01"), "2019-09-16 10:56:48")
    assert pay.payer_id == "*津水(602***@qq.com)"  # trailing TAB stripped
    assert report.declared["汇总"] == "checked"


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_conservation_rows_equal_records_plus_rejects(path):
    sink, report = normalize_file(CHANNEL, path)
    assert report.data_rows == len(sink.records) + len(sink.reject_lines)
    assert int(report.declared["交易合计笔数"]) == int(report.computed["交易合计笔数"])
    if not report.unverified:
        pays = sum((r.amount for r in sink.records if r.txn_type == "PAYMENT"), Decimal(0))
        assert pays == Decimal(report.declared["交易合计商家实收"])


def test_a_zip_bomb_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        entry = GbkName("2088_20261120_业务明细.csv")
        entry.compress_type = zipfile.ZIP_DEFLATED  # 50 MB of zeros in a few KB
        z.writestr(entry, b"#" + b"0" * (50 << 20))
    with pytest.raises(IntegrityError, match="zip bomb"):
        normalize_bytes(CHANNEL, "bomb.zip", buf.getvalue())


# -- property: rows rendered as an Alipay bill come back exactly ----------------------------------------------

gbk_text = st.text(alphabet=st.sampled_from("支付宝商户订单号年货礼盒咖啡豆会员卡测试ABCxyz0123-_"), min_size=1, max_size=10)
cents = st.integers(min_value=1, max_value=10**8).map(lambda n: Decimal(n) / 100)
row = st.fixed_dictionaries({"refund": st.booleans(), "order_no": gbk_text, "refund_no": gbk_text, "amount": cents,
                             "red_packet": st.integers(0, 100).map(lambda n: Decimal(n) / 100),
                             "fee": st.integers(0, 10**5).map(lambda n: Decimal(n) / 100), "goods": gbk_text,
                             "minute": st.integers(0, 1439)})


def _render(rows) -> bytes:
    lines = ["#支付宝业务明细查询", "#账号：[20880000000001560156]", HEADER]
    totals = {"交易": [0, Decimal(0)], "退款": [0, Decimal(0)]}
    for i, r in enumerate(rows):
        kind = "退款" if r["refund"] else "交易"
        sign = -1 if r["refund"] else 1
        t = f"2026-11-20 {r['minute'] // 60:02d}:{r['minute'] % 60:02d}:00"
        received = sign * (r["amount"] - r["red_packet"])
        totals[kind][0] += 1
        totals[kind][1] += received
        lines.append(",".join([f"2026112022{i:018d}\t", f"{r['order_no']}\t", f"{kind}\t", r["goods"], t, t, "s\t",
                               "s\t", "op\t", "\t", "*某(a***@qq.com)\t", f"{sign * r['amount']}", f"{received}",
                               f"{sign * r['red_packet']}", "0.00", "0.00", "0.00", "0.00", "", "0.00\t", "0.00",
                               (r["refund_no"] if r["refund"] else "") + "\t", f"{-sign * r['fee']}", "0.00", ""]))
    lines += [f"#交易合计：{totals['交易'][0]}笔，商家实收共{totals['交易'][1]:.2f}元，商家优惠共0.00元",
              f"#退款合计：{totals['退款'][0]}笔，商家实收退款共{totals['退款'][1]:.2f}元，商家优惠退款共0.00元"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(GbkName("20880000000001560156_20261120_业务明细.csv"), ("\r\n".join(lines) + "\r\n").encode("gbk"))
    return buf.getvalue()


@settings(max_examples=50, deadline=None)
@given(st.lists(row, max_size=8))
def test_generated_rows_round_trip_exactly(rows):
    sink, report = normalize_bytes(CHANNEL, "gen.zip", _render(rows))
    assert not sink.reject_lines and not report.unverified
    assert len(sink.records) == len(rows)
    for r, rec in zip(rows, sink.records):
        assert rec.txn_type == ("REFUND" if r["refund"] else "PAYMENT")
        assert (rec.order_no, rec.amount, rec.coupon_amount) == (r["order_no"], r["amount"], r["red_packet"])
        assert rec.refund_no == (r["refund_no"] if r["refund"] else "")
        assert rec.fee == (-r["fee"] if r["refund"] else r["fee"])
        assert rec.merchant_id == "20880000000001560156"
