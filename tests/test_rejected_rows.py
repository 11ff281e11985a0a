"""Rejected statement rows through `recon run`: WeChat Pay, Alipay and UnionPay statements as the channels write
them (the normalizers' sample files), each with rows the normalizer rejects.

Within a channel's ``max_rejected_rows`` each rejected row is a CHANNEL_ROW_REJECTED break (file, line, order,
reason, the line's text masked), the local order it names is LOCAL_ONLY with a note naming the rejected line,
and report.html, report.xlsx and the printed summary say in their headline that rows were rejected. Above it
the channel fails with exit 4 and nothing is published for it; the other channels are reconciled.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import openpyxl
import pytest

from schemas.local import COLUMNS as LOCAL_COLUMNS
from schemas.masking import CARD_RE
from tests.conftest import DAY1, run_cli

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).parent / "normalizers" / "samples"
D = DAY1.isoformat()
# channel -> (sample statement, its rejected rows: line -> order number read from the row, "" when unreadable)
STATEMENTS = {
    "wechatpay": ("wechatpay/mixed_all_bom.csv", {8: "S1005", 9: "S1006"}),
    "alipay": ("alipay/day_with_refunds.zip", {11: "A1004", 12: "A1005"}),
    "unionpay": ("unionpay/INN26112001ZM_777290058110097.txt", {6: "ORD20261120A0004", 7: "ORD20261120A0005",
                                                                  8: ""}),
}
# a paid local order whose channel row was rejected, per channel: (order, its rejected line)
PAID_BUT_REJECTED = {"wechatpay": ("S1005", 8), "alipay": ("A1004", 11), "unionpay": ("ORD20261120A0005", 7)}


def _write_pipeline(base: Path, limits: dict[str, int]) -> str:
    conf = base / "conf"
    (conf / "channels").mkdir(parents=True, exist_ok=True)
    (conf / "pipeline.toml").write_text('[pipeline]\nroot = "../root"\ntimezone = "Asia/Shanghai"\n',
                                        encoding="utf-8")
    for channel, (sample, _) in STATEMENTS.items():
        inbox = base / "inbox" / channel
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / sample, inbox / Path(sample).name)
        (conf / "channels" / f"{channel}.toml").write_text(
            f'[channel]\nname = "{channel}"\nnormalizer = "{channel}"\nmax_rejected_rows = {limits[channel]}\n\n'
            f'[download]\ntype = "localdir"\npath = "../../inbox/{channel}"\nfilename = "{Path(sample).name}"\n'
            f'max_attempts = 1\n', encoding="utf-8")
    export = base / "root" / "local" / D
    export.mkdir(parents=True, exist_ok=True)
    with (export / "orders.csv").open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(LOCAL_COLUMNS)
        for channel, (order_no, _) in sorted(PAID_BUT_REJECTED.items()):
            out.writerow([order_no, "", "PAYMENT", channel, "CNY", "5.00", "PAID", f"{D} 12:00:00", f"{D} 12:00:05"])
    return str(conf / "pipeline.toml")


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def within(tmp_path_factory, spark):
    """Every channel allows exactly as many rejected rows as its statement has: the date is published."""
    base = tmp_path_factory.mktemp("rejects_within")
    conf = _write_pipeline(base, {ch: len(rejected) for ch, (_, rejected) in STATEMENTS.items()})
    printed = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(printed):
        code = run_cli("run", "--conf", conf, "--date", D, spark=spark)
    return base, code, printed.getvalue()


def test_within_the_limit_each_rejected_row_is_a_break_of_its_own(within):
    base, code, _ = within
    assert code == 0
    rows = _rows(base / "root" / "recon" / D / "discrepancies.csv")
    rejected = [r for r in rows if r["category"] == "CHANNEL_ROW_REJECTED"]
    expected = {(ch, Path(sample).name, str(line), order)
                for ch, (sample, lines) in STATEMENTS.items() for line, order in lines.items()}
    assert {(r["channel"], r["source_file"], r["source_line"], r["order_no"]) for r in rejected} == expected
    assert len(rejected) == len(expected)
    for row in rejected:
        assert row["resolution"] == "MANUAL_REVIEW"
        assert row["local_amount"] == row["channel_amount"] == ""
        published = _rows(base / "root" / "standard" / row["channel"] / D / "_rejects.csv")
        (reject,) = [r for r in published if r["source_line"] == row["source_line"]]
        # the reason and the line as the channel sent it, with card numbers and payer ids masked
        assert row["note"].startswith(f"rejected by the normalizer: {reject['reason']} | line as sent: ")
        assert reject["raw"][:100] in row["note"]
        unmasked = CARD_RE.findall(row["note"].replace(row["order_no"] or "\x00", ""))
        assert not unmasked, row["note"]
    # the UnionPay card numbers the sample's rejected lines hold are masked to 6 + 4
    union = " ".join(r["note"] for r in rejected if r["channel"] == "unionpay")
    assert "621700*********4567" in union and "6217000000000004567" not in union


def test_the_local_order_of_a_rejected_row_names_the_line_instead_of_no_channel_record(within):
    base, _, _ = within
    rows = _rows(base / "root" / "recon" / D / "discrepancies.csv")
    for channel, (order_no, line) in PAID_BUT_REJECTED.items():
        (local,) = [r for r in rows if r["order_no"] == order_no and r["category"] == "LOCAL_ONLY"]
        source = Path(STATEMENTS[channel][0]).name
        assert local["channel"] == channel and local["local_amount"] == "5.00"
        assert f"{source} line {line}:" in local["note"] and "CHANNEL_ROW_REJECTED" in local["note"]
        assert local["note"].startswith("no channel record read: the channel's row for this order was rejected")


def test_the_headline_of_every_output_says_rows_were_rejected(within):
    base, _, printed = within
    folder = base / "root" / "recon" / D
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    lines = {ch: f"{ch}: {len(rejected)} statement rows were rejected and the statement's totals are unverified"
             for ch, (_, rejected) in STATEMENTS.items()}
    for ch, (_, rejected) in STATEMENTS.items():
        entry = summary["channels"][ch]
        assert entry["rejects"] == len(rejected) and entry["statement_totals"] == "unverified"
        assert entry["categories"]["CHANNEL_ROW_REJECTED"]["rows"] == len(rejected)
    # the printed summary: right under the date's line
    out = printed.splitlines()
    start = next(i for i, text in enumerate(out) if text.startswith(f"== {D}"))
    assert [text.split(";")[0] for text in out[start + 1:start + 4]] == [f"  !! {lines[ch]}" for ch in sorted(lines)]
    # report.html: an alert per channel above everything else
    page = (folder / "report.html").read_text(encoding="utf-8")
    for ch, text in lines.items():
        alert = re.search(rf'<div class="alert" id="rows-rejected-{ch}">(.*?)</div>', page)
        assert alert and text.replace("'", "&#x27;") in alert.group(1)
        assert page.index(alert.group(0)) < page.index("At a glance")
    # report.xlsx: the first rows of the Summary sheet
    ws = openpyxl.load_workbook(folder / "report.xlsx", read_only=True)["Summary"]
    top = [row[0] for row in ws.iter_rows(min_row=1, max_row=4, max_col=1, values_only=True)]
    assert [(t or "").split(";")[0] for t in top] == [lines[ch] for ch in sorted(lines)] + [""]


def test_above_the_limit_the_channel_fails_with_exit_4_and_the_others_are_reconciled(tmp_path, spark, capsys):
    limits = {ch: len(rejected) for ch, (_, rejected) in STATEMENTS.items()}
    limits["wechatpay"] = 1  # its bill has 2 rejected rows
    conf = _write_pipeline(tmp_path, limits)
    assert run_cli("run", "--conf", conf, "--date", D, spark=spark) == 4
    printed = capsys.readouterr()
    message = printed.out + printed.err
    assert "2 statement row(s) rejected, more than max_rejected_rows = 1" in message
    assert "mixed_all_bom.csv line 8: expected 27 fields, found 26" in message
    assert "max_rejected_rows under [channel]" in message
    assert not (tmp_path / "root" / "standard" / "wechatpay" / D).exists()  # nothing published for it
    summary = json.loads((tmp_path / "root" / "recon" / D / "summary.json").read_text(encoding="utf-8"))
    assert summary["channels_not_available"] == ["wechatpay"]
    assert sorted(summary["channels_reconciled"]) == ["alipay", "unionpay"]
    # its local order is held for the day the statement is fixed, not reported as LOCAL_ONLY
    assert summary["not_reconciled"]["local_orders"]["wechatpay"]["records"] == 1
    rows = _rows(tmp_path / "root" / "recon" / D / "discrepancies.csv")
    assert {r["channel"] for r in rows} == {"alipay", "unionpay"}


def test_a_channel_at_the_default_limit_fails_on_its_first_rejected_row(tmp_path):
    from connectors.landing import land
    from core.errors import IntegrityError
    from core.storage import Storage
    from normalizers.publish import normalize_channel
    from recon.config import load_settings

    conf = _write_pipeline(tmp_path, {ch: 0 for ch in STATEMENTS})
    for path in (tmp_path / "conf" / "channels").glob("*.toml"):  # no max_rejected_rows: the default
        path.write_text(path.read_text(encoding="utf-8").replace("max_rejected_rows = 0\n", ""), encoding="utf-8")
    settings = load_settings(conf)
    storage = Storage(settings.root)
    for channel, (sample, lines) in STATEMENTS.items():
        ch = settings.channel(channel)
        assert ch.max_rejected_rows == 0
        land(storage, ch, DAY1, work_dir=settings.work_dir)
        with pytest.raises(IntegrityError) as err:
            normalize_channel(storage, ch, DAY1)
        assert err.value.exit_code == 4 and err.value.file == Path(sample).name and err.value.line == min(lines)
        assert f"{len(lines)} statement row(s) rejected, more than max_rejected_rows = 0" in err.value.message
        assert not storage.exists("standard", channel, D)
