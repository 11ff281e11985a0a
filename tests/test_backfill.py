"""Backfills: a three-day backfill run twice gives identical outputs, and corrections are emitted once."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from recon.demo import Demo
from tests.conftest import DAY1, run_cli

pytestmark = pytest.mark.slow
DAYS = [DAY1 + dt.timedelta(days=i) for i in range(3)]
DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")


def _outputs(root):
    return {(d, n): (root / "recon" / d.isoformat() / n).read_bytes() for d in DAYS for n in DATA_FILES}


def _corrections(root, day):
    with (root / "recon" / day.isoformat() / "corrections.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_three_day_backfill_twice_is_identical_and_corrections_are_not_duplicated(tmp_path, spark):
    out = tmp_path / "demo"
    Demo(DAY1, 3, orders_per_day=30).build().write(out)
    conf = str(out / "conf" / "pipeline.toml")
    args = ("backfill", "--conf", conf, "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat())
    assert run_cli(*args, spark=spark) == 0
    first = _outputs(out / "root")
    assert run_cli(*args, spark=spark) == 0
    assert _outputs(out / "root") == first

    keys = [row["idempotency_key"] for d in DAYS for row in _corrections(out / "root", d)]
    assert keys and len(keys) == len(set(keys))  # no correction emitted on two dates

    # a correction applied (apply-fixes writes the ledger) is not emitted again by a re-run
    before = _corrections(out / "root", DAYS[0])
    applied = before[0]
    ledger = out / "root" / "corrections" / "applied"
    ledger.mkdir(parents=True)
    with (ledger / f"{DAYS[0]}.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["idempotency_key", "date", "outcome"])
        w.writerow([applied["idempotency_key"], DAYS[0].isoformat(), "APPLIED"])
    assert run_cli("run", "--conf", conf, "--date", DAYS[0].isoformat(), spark=spark) == 0
    again = [row["idempotency_key"] for row in _corrections(out / "root", DAYS[0])]
    assert again == [row["idempotency_key"] for row in before[1:]]
    discrepancies = (out / "root" / "recon" / DAYS[0].isoformat() / "discrepancies.csv").read_text(encoding="utf-8")
    assert applied["order_no"] in discrepancies  # the break is still reported; only the correction is not repeated
