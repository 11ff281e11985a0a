"""The one SparkSession of a run (or of a test session)."""

from __future__ import annotations

import os

from recon.config import Settings

# Defaults that make results safe and the JVM quiet; conf's [spark] table overrides them.
DEFAULTS = {
    "spark.master": "local[*]",
    "spark.app.name": "recon",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.ansi.enabled": "true",
    # v2 leaves partial output behind on failure (reliability.md)
    "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "1",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.debug.maxToStringFields": "200",
}


def get_spark(settings: Settings | None = None, overrides: dict[str, str] | None = None):
    """The active SparkSession, or a new one configured from ``settings``.

    Under ``spark-submit`` the master and resources come from the command
    line; ``spark.master`` from conf applies only when we start the JVM.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    conf = dict(DEFAULTS)
    if settings is not None:
        conf["spark.sql.session.timeZone"] = settings.timezone
        conf.update(settings.spark)
    conf.update(overrides or {})
    if os.environ.get("SPARK_ENV_LOADED") or os.environ.get("PYSPARK_GATEWAY_PORT"):
        conf.pop("spark.master", None)  # spark-submit decides
    if conf.get("spark.master", "").startswith("local"):
        # one machine: bind to loopback instead of guessing (and warning about) an interface
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
