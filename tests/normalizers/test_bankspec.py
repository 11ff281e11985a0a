"""Bank statements by spec (normalizers/bankspec.py): the two configured banks, spec validation, properties."""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, IntegrityError
from normalizers.bankspec import BankSpecNormalizer
from normalizers.testing import channel_for, normalize_bytes, normalize_file
from recon.config import load_channel, load_settings
from tests.normalizers.regen_goldens import golden_paths, sample_files

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).parent / "samples"
BANKS = ("bank_icbc_csv", "bank_camt053")
GOOD = [(c, p) for c, p in sample_files() if p.parent.name in BANKS]
BAD = [(c, p) for c, p in sample_files(include_bad=True) if p.parent.name in BANKS]


def _ids(item):
    return item[1].name


# -- the two banks: goldens, integrity failures, conservation -------------------------------------------------------

def test_every_bank_has_good_and_bad_samples():
    for bank in BANKS:
        assert any(p.parent.name == bank for _, p in GOOD) and any(p.parent.name == bank for _, p in BAD)


@pytest.mark.parametrize("bank", BANKS)
def test_sample_channel_file_has_the_same_spec_as_the_configured_channel(bank):
    conf = tomllib.loads((ROOT / "conf" / "channels" / f"{bank}.toml").read_text(encoding="utf-8"))
    sample = tomllib.loads((SAMPLES / bank / "channel.toml").read_text(encoding="utf-8"))
    assert sample["normalizer"] == conf["normalizer"]
    assert sample["channel"]["normalizer"] == conf["channel"]["normalizer"] == "bankspec"


@pytest.mark.parametrize("item", GOOD, ids=_ids)
def test_sample_matches_its_golden_files(item):
    channel, path = item
    sink, _ = normalize_file(channel, path)
    std, rej = golden_paths(path)
    assert sink.records_io.getvalue() == std.read_text(encoding="utf-8")
    assert sink.rejects_io.getvalue() == rej.read_text(encoding="utf-8")


@pytest.mark.parametrize("item", GOOD, ids=_ids)
def test_every_data_row_is_one_record_or_one_reject_and_amounts_agree_with_the_control_totals(item):
    channel, path = item
    sink, report = normalize_file(channel, path)
    declared_count = sum(int(n) for n in report.declared["count"].split("+"))
    assert len(sink.records) + len(sink.reject_lines) == report.data_rows == declared_count
    lines = [r.source_line for r in sink.records] + sink.reject_lines
    assert len(set(lines)) == len(lines)
    for check in set(report.declared) - set(report.unverified):
        declared = sum(Decimal(v.replace(",", "")) for v in report.declared[check].split("+"))
        assert Decimal(report.computed[check]) == declared, check
    if not sink.reject_lines:  # nothing rejected: the standard records alone reproduce the bank's sums
        for kind in ("payment", "refund"):
            if f"{kind}_sum" in report.declared:
                total = sum((r.amount for r in sink.records if r.txn_type == kind.upper()), Decimal(0))
                assert total == Decimal(report.computed[f"{kind}_sum"])


@pytest.mark.parametrize("item", BAD, ids=_ids)
def test_bad_sample_fails_as_a_whole_naming_file_and_line(item):
    channel, path = item
    with pytest.raises(IntegrityError) as info:
        normalize_file(channel, path)
    err = info.value
    assert err.exit_code == 4
    assert err.channel == channel.name and err.date == "2026-11-20" and err.file == path.name
    assert err.line and err.hint


@pytest.mark.parametrize("name, line, message", [
    ("bank_icbc_csv/bad_totals_icbc_20261121.csv", 14, "payment_sum says 431.80, the rows add up to 413.80"),
    ("bank_icbc_csv/bad_encoding_icbc_20261121.csv", 9, "not valid gbk"),
    ("bank_icbc_csv/bad_truncated_icbc_20261121.csv", 10, r"footer \(control totals\) is missing"),
    ("bank_camt053/bad_totals_camt053_20261120.xml", 15, "payment_count says 6, the rows add up to 7"),
    ("bank_camt053/bad_truncated_camt053_20261120.xml", 84, "not well-formed XML"),
])
def test_bad_samples_say_what_is_wrong_and_where(name, line, message):
    path = SAMPLES / name
    with pytest.raises(IntegrityError, match=message) as info:
        normalize_file(load_channel(path.parent / "channel.toml"), path)
    assert info.value.line == line


