"""Local orders of date D read over JDBC from the order system's read replica (``[local_orders] format = "jdbc"``;
the keys are parsed by ``jobs.local_orders.parse_local_orders_config``).

The table, view or query must yield the LocalRecord columns (schemas/local.py):
``order_no, refund_no, txn_type, channel, currency, amount, status,
created_at, paid_at`` with ``amount`` numeric (at most 2 decimals, else the
read fails) and ``created_at`` / ``paid_at`` of type ``timestamp`` (wall time
in the business time zone) or ``timestamptz``. Each connection runs
``SET TIME ZONE '<business zone>'`` first, so both kinds are formatted as
``YYYY-MM-DD HH:MM:SS`` in the business zone and the day's bounds mean the
business day, daylight-saving days included. An empty ``refund_no`` or
``paid_at`` arrives as null, exactly as the CSV reader gives an empty field.

Which rows belong to D: those whose ``COALESCE(paid_at, created_at)`` lies in
``[D 00:00, D+1 00:00)`` -- the same rule as the export ("a local record
belongs to D by paid_at, or created_at"), and nothing more. The cut-off
window is deliberately *not* added on either side: a record paid at 00:00:20
on D+1 belongs to D+1's read; if it were also read on D it would be counted
on both days (MATCHED on D against the channel's 23:59:50 record, and a false
LOCAL_ONLY on D+1). Pairs that straddle midnight are handled by carrying
PENDING_CUTOFF items to D+1 (jobs/transforms.py), which needs each record in
exactly one day's input.

Only PostgreSQL is supported over JDBC (the SQL uses ``to_char``,
``hashtext`` and ``SET TIME ZONE``). The password is given to Spark as a read
option of this one read, never in the Spark configuration; Spark redacts
options named like ``password`` in plans and the UI.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError, FatalError, ReconError, UnavailableError
from core.secrets import read_secret
from jobs.read_errors import java_causes as _java_causes
from schemas import local as local_schema

PG_DRIVER = "org.postgresql.Driver"
PART_COLUMN = "recon_part"
EXACT_COLUMN = "recon_amount_exact"


def describe_source(cfg: dict, day: dt.date | None = None) -> str:
    """Where local orders come from, for logs and summary.json (never a secret)."""
    if cfg.get("format", "csv") != "jdbc":
        return f"{cfg.get('format', 'csv')} export under local/{day.isoformat() if day else '{D}'}/"
    what = f"table {cfg['table']}" if "table" in cfg else "the configured query"
    return f"{cfg['url'].split('?')[0]} ({what}, user {cfg['user']})"


def day_bounds(day: dt.date) -> tuple[str, str]:
    """[start, end) of business day D as wall-clock timestamps."""
    return f"{day.isoformat()} 00:00:00", f"{(day + dt.timedelta(days=1)).isoformat()} 00:00:00"


def jdbc_sql(cfg: dict, day: dt.date) -> str:
    """The SQL Spark sends (as ``dbtable``): D's rows of the source, formatted as LocalRecord columns."""
    source = cfg["table"] if "table" in cfg else f"({cfg['query']})"
    start, end = day_bounds(day)
    when = "COALESCE(src.paid_at, src.created_at)"

    def text(col):
        return f"NULLIF(CAST(src.{col} AS text), '') AS {col}"

    def ts(col):
        return f"to_char(src.{col}, 'YYYY-MM-DD HH24:MI:SS') AS {col}"

    columns = [
        text("order_no"), text("refund_no"), text("txn_type"), text("channel"), text("currency"),
        "CAST(src.amount AS numeric(18,2)) AS amount",
        f"(CAST(src.amount AS numeric) = round(CAST(src.amount AS numeric), 2)) AS {EXACT_COLUMN}",
        text("status"), ts("created_at"), ts("paid_at"),
    ]
    if "partition_column" in cfg:
        columns.append(f"src.{cfg['partition_column']} AS {PART_COLUMN}")
    elif cfg.get("num_partitions", 1) > 1:
        key = "COALESCE(CAST(src.order_no AS text), '') || '|' || COALESCE(CAST(src.refund_no AS text), '')"
        columns.append(f"mod(abs(CAST(hashtext({key}) AS bigint)), {cfg['num_partitions']}) AS {PART_COLUMN}")
    return (f"SELECT {', '.join(columns)} FROM {source} AS src "
            f"WHERE {when} >= TIMESTAMP '{start}' AND {when} < TIMESTAMP '{end}'")


