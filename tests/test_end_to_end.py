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


def _input_side(demo: Path, day) -> dict:
    """Counts and amounts of what went into a date, read from the files themselves."""
    std_dir = demo / "root" / "standard" / "wechatpay" / day.isoformat()
    channel = [r for p in sorted(std_dir.glob("[!_]*.csv")) for r in _rows(p)]
    local = _rows(demo / "root" / "local" / day.isoformat() / "orders.csv")
    opening = []
    prev = _recon(demo, day.fromordinal(day.toordinal() - 1)) / "open_items.csv"
    if prev.exists():
        opening = _rows(prev)
    local += [r for r in opening if r["side"] == "LOCAL"]
    channel += [r for r in opening if r["side"] == "CHANNEL"]
    total = lambda rows: sum((Decimal(r["amount"]) for r in rows), Decimal("0"))  # noqa: E731
    return {"local": (len(local), total(local)), "channel": (len(channel), total(channel))}


def test_conservation_every_record_in_exactly_one_outcome(two_days):
    for day in (DAY1, DAY2):
        folder = _recon(two_days, day)
        summary = json.loads((folder / "summary.json").read_text())
        ch = summary["channels"]["wechatpay"]
        expected = _input_side(two_days, day)
        for side in ("local", "channel"):
            by_cat = [(v[side]["records"], Decimal(v[side]["amount"])) for v in ch["categories"].values()]
            assert (sum(n for n, _ in by_cat), sum(a for _, a in by_cat)) == expected[side], (day, side)
            assert (ch[side]["records"], Decimal(ch[side]["amount"])) == expected[side]
        # listed outcomes are exactly the published rows; carried ones exactly the open items
        discrepancies = _rows(folder / "discrepancies.csv")
        assert len(discrepancies) == ch["discrepancy_rows"] == sum(v["rows"] for v in ch["categories"].values())
        assert Counter(r["category"] for r in discrepancies) == Counter(
            {k: v["rows"] for k, v in ch["categories"].items() if v["rows"]})
        pending = ch["categories"]["PENDING_CUTOFF"]
        items = _rows(folder / "open_items.csv")
        assert len(items) == pending["local"]["records"] + pending["channel"]["records"]
        rf = summary["roll_forward"]
        assert rf["opening"]["records"] + rf["new"]["records"] - rf["cleared"]["records"] == rf["closing"]["records"]
        assert rf["closing"]["records"] == len(items)
        # every standard row's lineage is accounted for at most once among listed channel rows
        listed = [(r["source_file"], r["source_line"]) for r in discrepancies if r["source_file"]]
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


def test_a_summary_that_disagrees_with_its_rows_exits_4_and_publishes_nothing(demo_dir, spark, capsys):
    bill = demo_dir / "inbox" / "wechatpay" / f"wechatpay_all_{DAY1:%Y%m%d}.csv"
    lines = bill.read_bytes().split(b"\r\n")
    summary = lines[-2].split(b",")
    summary[0] = b"`" + str(int(summary[0][1:]) + 1).encode()  # one more order than the rows hold
    lines[-2] = b",".join(summary)
    bill.write_bytes(b"\r\n".join(lines))
    conf = str(demo_dir / "conf" / "pipeline.toml")
    assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), spark=spark) == 4
    root = demo_dir / "root"
    assert not (root / "recon" / DAY1.isoformat()).exists()
    assert not (root / "standard" / "wechatpay" / DAY1.isoformat()).exists()
    assert not [p for p in (root / "standard" / "wechatpay").iterdir() if p.name.startswith(".")]
    out = capsys.readouterr().out
    assert "exit 4" in out and "wechatpay" in out and "总交易单数" in out and bill.name in out


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
    carried_in = 0  # day 1 has no opening items
    assert sum(amounts) + carried_in == Decimal(summary["channels"]["wechatpay"]["channel"]["amount"])
