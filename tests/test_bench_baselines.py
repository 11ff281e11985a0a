"""The bench's baselines agree with one another on generated data, and the DuckDB one stays exact.

``make bench`` compares the job with a bare join of the same inputs (bench/baseline_*.py); a baseline that
labelled other rows would make that comparison meaningless, so the pandas merge and the DuckDB join must label
exactly the same rows of a small generated day (the Spark one is checked at bench scale by bench/run.py's
sanity lines; starting a Spark here would only repeat what tests/test_end_to_end.py does).
"""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from bench import baseline_duckdb, baseline_pandas, dataset
from tests.conftest import run_cli

DAY = dt.date(2026, 11, 20)


def _rows(path) -> list[tuple[str, ...]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return [rows[0], *sorted(tuple(r) for r in rows[1:])]


def test_the_duckdb_join_labels_the_rows_the_pandas_merge_labels(tmp_path):
    meta = dataset.generate(tmp_path / "day", 3000, day=DAY, jobs=1, quiet=True)
    conf = tmp_path / "day" / "conf" / "pipeline.toml"
    for stage in ("download", "normalize"):   # the standard CSV the baselines read, as the pipeline writes it
        assert run_cli(stage, "--conf", str(conf), "--date", DAY.isoformat()) == 0
    standard = sorted(str(p) for p in (tmp_path / "day" / "root" / "standard" / dataset.CHANNEL /
                                       DAY.isoformat()).glob("[!_]*.csv"))
    local = str(tmp_path / "day" / meta["local"])
    assert baseline_pandas.main(["--standard", *standard, "--local", local, "--out", str(tmp_path / "p.csv")]) == 0
    assert baseline_duckdb.main(["--standard", *standard, "--local", local, "--out", str(tmp_path / "d.csv"),
                                 "--threads", "2", "--memory-limit", "1GB",
                                 "--temp-dir", str(tmp_path / "spill")]) == 0
    pandas_rows, duckdb_rows = _rows(tmp_path / "p.csv"), _rows(tmp_path / "d.csv")
    labels = {r[0] for r in duckdb_rows[1:]}
    assert {"LOCAL_ONLY", "CHANNEL_ONLY", "AMOUNT_MISMATCH"} <= labels   # the generator plants all three
    assert duckdb_rows == pandas_rows


def test_the_duckdb_join_refuses_an_amount_it_would_have_to_round(tmp_path):
    (tmp_path / "s.csv").write_text("order_no,amount,channel_txn_id\nA1,10.00,T1\n")
    (tmp_path / "l.csv").write_text("amount,order_no\r\n10.005,A1\r\n")          # CRLF, columns in another order
    import duckdb

    with pytest.raises(duckdb.Error, match="local amount: not an amount with at most 2 decimals: 10.005"):
        baseline_duckdb.main(["--standard", str(tmp_path / "s.csv"), "--local", str(tmp_path / "l.csv"),
                              "--out", str(tmp_path / "d.csv")])