def test_icbc_rejects_keep_line_reason_and_raw_text_and_leave_typed_totals_unverified():
    path = SAMPLES / "bank_icbc_csv" / "icbc_20261120.csv"
    sink, report = normalize_file(load_channel(path.parent / "channel.toml"), path)
    assert sink.reject_lines == [13, 14, 15]
    rejects = sink.rejects_io.getvalue()
    assert "交易类型 '预授权完成' is not in txn_type.map" in rejects
    assert "expected 14 fields, found 7" in rejects and "status '冲正' is not in status_map" in rejects
    assert report.unverified == ["payment_count", "payment_sum", "refund_count", "refund_sum"]
    assert report.computed["count"] == report.declared["count"] == "10"


def test_configured_pipeline_loads_with_the_bank_channels():
    conf = load_settings(ROOT / "conf" / "pipeline.toml")
    for bank in BANKS:
        assert isinstance(BankSpecNormalizer(conf.channel(bank)), BankSpecNormalizer)


# -- spec validation: a wrong spec is a ConfigError naming the file and the key --------------------------------------

ICBC_SPEC = tomllib.loads((ROOT / "conf/channels/bank_icbc_csv.toml").read_text(encoding="utf-8"))["normalizer"]
CAMT_SPEC = tomllib.loads((ROOT / "conf/channels/bank_camt053.toml").read_text(encoding="utf-8"))["normalizer"]


def _set(spec: dict, dotted: str, value):
    spec = copy.deepcopy(spec)
    *parents, last = dotted.split(".")
    table = spec
    for key in parents:
        table = table.setdefault(key, {})
    if value is _DELETE:
        del table[last]
    else:
        table[last] = value
    return spec


_DELETE = object()


@pytest.mark.parametrize("base, key, value, named", [
    (ICBC_SPEC, "format", "json", "format"),
    (ICBC_SPEC, "delimitor", ";", "delimitor"),
    (ICBC_SPEC, "entries", "x", "entries: applies to format xml"),
    (ICBC_SPEC, "encoding", "gbk2312x", "encoding"),
    (ICBC_SPEC, "footer_patterns", ["(?P<count>"], "footer_patterns"),
    (ICBC_SPEC, "totals.count", "total_rows", "totals.count"),
    (ICBC_SPEC, "totals.net", "count", "totals.net"),
    (ICBC_SPEC, "status_map.成功", "OK", "status_map.成功"),
    (ICBC_SPEC, "columns.amount", _DELETE, "columns.amount"),
    (ICBC_SPEC, "columns.channel", "x", "columns.channel"),
    (ICBC_SPEC, "constants.amount", "1.00", "constants.amount"),
    (ICBC_SPEC, "constants.currency", "人民币", "constants.currency"),
    (ICBC_SPEC, "txn_type.map.消费", "CREDIT", "txn_type.map"),
    (ICBC_SPEC, "txn_type.sign", "x", "txn_type.sign"),
    (ICBC_SPEC, "amount_scale", "2", "amount_scale"),
    (ICBC_SPEC, "time_zone", "Mars/Olympus", "time_zone"),
    (ICBC_SPEC, "header", False, "names"),
    (CAMT_SPEC, "fields.amount", "bad:Amt", "fields.amount"),
    (CAMT_SPEC, "columns.order_no", "no_such_field", "fields"),
    (CAMT_SPEC, "entries", _DELETE, "entries"),
    (CAMT_SPEC, "encoding", "utf-8", "encoding"),
])
def test_a_wrong_spec_is_a_config_error_naming_the_key(base, key, value, named):
    channel = channel_for("bankspec", name="bank_x", **_set(base, key, value))
    with pytest.raises(ConfigError) as info:
        BankSpecNormalizer(channel)
    err = info.value
    assert err.exit_code == 2 and err.file == "<test>" and err.channel == "bank_x"
    assert f"[normalizer] {named}" in err.message


# -- properties: records rendered by an independent writer come back exactly ----------------------------------------

ANY_CHAR = st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn", "Zl", "Zp"))


def _text(alphabet=None, max_size=12):
    chars = alphabet if alphabet is not None else ANY_CHAR
    return st.text(chars, min_size=1, max_size=max_size).filter(lambda s: s == s.strip() and s)


cents = st.integers(min_value=0, max_value=10**11)
moments = st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2026, 12, 31)).map(
    lambda m: m.replace(microsecond=0))
STATUS = {"成功": "SUCCESS", "失败": "FAILED", "处理中": "PROCESSING"}
record = st.fixed_dictionaries({
    "refund": st.booleans(), "order_no": _text(), "refund_no": _text(), "cents": cents, "at": moments,
    "status": st.sampled_from(sorted(STATUS)), "bank": _text(),
})


