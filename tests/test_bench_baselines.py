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


def test_a_gzipped_bill_is_the_plain_bill_gzipped_and_normalizes_to_the_same_records(tmp_path):
    """The 100M-key bench writes the bill gzipped (a quarter of the disk); it must be the same bill, and the
    pipeline (the WeChat normalizer undoes tar_type=GZIP) must make the same standard records of it."""
    import gzip

    plain = dataset.generate(tmp_path / "plain", 3000, day=DAY, jobs=1, quiet=True)
    packed = dataset.generate(tmp_path / "gz", 3000, day=DAY, jobs=2, quiet=True, gzip_bill=True)
    text = (tmp_path / "plain" / plain["bill"]).read_bytes()
    assert packed["bill"].endswith(".csv.gz") and packed["bill_gzip"] is True
    assert gzip.decompress((tmp_path / "gz" / packed["bill"]).read_bytes()) == text
    assert packed["bill_text_bytes"] == plain["bill_text_bytes"] == len(text) > packed["bill_bytes"]
    for out in ("plain", "gz"):
        conf = tmp_path / out / "conf" / "pipeline.toml"
        for stage in ("download", "normalize"):
            assert run_cli(stage, "--conf", str(conf), "--date", DAY.isoformat()) == 0
    folder = "root/standard/" + dataset.CHANNEL + "/" + DAY.isoformat()
    records = {out: sorted((tmp_path / out / folder).glob("[!_]*.csv"))[0].read_bytes() for out in ("plain", "gz")}
    name = dataset.bill_name(DAY).encode()
    assert records["gz"].count(name + b".gz,") == plain["bill_rows"]     # source_file names the file as landed
    assert records["gz"].replace(name + b".gz,", name + b",") == records["plain"]


def test_the_generated_conf_raises_the_statement_limit_only_for_bills_past_it(tmp_path):
    small = tmp_path / "small"
    dataset.write_conf(small, 1_000_000, {}, duckdb_memory_limit="16GB")
    assert "max_statement_bytes" not in (small / "conf" / "channels" / "wechatpay.toml").read_text()
    assert 'memory_limit = "16GB"' in (small / "conf" / "pipeline.toml").read_text()
    large = tmp_path / "large"
    dataset.write_conf(large, 100_000_000, {}, gzip_bill=True)
    channel = (large / "conf" / "channels" / "wechatpay.toml").read_text()
    assert "max_statement_bytes = 30000000000" in channel and 'filename = "wechatpay_all_{date:%Y%m%d}.csv.gz"' in channel
    assert "[engine]" not in (large / "conf" / "pipeline.toml").read_text()


def test_the_bench_reads_the_reports_time_from_the_line_a_reconcile_logs(tmp_path, caplog):
    """``make bench`` gives the reconcile without its reports as the command's time less what its log gives the
    reports: the line jobs.reconcile logs is the one bench/run.py reads (and the last of them counts)."""
    import logging
    import time

    from bench.run import reports_seconds
    from jobs.reconcile import _phase

    with caplog.at_level(logging.INFO, logger="jobs.reconcile"):
        _phase("wrote report.html and report.xlsx", time.time() - 2.5)
        _phase("wrote report.html and report.xlsx", time.time() - 1.25)
    log = tmp_path / "reconcile.log"
    log.write_text("$ python -m recon.cli reconcile\n" + "\n".join(f"INFO jobs.reconcile: {r.getMessage()}"
                                                                  for r in caplog.records) + "\n", "utf-8")
    assert reports_seconds(log) == pytest.approx(1.25, abs=0.02)
    log.write_text("$ python -m recon.cli reconcile\nexit 4\n", "utf-8")
    assert reports_seconds(log) is None
