"""The DuckDB engine itself: choosing it, its limits, its memory and spill, and the cross-check that holds it to
Spark's bytes (every end-to-end test runs it too: tests/conftest.py sets RECON_ENGINE_COMPARE_WITH)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from jobs.engines import comparable, engine_kind
from recon.config import load_settings, parse_engine
from tests.conftest import DAY1, DAY2, run_cli

DATA_FILES = ("discrepancies.csv", "corrections.csv", "open_items.csv")


def _with_engine(conf: Path, table: str) -> None:
    conf.write_text(conf.read_text("utf-8") + "\n[engine]\n" + table + "\n", "utf-8")


def test_auto_is_duckdb_on_one_machine_and_spark_for_a_cluster_or_hdfs(demo_dir):
    settings = load_settings(demo_dir / "conf" / "pipeline.toml")
    assert settings.engine["kind"] == "auto" and engine_kind(settings) == "duckdb"
    cluster = dataclasses.replace(settings, spark={**settings.spark, "spark.master": "spark://master:7077"})
    assert engine_kind(cluster) == "spark"
    assert engine_kind(dataclasses.replace(settings, root="hdfs://nn:8020/recon")) == "spark"
    chosen = dataclasses.replace(settings, engine={**settings.engine, "kind": "spark"})
    assert engine_kind(chosen) == "spark"


@pytest.mark.parametrize("table, words", [
    ({"kind": "polars"}, "engine.kind must be auto, spark or duckdb"),
    ({"memory_limit": "lots"}, "engine.memory_limit must be a size"),
    ({"threads": 0}, "engine.threads must be an integer"),
    ({"compare_with": "pandas"}, "engine.compare_with must be"),
    ({"spill": "/tmp"}, "unknown key"),
    ({"database": "disk"}, "engine.database must be auto, memory or file"),
])
def test_a_bad_engine_table_is_a_configuration_error(table, words, monkeypatch):
    monkeypatch.delenv("RECON_ENGINE_COMPARE_WITH", raising=False)
    with pytest.raises(ConfigError) as err:
        parse_engine(table, Path("/etc/recon/pipeline.toml"))
    assert words in err.value.message


def test_duckdb_refuses_an_hdfs_root_naming_the_spark_engine():
    from core.storage import Storage
    from jobs.duck.read import local_file

    class Remote(Storage):  # a root whose filesystem is not local, without reaching a NameNode
        def __init__(self):
            import pyarrow.fs as pafs

            self.root_uri, self.fs, self.base = "hdfs://nn:8020/recon", pafs.PyFileSystem(pafs.FSSpecHandler(
                __import__("fsspec").filesystem("memory"))), "/recon"

    with pytest.raises(ConfigError) as err:
        local_file(Remote(), "recon")
    assert "hdfs://nn:8020/recon" in err.value.message and 'kind = "spark"' in err.value.hint


def test_the_memory_limit_threads_and_spill_folder_come_from_the_conf(tmp_path, spark, monkeypatch):
    """Both engines on a 3,000-order day; DuckDB again with the conf's limits (100 MB, one thread, a spill
    folder): the same bytes. (That a day far larger than the limit spills and completes is measured by
    `make bench`: BENCHMARKS.md, 1M keys in 100 MB.)"""
    from recon.demo import Demo

    monkeypatch.setenv("RECON_ENGINE_COMPARE_WITH", "")
    out = tmp_path / "demo"
    Demo(DAY1, 1, orders_per_day=3000).build().write(out)
    conf = out / "conf" / "pipeline.toml"
    assert run_cli("run", "--conf", str(conf), "--date", DAY1.isoformat(), "--engine", "spark", spark=spark) == 0
    recon = out / "root" / "recon" / DAY1.isoformat()
    spark_files = {n: (recon / n).read_bytes() for n in DATA_FILES}
    spark_summary = comparable(json.loads((recon / "summary.json").read_text("utf-8")))
    spill = tmp_path / "spill"
    plain = conf.read_text("utf-8")
    _with_engine(conf, f'memory_limit = "100MB"\nthreads = 1\nspill_dir = "{spill}"')
    assert run_cli("reconcile", "--conf", str(conf), "--date", DAY1.isoformat(), "--engine", "duckdb") == 0
    assert {n: (recon / n).read_bytes() for n in DATA_FILES} == spark_files
    summary = json.loads((recon / "summary.json").read_text("utf-8"))
    assert summary["engine"] == "duckdb" and comparable(summary) == spark_summary
    assert spill.is_dir()
    # the inputs' tables in a database file in the spill folder (what a day larger than memory gets): the same
    # bytes, and the file is gone after the run
    conf.write_text(plain, "utf-8")
    _with_engine(conf, f'memory_limit = "100MB"\nthreads = 1\nspill_dir = "{spill}"\ndatabase = "file"')
    assert run_cli("reconcile", "--conf", str(conf), "--date", DAY1.isoformat(), "--engine", "duckdb") == 0
    assert {n: (recon / n).read_bytes() for n in DATA_FILES} == spark_files
    assert comparable(json.loads((recon / "summary.json").read_text("utf-8"))) == spark_summary
    assert not list(spill.glob("*.duckdb*"))


def test_auto_keeps_the_tables_in_a_file_when_the_inputs_would_not_fit_in_the_memory_limit(tmp_path):
    from core.settings import Settings
    from jobs.duck.reconcile import INPUT_EXPANSION, connect, memory_limit_bytes

    def limit(text):
        return memory_limit_bytes(parse_engine({"memory_limit": text}, None))

    assert limit("16GB") == 16 * 10**9 and limit("1.5 GiB") == 3 * 2**29
    assert limit("100mb") == 10**8 and memory_limit_bytes({}) > 10**8
    base = Settings(root=f"file://{tmp_path}", conf_file=str(tmp_path / "pipeline.toml"), channels={},
                    work_dir=str(tmp_path))
    small = dataclasses.replace(base, engine=parse_engine({"kind": "duckdb", "memory_limit": "100MB",
                                                           "database": "auto"}, None))
    fits, too_big = 10**8 // INPUT_EXPANSION, 10**8 // INPUT_EXPANSION + 1
    con = connect(small, fits)
    assert con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall() == [("memory",)]
    con.close()
    con = connect(small, too_big)
    path = con.path
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")
    assert con.execute("SELECT sum(x) FROM t").fetchone() == (499500,)
    assert (tmp_path / "duckdb" / path.rsplit("/", 1)[1]).is_file()
    con.close()
    assert not list((tmp_path / "duckdb").glob("*.duckdb*"))
    pinned = dataclasses.replace(small, engine={**small.engine, "database": "memory"})
    con = connect(pinned, too_big * 1000)
    assert not hasattr(con, "path")
    con.close()


def test_the_cross_check_fails_the_date_when_the_engines_disagree(demo_dir, spark, monkeypatch):
    """A difference between the engines is exit 4 naming the file and its first differing line; the published
    result (DuckDB's here) stays."""
    import jobs.duck.reconcile as duck

    conf = demo_dir / "conf" / "pipeline.toml"
    monkeypatch.setenv("RECON_ENGINE_COMPARE_WITH", "spark")
    assert run_cli("run", "--conf", str(conf), "--date", DAY1.isoformat(), "--engine", "duckdb", spark=spark) == 0
    recon = demo_dir / "root" / "recon" / DAY1.isoformat()
    published = (recon / "discrepancies.csv").read_bytes()
    note = duck._note
    monkeypatch.setattr(duck, "_note", lambda: note().replace("'no local record'", "'no local record!'"))
    assert run_cli("reconcile", "--conf", str(conf), "--date", DAY1.isoformat(), "--engine", "duckdb",
                   spark=spark) == 4
    changed = (recon / "discrepancies.csv").read_bytes()
    assert changed != published and b"no local record!" in changed  # published by DuckDB, refused by the check
    assert not [p for p in recon.parent.iterdir() if p.name.startswith(".staging-")]


def test_spark_xxhash64_in_python_equals_spark(spark):
    from pyspark.sql import functions as F

    from jobs.sparkhash import content_digest, xxhash64

    rows = [("a", "", "12.30"), ("订单-2026-11-20-000123", "x" * 100, "-0.01"), ("", "", "")]
    df = spark.createDataFrame(rows, "a string, b string, c string")
    assert [r[0] for r in df.select(F.xxhash64("a", "b", "c")).collect()] == [xxhash64(*r) for r in rows]
    assert [r[0] for r in df.select(F.xxhash64("a")).collect()] == [xxhash64(r[0]) for r in rows]
    digest = df.agg(F.sum(F.xxhash64("a", "b", "c").cast("decimal(20,0)")).cast("string")).first()[0]
    assert content_digest(rows) == digest and content_digest([]) is None


def test_an_export_of_another_day_is_refused_by_duckdb_in_the_words_of_spark(demo_dir, spark, monkeypatch, caplog):
    """The export's checks are shared: the same exit status and message from both engines."""
    monkeypatch.setenv("RECON_ENGINE_COMPARE_WITH", "")
    local = demo_dir / "root" / "local"
    (local / DAY1.isoformat() / "orders.csv").write_bytes((local / DAY2.isoformat() / "orders.csv").read_bytes())
    conf = str(demo_dir / "conf" / "pipeline.toml")
    messages = {}
    for engine in ("spark", "duckdb"):
        caplog.clear()
        assert run_cli("run", "--conf", conf, "--date", DAY1.isoformat(), "--engine", engine, spark=spark) == 4
        messages[engine] = [r.getMessage() for r in caplog.records if "of another day" in r.getMessage()]
    assert messages["spark"] and messages["spark"] == messages["duckdb"]


ROUNDINGS = {"HALF_UP": "ROUND_HALF_UP", "HALF_EVEN": "ROUND_HALF_EVEN", "DOWN": "ROUND_DOWN", "UP": "ROUND_UP"}


@pytest.mark.parametrize("rounding", sorted(ROUNDINGS))
@pytest.mark.parametrize("rate", ["0.006", "0.0038", "0.02", "1.5", "0.12345678", "0.00000001"])
def test_the_contracted_fee_in_sql_is_exact_for_narrow_and_wide_rates(rate, rounding):
    """DuckDB computes a fee in 64-bit decimals where the rate and the amount allow it and in 128-bit ones
    otherwise: both give the Decimal result, half cents and amounts of trillions included."""
    import decimal
    from decimal import Decimal

    import duckdb

    from jobs.duck.expressions import expected_fee
    from jobs.rules import ChannelRules, ClassifyParams

    params = ClassifyParams(day="2026-11-20", window_starts={},
                            rules={"ch": ChannelRules(fee_rate=Decimal(rate), fee_rounding=rounding)})
    amounts = ["0.01", "0.50", "0.83", "1.00", "12.50", "83.33", "99999.99", "12345678.91", "9999999999.99",
               "123456789012.35", "999999999999999.99"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (channel VARCHAR, txn_type VARCHAR, amount DECIMAL(18,2), coupon DECIMAL(18,2))")
    cases = [(a, c, t) for a in amounts for c in (None, "0.17") for t in ("PAYMENT", "REFUND")]
    con.executemany("INSERT INTO t VALUES ('ch', ?, ?, ?)", [(t, a, c) for a, c, t in cases])
    got = con.execute(f"SELECT {expected_fee(params, 'amount', 'coupon')} FROM t").fetchall()
    for (amount, coupon, txn), (fee,) in zip(cases, got):
        base = (Decimal(amount) - Decimal(coupon or 0)) * Decimal(rate)
        want = base.quantize(Decimal("0.01"), rounding=getattr(decimal, ROUNDINGS[rounding]))
        want = want if txn == "PAYMENT" else -want
        assert fee == want, (amount, coupon, txn)


def test_the_source_files_name_is_read_as_text_when_the_copies_name_too_many(demo_dir, monkeypatch):
    """A record read from a Parquet copy holds its source file's id, a CASE over the copies' names; past
    MAX_FILE_IDS names it keeps the name's text instead (and the classification looks the ids up in a table,
    not a CASE). Both ways give the same bytes."""
    import jobs.duck.expressions as expressions

    monkeypatch.setenv("RECON_ENGINE_COMPARE_WITH", "")
    conf, day = demo_dir / "conf" / "pipeline.toml", DAY2.isoformat()
    assert run_cli("run", "--conf", str(conf), "--date", DAY1.isoformat(), "--engine", "duckdb") == 0
    assert run_cli("run", "--conf", str(conf), "--date", day, "--engine", "duckdb") == 0
    recon = demo_dir / "root" / "recon" / day
    assert list((demo_dir / "root" / "standard").glob(f"*/{day}/_columnar/*.parquet"))  # read from the copies
    by_id = {n: (recon / n).read_bytes() for n in DATA_FILES}
    assert b".csv" in by_id["discrepancies.csv"]  # rows that show their source file
    monkeypatch.setattr(expressions, "MAX_FILE_IDS", 0)
    assert run_cli("reconcile", "--conf", str(conf), "--date", day, "--engine", "duckdb") == 0
    assert {n: (recon / n).read_bytes() for n in DATA_FILES} == by_id


KEY_PARTS = ["wechatpay", "alipay", "PAYMENT", "REFUND", "", "R1", "1:a", "7:PAYMENT", "9:wechatpay", ":", "payment"]


def test_the_coded_key_is_one_to_one():
    """The join and the duplicate search compare (kind, ext) instead of (channel, txn_type, refund_no)
    (jobs.duck.classify.key_code): two keys get equal codes only when they are equal, for the run's channels
    and for any other text, lengths and colons included."""
    import itertools

    import duckdb

    from jobs.duck.classify import key_code

    keys = list(itertools.product(KEY_PARTS, repeat=3))
    kind, ext = key_code(["wechatpay", "unionpay"], "channel", "txn_type", "refund_no")
    con = duckdb.connect()
    con.execute("CREATE TABLE k (channel VARCHAR, txn_type VARCHAR, refund_no VARCHAR)")
    con.executemany("INSERT INTO k VALUES (?, ?, ?)", keys)
    coded = con.execute(f"SELECT channel, txn_type, refund_no, {kind}, {ext} FROM k").fetchall()
    assert len({(r[3], r[4]) for r in coded}) == len(keys)
    known = {r[:3]: r[3] for r in coded if r[3] >= 0}
    assert set(known) == {(c, t, n) for c, t, n in keys if c == "wechatpay" and t in ("PAYMENT", "REFUND")}
    assert all(r[4] == r[2] for r in coded if r[3] >= 0)  # a known pair's ext is its refund_no


def test_an_error_after_the_connection_is_let_go_is_the_runs_error_and_the_close_is_waited_for(demo_dir, monkeypatch,
                                                                                                 capsys):
    """Once open_items.csv is staged, the DuckDB connection closes in a thread while the summary and the reports
    are written (jobs.duck.reconcile.reconcile_date). A disk that fills up there is still the run's error (exit
    1, in its words), the staged result is discarded, the published one stays, and the close is waited for."""
    import errno
    import threading

    from jobs import reconcile as shared

    monkeypatch.setenv("RECON_ENGINE_COMPARE_WITH", "")
    conf, day = str(demo_dir / "conf" / "pipeline.toml"), DAY1.isoformat()
    assert run_cli("run", "--conf", conf, "--date", day, "--engine", "duckdb") == 0
    recon = demo_dir / "root" / "recon" / day
    before = {p.name: p.read_bytes() for p in recon.iterdir()}
    released = []

    def summary_on_a_full_disk(*args, **kwargs):
        released.extend(t for t in threading.enumerate() if t.name == "duckdb-close")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shared, "build_summary", summary_on_a_full_disk)
    capsys.readouterr()
    assert run_cli("reconcile", "--conf", conf, "--date", day, "--engine", "duckdb") == 1
    said = "".join(capsys.readouterr())
    assert "no space left on device" in said.lower() and f"date {day}" in said
    assert released, "the connection was not being closed beside the summary"
    assert not any(t.is_alive() for t in released)
    assert {p.name: p.read_bytes() for p in recon.iterdir()} == before
    assert not [p.name for p in recon.parent.iterdir() if p.name.startswith((".staging-", ".retired-"))]