def _money(cents_: int) -> str:
    return f"{cents_ // 100}.{cents_ % 100:02d}"


def _check(rows, sink, report, *, zone_hours=0):
    assert not sink.reject_lines and not report.unverified
    assert len(sink.records) == len(rows) == report.data_rows
    for r, rec in zip(rows, sink.records):
        assert rec.txn_type == ("REFUND" if r["refund"] else "PAYMENT")
        assert rec.order_no == r["order_no"] and rec.bank == r["bank"]
        assert rec.refund_no == (r["refund_no"] if r["refund"] else "")
        assert rec.amount == Decimal(r["cents"]).scaleb(-2)
        assert rec.status == STATUS[r["status"]]
        assert rec.txn_time == (r["at"] + dt.timedelta(hours=zone_hours)).strftime("%Y-%m-%d %H:%M:%S")


CSV_SPEC = {
    "format": "csv", "encoding": "utf-8", "delimiter": ";", "skip_lines": 1,
    "footer_patterns": [r"^TOTAL;(?P<n>\d+);(?P<paid>[\d.]+);(?P<refunded>[\d.]+)$"],
    "time_format": "%d/%m/%Y %H:%M:%S", "time_zone": "UTC", "business_time_zone": "Asia/Shanghai",
    "status_map": STATUS, "txn_type": {"negative_is_refund": True},
    "columns": {"txn_time": "When", "order_no": "Order", "refund_no": "Refund", "amount": "Amount",
                "status": "State", "bank": "Bank"},
    "constants": {"currency": "EUR"},
    "totals": {"count": "n", "payment_sum": "paid", "refund_sum": "refunded"},
}


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ';"') else value


