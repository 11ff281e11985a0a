"""The nightly run for whole dates through `recon`, on the session's SparkSession.

Covers the issue's acceptance: every category with its resolution, the
23:58/00:03 order, the MARK_PAID correction, conservation of counts and
amounts, byte-identical re-runs, and exit status 4 with nothing published.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.outputs import CATEGORIES, CORRECTION_COLUMNS, DISCREPANCY_COLUMNS, OPEN_ITEM_COLUMNS, RESOLUTIONS
from tests.conftest import DAY1, DAY2, run_cli

pytestmark = pytest.mark.slow
DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _recon(demo: Path, day) -> Path:
    return demo / "root" / "recon" / day.isoformat()


@pytest.fixture(scope="module")
def two_days(tmp_path_factory, spark):
    """Both demo days reconciled once for the module (tests only read them, or re-run identically)."""
    from recon.demo import Demo

    demo_dir = tmp_path_factory.mktemp("two_days") / "demo"
    Demo(DAY1, 2, orders_per_day=40).build().write(demo_dir)
    conf = str(demo_dir / "conf" / "pipeline.toml")
    assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), spark=spark) == 0
    assert run_cli("run", "--conf", conf, "--date", DAY2.isoformat(), spark=spark) == 0
    return demo_dir


def test_every_category_appears_with_its_resolution(two_days):
    seen = {}
    for day in (DAY1, DAY2):
        for row in _rows(_recon(two_days, day) / "discrepancies.csv"):
            assert row["resolution"] == RESOLUTIONS[row["category"]]
            seen[row["category"]] = row["resolution"]
        summary = json.loads((_recon(two_days, day) / "summary.json").read_text())
        assert summary["channels"]["wechatpay"]["categories"]["MATCHED"]["local"]["records"] > 0
    assert set(seen) == set(CATEGORIES) - {"MATCHED"}


def test_the_order_paid_at_2358_is_carried_then_cleared_late(two_days):
    day1 = [r for r in _rows(_recon(two_days, DAY1) / "discrepancies.csv") if r["local_time"].endswith("23:58:00")]
    (pending,) = day1
    assert (pending["category"], pending["resolution"], pending["channel_amount"]) == ("PENDING_CUTOFF", "CARRIED", "")
    day2 = {r["order_no"]: r for r in _rows(_recon(two_days, DAY2) / "discrepancies.csv")}
    cleared = day2[pending["order_no"]]
    assert (cleared["category"], cleared["resolution"], cleared["age_days"]) == ("CLEARED_LATE", "CLEARED", "1")
    assert cleared["channel_time"] == f"{DAY2} 00:03:00" and cleared["local_amount"] == cleared["channel_amount"]
    # the carried item left the open items of day 2
    assert pending["order_no"] not in {r["order_no"] for r in _rows(_recon(two_days, DAY2) / "open_items.csv")}


def test_local_unpaid_channel_paid_has_a_mark_paid_correction(two_days):
    for day in (DAY1, DAY2):
        folder = _recon(two_days, day)
        fixes = {(r["order_no"], r["refund_no"]): r for r in _rows(folder / "corrections.csv")}
        unpaid = [r for r in _rows(folder / "discrepancies.csv") if r["category"] == "LOCAL_UNPAID_CHANNEL_PAID"]
        assert unpaid
        for row in unpaid:
            fix = fixes[(row["order_no"], "")]
            assert fix["action"] == "MARK_PAID" and fix["amount"] == row["channel_amount"]
            assert fix["channel_txn_id"] == row["channel_txn_id"]


def test_published_files_have_the_design_columns(two_days):
    folder = _recon(two_days, DAY2)
    for name, columns in (("discrepancies.csv", DISCREPANCY_COLUMNS), ("corrections.csv", CORRECTION_COLUMNS),
                          ("open_items.csv", OPEN_ITEM_COLUMNS)):
        with (folder / name).open(encoding="utf-8") as fh:
            assert tuple(next(csv.reader(fh))) == columns
    assert (folder / "_SUCCESS").exists()
    assert not [p for p in (two_days / "root" / "recon").iterdir() if p.name.startswith(".")]


def _input_side(demo: Path, day, channel: str) -> dict:
    """Counts and amounts of what went into a date for one channel, read from the files themselves."""
    std_dir = demo / "root" / "standard" / channel / day.isoformat()
    records = [r for p in sorted(std_dir.glob("[!_]*.csv")) for r in _rows(p)]
    local = [r for r in _rows(demo / "root" / "local" / day.isoformat() / "orders.csv") if r["channel"] == channel]
    prev = _recon(demo, day.fromordinal(day.toordinal() - 1)) / "open_items.csv"
    opening = [r for r in _rows(prev) if r["channel"] == channel] if prev.exists() else []
    local += [r for r in opening if r["side"] == "LOCAL"]
    records += [r for r in opening if r["side"] == "CHANNEL"]
    total = lambda rows: sum((Decimal(r["amount"]) for r in rows), Decimal("0"))  # noqa: E731
    return {"local": (len(local), total(local)), "channel": (len(records), total(records))}


def test_conservation_every_record_in_exactly_one_outcome(two_days):
    for day in (DAY1, DAY2):
        folder = _recon(two_days, day)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["channels_reconciled"] == ["alipay", "wechatpay"]
        discrepancies = _rows(folder / "discrepancies.csv")
        items = _rows(folder / "open_items.csv")
        for name, ch in summary["channels"].items():
            expected = _input_side(two_days, day, name)
            for side in ("local", "channel"):
                by_cat = [(v[side]["records"], Decimal(v[side]["amount"])) for v in ch["categories"].values()]
                assert (sum(n for n, _ in by_cat), sum(a for _, a in by_cat)) == expected[side], (day, name, side)
                assert (ch[side]["records"], Decimal(ch[side]["amount"])) == expected[side]
            # listed outcomes are exactly the published rows
            mine = [r for r in discrepancies if r["channel"] == name]
            assert len(mine) == ch["discrepancy_rows"] == sum(v["rows"] for v in ch["categories"].values())
            assert Counter(r["category"] for r in mine) == Counter(
                {k: v["rows"] for k, v in ch["categories"].items() if v["rows"]})
            # carried: every record of a pending outcome and of an open one-sided break
            carried = sum(v["local"]["records"] + v["channel"]["records"] for k, v in ch["categories"].items()
                          if k in ("PENDING_CUTOFF", "LOCAL_ONLY", "CHANNEL_ONLY", "REFUND_LOCAL_ONLY",
                                   "REFUND_CHANNEL_ONLY"))
            assert len([r for r in items if r["channel"] == name]) == carried
        rf = summary["roll_forward"]
        assert rf["opening"]["records"] + rf["new"]["records"] - rf["cleared"]["records"] == rf["closing"]["records"]
        assert rf["closing"]["records"] == len(items)
        # every standard row's lineage is accounted for at most once among listed channel rows
        listed = [(r["channel"], r["source_file"], r["source_line"]) for r in discrepancies if r["source_file"]]
        assert len(listed) == len(set(listed))


def test_rerunning_a_date_rewrites_byte_identical_data_files(two_days, spark):
    folder = _recon(two_days, DAY2)
    before = {name: (folder / name).read_bytes() for name in DATA_FILES}
    first_summary = json.loads((folder / "summary.json").read_text())
    conf = str(two_days / "conf" / "pipeline.toml")
    assert run_cli("run", "--conf", conf, "--date", DAY2.isoformat(), spark=spark) == 0
    after = {name: (folder / name).read_bytes() for name in DATA_FILES}
    assert after == before
    second_summary = json.loads((folder / "summary.json").read_text())
    assert second_summary["run_id"] != first_summary["run_id"]
    assert second_summary["channels"] == first_summary["channels"]


def test_a_refund_lookback_reads_earlier_dates_without_giving_them_outcomes(two_days, spark, tmp_path):
    import shutil

    other = tmp_path / "demo"
    shutil.copytree(two_days, other)
    conf = other / "conf" / "pipeline.toml"
    text = conf.read_text(encoding="utf-8")
    conf.write_text(text.replace("[pipeline]\n", "[pipeline]\nrefund_lookback_days = 1\n", 1), encoding="utf-8")
    assert "refund_lookback_days = 1" in conf.read_text(encoding="utf-8")
    assert run_cli("reconcile", "--conf", str(conf), "--date", DAY2.isoformat(), spark=spark) == 0
    with_history = json.loads((_recon(other, DAY2) / "summary.json").read_text())["channels"]
    without = json.loads((_recon(two_days, DAY2) / "summary.json").read_text())["channels"]
    for ch, totals in without.items():  # day 1's records inform the order facts and are counted nowhere
        assert (with_history[ch]["local"], with_history[ch]["channel"]) == (totals["local"], totals["channel"])


def test_a_local_export_listing_a_key_twice_exits_4_and_keeps_the_published_result(two_days, spark, capsys,
                                                                                   tmp_path):
    import shutil

    other = tmp_path / "demo"
    shutil.copytree(two_days, other)
    export = other / "root" / "local" / DAY2.isoformat() / "orders.csv"
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    export.write_text("".join(lines + [lines[1]]), encoding="utf-8")  # the first order once more
    before = (_recon(other, DAY2) / "summary.json").read_bytes()
    conf = str(other / "conf" / "pipeline.toml")
    assert run_cli("reconcile", "--conf", conf, "--date", DAY2.isoformat(), spark=spark) == 4
    captured = capsys.readouterr()
    said = captured.out + captured.err
    order_no = next(csv.DictReader(lines[:2]))["order_no"]
    assert "more than once" in said and order_no in said and "fix the order system's export" in said
    assert (_recon(other, DAY2) / "summary.json").read_bytes() == before  # nothing replaced


def test_a_local_amount_not_exact_to_the_cent_exits_4_naming_it(two_days, spark, capsys, tmp_path):
    import shutil

    other = tmp_path / "demo"
    shutil.copytree(two_days, other)
    export = other / "root" / "local" / DAY2.isoformat() / "orders.csv"
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    first = next(csv.DictReader(lines[:2]))
    fields = next(csv.reader(lines[1:2]))
    fields[list(first).index("amount")] = first["amount"] + "1"  # a third decimal: Spark alone would round it
    lines[1] = ",".join(fields) + "\n"
    export.write_text("".join(lines), encoding="utf-8")
    before = (_recon(other, DAY2) / "summary.json").read_bytes()
    conf = str(other / "conf" / "pipeline.toml")
    assert run_cli("reconcile", "--conf", conf, "--date", DAY2.isoformat(), spark=spark) == 4
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert f"local order {first['order_no']}" in said and f"amount '{first['amount']}1'" in said
    assert "orders.csv" in said and "exact to the cent" in said and "fix the order system's export" in said
    assert (_recon(other, DAY2) / "summary.json").read_bytes() == before  # nothing replaced


def test_a_summary_that_disagrees_with_its_rows_exits_4_and_publishes_nothing(demo_dir, spark, capsys):
    bill = demo_dir / "inbox" / "wechatpay" / f"wechatpay_all_{DAY1:%Y%m%d}.csv"
    lines = bill.read_bytes().split(b"\r\n")
    summary = lines[-2].split(b",")
    summary[0] = b"`" + str(int(summary[0][1:]) + 1).encode()  # one more order than the rows hold
    lines[-2] = b",".join(summary)
    bill.write_bytes(b"\r\n".join(lines))
    conf = str(demo_dir / "conf" / "pipeline.toml")
    assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), "--channel", "wechatpay", spark=spark) == 4
    root = demo_dir / "root"
    assert not (root / "recon" / DAY1.isoformat()).exists()
    assert not (root / "standard" / "wechatpay" / DAY1.isoformat()).exists()
    assert not [p for p in (root / "standard" / "wechatpay").iterdir() if p.name.startswith(".")]
    out = capsys.readouterr().out
    assert "exit 4" in out and "wechatpay" in out and "总交易单数" in out and bill.name in out

    # with every channel: the others are reconciled, and nothing of the failed statement is published
    assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), spark=spark) == 4
    summary = json.loads((root / "recon" / DAY1.isoformat() / "summary.json").read_text())
    assert summary["channels_reconciled"] == ["alipay"] and summary["channels_not_available"] == ["wechatpay"]
    assert "wechatpay" in summary["not_reconciled"]["local_orders"]  # its local orders are held, not lost
    assert not (root / "standard" / "wechatpay" / DAY1.isoformat()).exists()
    assert all(r["channel"] == "alipay" for r in _rows(root / "recon" / DAY1.isoformat() / "discrepancies.csv"))


def test_backfill_equals_day_by_day_runs_and_python_reads_the_same_decimals(two_days, spark, tmp_path):
    from recon.demo import Demo
    from schemas.standard import read_arrow

    other = tmp_path / "again"
    Demo(DAY1, 2, orders_per_day=40).build().write(other)
    conf = str(other / "conf" / "pipeline.toml")
    assert run_cli("backfill", "--conf", conf, "--from", DAY1.isoformat(), "--to", DAY2.isoformat(),
                   spark=spark) == 0
    for day in (DAY1, DAY2):
        for name in DATA_FILES:
            assert (_recon(other, day) / name).read_bytes() == (_recon(two_days, day) / name).read_bytes()
    # the standard CSV read on the Python side: exact decimals, the same sums the job counted
    std = next((other / "root" / "standard" / "wechatpay" / DAY1.isoformat()).glob("[!_]*.csv"))
    table = read_arrow(std.open("rb"))
    amounts = table.column("amount").to_pylist()
    assert all(isinstance(a, Decimal) for a in amounts)
    summary = json.loads((_recon(other, DAY1) / "summary.json").read_text())
    assert sum(amounts) == Decimal(summary["channels"]["wechatpay"]["channel"]["amount"])  # day 1: nothing carried in


def test_rerunning_a_past_date_warns_about_later_dates_and_cascade_reruns_them(two_days, spark, capsys):
    conf = str(two_days / "conf" / "pipeline.toml")
    day2 = {name: (_recon(two_days, DAY2) / name).read_bytes() for name in DATA_FILES}
    run_id = json.loads((_recon(two_days, DAY2) / "summary.json").read_text())["run_id"]
    assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), spark=spark) == 0
    out = capsys.readouterr().out
    assert f"!! warning: {DAY2} carried open items from the previous result of {DAY1}" in out and "--cascade" in out
    assert json.loads((_recon(two_days, DAY2) / "summary.json").read_text())["run_id"] == run_id  # untouched

    assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), "--cascade", spark=spark) == 0
    assert "!! warning" not in capsys.readouterr().out
    assert json.loads((_recon(two_days, DAY2) / "summary.json").read_text())["run_id"] != run_id  # re-run
    assert {name: (_recon(two_days, DAY2) / name).read_bytes() for name in DATA_FILES} == day2
