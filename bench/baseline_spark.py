"""Baseline: the plainest PySpark reconciliation -- a full outer join of local and channel records on order_no.

    python -m bench.baseline_spark --standard DIR_OR_CSV --local DIR_OR_CSV --out DIR [--conf pipeline.toml]

Reads the same standard CSV and local export as the real job, with explicit
schemas (money as DecimalType(18,2)) and the same CSV options, joins them on
order_no only, labels LOCAL_ONLY / CHANNEL_ONLY / AMOUNT_MISMATCH rows and
writes those to CSV (Spark's own part files). Nothing else: no refund keys,
no statuses, fees, cut-off, carried items, summary or single sorted files.
It is the floor the real job's cost is compared with (bench/run.py).

Spark settings: jobs.spark.DEFAULTS plus the [spark] table of ``--conf``,
so both run on the same master, memory and shuffle partitions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib

from jobs.spark import get_spark, shuffle_partitions
from schemas import local as local_schema
from schemas import standard
from schemas.csvio import SPARK_CSV_OPTIONS

READ_OPTIONS = dict(SPARK_CSV_OPTIONS, mode="FAILFAST", enforceSchema="false")


def spark_conf(conf_file: str | None) -> dict[str, str]:
    conf = {"spark.app.name": "baseline-join"}
    if conf_file:
        with open(conf_file, "rb") as fh:
            conf.update({str(k): str(v) for k, v in tomllib.load(fh).get("spark", {}).items()})
    return conf


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names
               if not n.startswith(("_", ".")) and "/_" not in d[len(path):])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--standard", required=True, help="standard CSV file or folder")
    parser.add_argument("--local", required=True, help="local orders CSV file or folder")
    parser.add_argument("--out", required=True, help="output folder (replaced)")
    parser.add_argument("--conf", help="pipeline.toml whose [spark] table to use")
    args = parser.parse_args(argv)

    from pyspark.sql import functions as F

    conf = spark_conf(args.conf)
    spark = get_spark(overrides=conf)  # the job's session settings, so the comparison is fair
    if "spark.sql.shuffle.partitions" not in conf:  # sized to the input as the job sizes its shuffle
        size = sum(_size(p) for p in (args.standard, args.local))
        spark.conf.set("spark.sql.shuffle.partitions",
                       str(shuffle_partitions(size, spark.sparkContext.defaultParallelism)))

    channel = (spark.read.schema(standard.spark_schema()).options(**READ_OPTIONS).csv(args.standard)
               .select("order_no", F.col("amount").alias("channel_amount"), "channel_txn_id"))
    local = (spark.read.schema(local_schema.spark_schema()).options(**READ_OPTIONS).csv(args.local)
             .select("order_no", F.col("amount").alias("local_amount")))
    joined = local.join(channel, "order_no", "full_outer")
    label = (F.when(F.col("channel_amount").isNull(), F.lit("LOCAL_ONLY"))
             .when(F.col("local_amount").isNull(), F.lit("CHANNEL_ONLY"))
             .when(F.col("local_amount") != F.col("channel_amount"), F.lit("AMOUNT_MISMATCH")))
    (joined.select(label.alias("label"), "order_no", "local_amount", "channel_amount", "channel_txn_id")
     .filter(F.col("label").isNotNull())
     .write.mode("overwrite").options(**SPARK_CSV_OPTIONS).csv(args.out))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