def _render_csv(rows) -> bytes:
    lines = ["Statement of account", "When;Order;Refund;Amount;State;Bank"]
    paid = refunded = 0
    for r in rows:
        amount = ("-" if r["refund"] else "") + _money(r["cents"])
        lines.append(";".join(_csv_field(v) for v in (r["at"].strftime("%d/%m/%Y %H:%M:%S"), r["order_no"],
                                                         r["refund_no"] if r["refund"] else "", amount,
                                                         r["status"], r["bank"])))
        refunded, paid = (refunded + r["cents"], paid) if r["refund"] else (refunded, paid + r["cents"])
    lines.append(f"TOTAL;{len(rows)};{_money(paid)};{_money(refunded)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@settings(max_examples=40, deadline=None)
@given(st.lists(record, max_size=6))
def test_csv_records_round_trip_exactly(rows):
    sink, report = normalize_bytes(channel_for("bankspec", **CSV_SPEC), "gen.csv", _render_csv(rows))
    _check(rows, sink, report, zone_hours=8)


GBK_TEXT = _text(st.sampled_from("中国工商银行招商建设农业上海北京深圳支行分行ABCxyz0189-_/"), max_size=8)
FIXED_SPEC = {
    "format": "fixed", "encoding": "gbk", "width_unit": "bytes", "amount_scale": 2,
    "skip_patterns": ["^H"], "footer_patterns": [r"^T(?P<n>\d{8})(?P<total>\d{15})"],
    "fields": {"order": [2, 20], "refund": [22, 20], "dc": [42, 1], "fen": [43, 12], "at": [55, 14],
               "state": [69, 6], "bank": [75, 16]},
    "columns": {"order_no": "order", "refund_no": "refund", "amount": "fen", "txn_time": "at", "status": "state",
                "bank": "bank"},
    "constants": {"currency": "CNY"}, "time_format": "%Y%m%d%H%M%S", "status_map": STATUS,
    "txn_type": {"field": "dc", "map": {"C": "PAYMENT", "D": "REFUND"}},
    "totals": {"count": "n", "sum": "total"},
}


def _pad(text: str, width: int) -> bytes:
    data = text.encode("gbk")
    assert len(data) <= width
    return data + b" " * (width - len(data))


def _render_fixed(rows) -> bytes:
    out = [b"H20261120" + _pad("工商银行对账", 20)]
    for r in rows:
        out.append(b"D" + _pad(r["order_no"], 20) + _pad(r["refund_no"] if r["refund"] else "", 20)
                   + (b"D" if r["refund"] else b"C") + b"%012d" % r["cents"]
                   + r["at"].strftime("%Y%m%d%H%M%S").encode() + _pad(r["status"], 6) + _pad(r["bank"], 16))
    out.append(b"T%08d%015d" % (len(rows), sum(r["cents"] for r in rows)))
    return b"\r\n".join(out) + b"\r\n"


fixed_record = st.fixed_dictionaries({
    "refund": st.booleans(), "order_no": GBK_TEXT, "refund_no": GBK_TEXT, "cents": st.integers(0, 10**12 - 1),
    "at": moments, "status": st.sampled_from(sorted(STATUS)), "bank": GBK_TEXT,
})


@settings(max_examples=40, deadline=None)
@given(st.lists(fixed_record, max_size=6))
def test_fixed_width_gbk_records_round_trip_exactly(rows):
    sink, report = normalize_bytes(channel_for("bankspec", **FIXED_SPEC), "gen.txt", _render_fixed(rows))
    _check(rows, sink, report)


def test_a_fixed_width_field_that_cuts_a_gbk_character_is_rejected():
    row = {"refund": False, "order_no": "A" * 19 + "X", "refund_no": "", "cents": 1, "at": dt.datetime(2026, 1, 1),
           "status": "成功", "bank": "x"}
    # 中 (2 bytes in GBK) straddles the end of the order field and the start of the refund field
    data = _render_fixed([row]).replace(b"A" * 19 + b"X ", b"A" * 19 + "中".encode("gbk"), 1)
    sink, report = normalize_bytes(channel_for("bankspec", **FIXED_SPEC), "cut.txt", data)
    assert sink.reject_lines == [2] and report.data_rows == 1
    assert "field order (bytes 2-21) cuts a multi-byte character" in sink.rejects_io.getvalue()


NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
XML_SPEC = {
    "format": "xml", "namespaces": {"c": NS}, "entries": "c:BkToCstmrStmt/c:Stmt/c:Ntry",
    "fields": {"amt": "c:Amt", "ccy": "c:Amt/@Ccy", "dc": "c:CdtDbtInd", "sts": "c:Sts/c:Cd",
               "at": "c:BookgDt/c:DtTm", "e2e": "c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId",
               "instr": "c:NtryDtls/c:TxDtls/c:Refs/c:InstrId", "bank": "../c:Acct/c:Svcr/c:FinInstnId/c:Nm"},
    "columns": {"amount": "amt", "currency": "ccy", "status": "sts", "txn_time": "at", "order_no": "e2e",
                "refund_no": "instr", "bank": "bank"},
    "time_format": "%Y-%m-%dT%H:%M:%S%z", "status_map": STATUS,
    "txn_type": {"field": "dc", "map": {"CRDT": "PAYMENT", "DBIT": "REFUND"}},
    "totals": {"count": "c:BkToCstmrStmt/c:Stmt/c:TxsSummry/c:TtlNtries/c:NbOfNtries",
               "sum": "c:BkToCstmrStmt/c:Stmt/c:TxsSummry/c:TtlNtries/c:Sum"},
}


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _render_xml(rows, bank: str) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<Document xmlns="{NS}"><BkToCstmrStmt><Stmt>',
           f"<Acct><Svcr><FinInstnId><Nm>{_xml_escape(bank)}</Nm></FinInstnId></Svcr></Acct>",
           f"<TxsSummry><TtlNtries><NbOfNtries>{len(rows)}</NbOfNtries>"
           f"<Sum>{_money(sum(r['cents'] for r in rows))}</Sum></TtlNtries></TxsSummry>"]
    for r in rows:
        refs = (f"<InstrId>{_xml_escape(r['refund_no'])}</InstrId>" if r["refund"] else "") + \
               f"<EndToEndId>{_xml_escape(r['order_no'])}</EndToEndId>"
        out += ["<Ntry>", f'  <Amt Ccy="CNY">{_money(r["cents"])}</Amt>',
                f"  <CdtDbtInd>{'DBIT' if r['refund'] else 'CRDT'}</CdtDbtInd>",
                f"  <Sts><Cd>{r['status']}</Cd></Sts>",
                f"  <BookgDt><DtTm>{r['at'].strftime('%Y-%m-%dT%H:%M:%S')}-05:00</DtTm></BookgDt>",
                f"  <NtryDtls><TxDtls><Refs>{refs}</Refs></TxDtls></NtryDtls>", "</Ntry>"]
    out.append("</Stmt></BkToCstmrStmt></Document>")
    return "\n".join(out).encode("utf-8")


@settings(max_examples=40, deadline=None)
@given(st.lists(record, max_size=6), _text())
def test_xml_records_round_trip_exactly(rows, bank):
    sink, report = normalize_bytes(channel_for("bankspec", **XML_SPEC), "gen.xml", _render_xml(rows, bank))
    for r in rows:
        r["bank"] = bank  # every entry takes the bank of its statement
    _check(rows, sink, report, zone_hours=13)  # -05:00 to Shanghai (+08:00)
