"""The one SparkSession of a run (or of a test session)."""

from __future__ import annotations

import logging
import os

from core.settings import Settings

log = logging.getLogger(__name__)

JIT_OPTIONS = "-XX:-DontCompileHugeMethods"

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
    # The classification's generated code is one large method per stage; HotSpot leaves methods over 8,000
    # bytes of bytecode interpreted unless told otherwise (a third of the job's CPU at 1M records).
    "spark.driver.extraJavaOptions": JIT_OPTIONS,
    "spark.executor.extraJavaOptions": JIT_OPTIONS,
}


INPUT_BYTES_PER_PARTITION = 64 << 20  # of input files: about 400,000 records, some 200 MB in the shuffle


def shuffle_partitions(input_bytes: int, cores: int) -> int:
    """Shuffle partitions for a job reading ``input_bytes`` of files: about 64 MB of input each, a multiple of
    the cores, at least two per core (adaptive execution coalesces those that come out small)."""
    cores = max(1, cores)
    return max(2 * cores, -(-input_bytes // INPUT_BYTES_PER_PARTITION // cores) * cores)


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
        # Under spark-submit its command line (and spark-defaults.conf) wins over conf and our defaults.
        from pyspark import SparkConf, SparkContext

        SparkContext._ensure_initialized()  # attach to spark-submit's JVM; starts no context
        given = {k for k, _ in SparkConf().getAll()}
        conf = {k: v for k, v in conf.items() if k not in given or k == "spark.app.name"}
        conf.pop("spark.master", None)
        if settings is not None and "spark.driver.memory" in settings.spark:
            log.warning("spark.driver.memory from conf cannot take effect under spark-submit (the driver JVM is "
                        "already running): pass --driver-memory to spark-submit")
        if JIT_OPTIONS not in SparkConf().get("spark.driver.extraJavaOptions", ""):
            log.warning("the driver JVM runs without %s: in local mode the classification runs about a third "
                        "slower; pass --driver-java-options %s to spark-submit", JIT_OPTIONS, JIT_OPTIONS)
    if conf.get("spark.master", "").startswith("local"):
        # one machine: bind to loopback instead of guessing (and warning about) an interface
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Local mode offers its cores again only when a task ends: a task held back to wait for a data-local
        # slot (an HDFS block's host, which the local executor never matches) could wait for ever once the
        # others finish. One machine has no locality to wait for.
        conf.setdefault("spark.locality.wait", "0s")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if not log.isEnabledFor(logging.DEBUG):
        _quiet_task_failures(spark)
    return spark


# Where Spark logs a failed task with the JVM's stack trace (a bad row of an input file fails its task). The job
# turns the failure it gets back into a message naming the file, line and cause (jobs/read_errors.py), so the
# trace would only bury that message; `recon -v` keeps them.
TASK_FAILURE_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager",
                        # the killed sibling tasks' shuffle files, cleaned up by Spark anyway
                        "org.apache.spark.storage.DiskBlockObjectWriter")


def _quiet_task_failures(spark) -> None:
    jvm = spark.sparkContext._jvm
    try:
        level = jvm.org.apache.logging.log4j.Level.OFF
        for name in TASK_FAILURE_LOGGERS:
            jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, level)
    except Exception as exc:  # another logging backend under spark-submit: keep its configuration
        log.debug("left Spark's task failure logging as it is: %s", exc)