def _password(cfg: dict) -> str:
    return read_secret(cfg, "password", section="local_orders")


def read_jdbc(spark, cfg: dict, day: dt.date, zone: str):
    from pyspark.sql import functions as F

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown business time zone {zone!r}") from None
    password = _password(cfg)
    reader = (spark.read.format("jdbc")
              .option("url", cfg["url"])
              .option("driver", PG_DRIVER)
              .option("dbtable", f"({jdbc_sql(cfg, day)}) AS recon_local")
              .option("user", cfg["user"])
              .option("password", password)
              .option("fetchsize", str(cfg.get("fetch_size", 10000)))
              .option("sessionInitStatement",
                      f"SET TIME ZONE '{zone}'; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
              # driver connection properties: every network call has a timeout
              .option("connectTimeout", "15")
              .option("socketTimeout", str(cfg.get("timeout_seconds", 900)))
              .option("ApplicationName", "recon local orders"))
    parts = cfg.get("num_partitions", 1)
    if "partition_column" in cfg:
        reader = (reader.option("partitionColumn", PART_COLUMN).option("lowerBound", str(cfg["lower_bound"]))
                  .option("upperBound", str(cfg["upper_bound"])).option("numPartitions", str(parts)))
    elif parts > 1:
        reader = (reader.option("partitionColumn", PART_COLUMN).option("lowerBound", "0")
                  .option("upperBound", str(parts)).option("numPartitions", str(parts)))
    try:
        df = reader.load()  # connects once to learn the columns: configuration errors surface here
    except Exception as exc:  # py4j / captured JVM exceptions
        raise _jdbc_error(exc, cfg, day, password) from None
    d = day.isoformat()
    amount = F.when(F.col(EXACT_COLUMN), F.col("amount")).otherwise(F.raise_error(F.concat(
        F.lit("local order "), F.coalesce(F.col("order_no"), F.lit("?")), F.lit(" "),
        F.coalesce(F.col("refund_no"), F.lit("")),
        F.lit(f" has an amount with more than 2 decimals in {describe_source(cfg)} (date {d}); fix the order "
              f"system's data or cast it in local_orders.query"))))
    fields = local_schema.spark_schema().fields
    return df.select(*[(amount if f.name == "amount" else F.col(f.name)).cast(f.dataType).alias(f.name)
                       for f in fields])


def _jdbc_error(exc: Exception, cfg: dict, day: dt.date, password: str) -> ReconError:
    chain = _java_causes(exc)
    text = "\n".join([str(exc)] + [f"{cls}: {msg}" for cls, msg in chain])
    if password:
        text = text.replace(password, "***")
    # the database's own words (PSQLException) say more than Spark's wrapper
    sql = [msg for cls, msg in chain if cls.endswith(("PSQLException", "SQLException")) and msg]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = (sql[0] if sql else (lines[0] if lines else type(exc).__name__))
    if password:
        first = first.replace(password, "***")
    first = first.splitlines()[0][:400] if first else ""
    where = dict(date=day.isoformat())
    src = describe_source(cfg)
    if "ClassNotFoundException" in text or "No suitable driver" in text:
        return ConfigError(f"the PostgreSQL JDBC driver is not on Spark's classpath ({first})", **where,
                           hint="set \"spark.jars\" = \"/usr/share/java/postgresql.jar\" in [spark] "
                                "(Debian package libpostgresql-jdbc-java)")
    if "password authentication failed" in text or "28P01" in text or "no password was provided" in text:
        return FatalError(f"{src}: the database refused user {cfg['user']} ({first})", **where,
                          hint="check local_orders.user and the password in "
                               f"{cfg.get('password_env') or cfg.get('password_file')}")
    if "does not exist" in text or "syntax error" in text or "42P01" in text or "42703" in text:
        return ConfigError(f"{src}: {first}", **where,
                           hint="local_orders.table / query must yield the columns order_no, refund_no, txn_type, "
                                "channel, currency, amount, status, created_at, paid_at")
    if any(s in text for s in ("Connection refused", "UnknownHost", "timed out", "Connection attempt failed",
                               "08001", "08006", "The connection attempt failed")):
        return UnavailableError(f"cannot reach {src}: {first}", **where,
                                hint="check that the read replica is up and reachable, then re-run the date")
    return ReconError(f"reading local orders from {src} failed: {first}", **where)
