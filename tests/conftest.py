"""Shared fixtures: one SparkSession for the whole test session, and demo data folders."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from tests.hadoop.fixtures import file_reference, hadoop, spark_jars_on_hdfs  # noqa: F401  (a real HDFS and YARN)
from tests.pg_fixtures import pg_db, postgres  # noqa: F401  (a real PostgreSQL for the database tests)

# Every reconcile the tests run is cross-checked by the other engine (jobs/engines.py): the published result must be
# byte-identical to the other engine's on the same inputs, or the run fails (exit 4) naming the file and line.
os.environ.setdefault("RECON_ENGINE_COMPARE_WITH", "other")

DAY1 = dt.date(2026, 11, 20)
DAY2 = dt.date(2026, 11, 21)


@pytest.fixture(scope="session")
def spark():
    """The test session's SparkSession (local[2], small shuffles, no UI)."""
    from jobs.spark import get_spark
    from tests.pg import jdbc_jar

    session = get_spark(overrides={"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2",
                                   "spark.jars": jdbc_jar(),  # the PostgreSQL JDBC driver (Debian's package)
                                   "spark.sql.session.timeZone": "Asia/Shanghai",
                                   "spark.default.parallelism": "2"})
    yield session
    session.stop()


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A small two-day demo (local orders, WeChat bills, conf) in a fresh folder."""
    from recon.demo import Demo

    out = tmp_path / "demo"
    Demo(DAY1, 2, orders_per_day=40).build().write(out)
    return out


def run_cli(*args: str, spark=None) -> int:
    """Run the `recon` command in this process (sharing the session's SparkSession)."""
    from recon.cli import main

    return main(list(args), spark_factory=(lambda _settings: spark) if spark is not None else None)
