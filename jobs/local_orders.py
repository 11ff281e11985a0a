"""Local orders of date D: the order system's export under {root}/local/{D}/, or a JDBC read of its replica.

Configuration (``[local_orders]`` in pipeline.toml)::

    format = "csv"                      # or "parquet": {root}/local/{D}/*, one row per LocalRecord
    allow_empty = false                 # true: an export without rows is accepted on a day the channels
                                        # have records (default: refused, exit 4)

    format = "jdbc"                     # read the order system's read replica (PostgreSQL)
    url = "jdbc:postgresql://replica.internal:5432/shop"
    table = "local_orders"              # a table or view with the LocalRecord columns, or instead:
    # query = "SELECT ... AS order_no, ... FROM orders UNION ALL SELECT ... FROM refunds"
    user = "recon_ro"
    password_env = "RECON_DB_PASSWORD"  # or password_file = "/etc/recon/db-password" (mode 600)
    num_partitions = 4                  # parallel connections (default 1)
    # partition_column = "id"           # a numeric column to stride over, with lower_bound / upper_bound;
    # lower_bound = 1                   # without it, rows are split by a hash of (order_no, refund_no)
    # upper_bound = 50000000
    fetch_size = 10000                  # rows per round trip (default 10000)
    timeout_seconds = 900               # socket read timeout of each connection (default 900)

The JDBC read is ``jobs/local_jdbc.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import re
from pathlib import Path

from core.errors import ConfigError, IntegrityError, ReconError, UnavailableError
from core.storage import Storage
from schemas import local as local_schema
from schemas.money import CENTS_PATTERN

FORMATS = ("csv", "parquet", "jdbc")
FILE_KEYS = {"format", "allow_empty"}
JDBC_KEYS = {"format", "allow_empty", "url", "table", "query", "user", "password_env", "password_file", "num_partitions",
             "partition_column", "lower_bound", "upper_bound", "fetch_size", "timeout_seconds"}
EXPORT_HINT = "fix the order system's export and re-run"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_SECRET_IN_URL = re.compile(r"(?i)[?&;](password|sslpassword)=")


# -- configuration ------------------------------------------------------------------------------------------------

def parse_local_orders_config(raw: dict, conf_file) -> dict:
    """Validate the ``[local_orders]`` table; returns a normalised copy (ints typed, paths resolved).

    Raises ConfigError naming the key and the file. Secrets are not read here
    (only at read time), so a configuration can be checked without them.
    """
    path = str(conf_file) if conf_file else None
    raw = dict(raw or {"format": "csv"})
    fmt = raw.get("format", "csv")
    if fmt not in FORMATS:
        raise ConfigError(f"local_orders.format must be one of {', '.join(FORMATS)}, got {fmt!r}", file=path)
    if fmt == "jdbc" and "password" in raw:
        raise ConfigError("a password must not be written in the configuration; use password_env = \"VAR\" or "
                          "password_file = \"/path/readable/only/by/the/job\"", file=path)
    allowed = FILE_KEYS if fmt in ("csv", "parquet") else JDBC_KEYS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [local_orders] (format {fmt}); "
                          f"allowed: {', '.join(sorted(allowed))}", file=path)
    allow_empty = raw.get("allow_empty", False)
    if not isinstance(allow_empty, bool):
        raise ConfigError(f"local_orders.allow_empty must be true or false, got {allow_empty!r}", file=path)
    if fmt != "jdbc":
        return {"format": fmt, "allow_empty": allow_empty}

    def need_str(key):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"[local_orders] format = \"jdbc\" needs {key} = \"...\"", file=path)
        return value.strip()

    def int_key(key, default, low, high):
        value = raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"local_orders.{key} must be an integer between {low} and {high}, got {value!r}",
                              file=path)
        return value

    url = need_str("url")
    if not url.startswith("jdbc:postgresql://"):
        raise ConfigError(f"local_orders.url must start with jdbc:postgresql:// (only PostgreSQL is supported over "
                          f"JDBC), got {url.split('?')[0]!r}", file=path)
    if _SECRET_IN_URL.search(url) or re.match(r"^jdbc:postgresql://[^/]*@", url):
        raise ConfigError("local_orders.url must not carry a password; use password_env or password_file",
                          file=path)
    out = {"format": "jdbc", "url": url, "user": need_str("user")}
    if ("table" in raw) == ("query" in raw):
        raise ConfigError("[local_orders] needs exactly one of table = \"schema.table\" or query = \"SELECT ...\"",
                          file=path)
    if "table" in raw:
        table = need_str("table")
        if not _IDENT.match(table):
            raise ConfigError(f"local_orders.table must be a plain name or schema.name, got {table!r}; use query "
                              f"for anything else", file=path)
        out["table"] = table
    else:
        out["query"] = need_str("query").rstrip().rstrip(";").rstrip()
    if ("password_env" in raw) == ("password_file" in raw):
        raise ConfigError("[local_orders] needs exactly one of password_env or password_file", file=path)
    if "password_env" in raw:
        out["password_env"] = need_str("password_env")
    else:
        base = Path(path).parent if path else Path.cwd()
        out["password_file"] = str((base / os.path.expanduser(need_str("password_file"))).resolve())

    out["allow_empty"] = allow_empty
    out["num_partitions"] = int_key("num_partitions", 1, 1, 1024)
    out["fetch_size"] = int_key("fetch_size", 10000, 1, 1_000_000)
    out["timeout_seconds"] = int_key("timeout_seconds", 900, 1, 86400)
    if "partition_column" in raw:
        column = need_str("partition_column")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column):
            raise ConfigError(f"local_orders.partition_column must be a column name, got {column!r}", file=path)
        if "lower_bound" not in raw or "upper_bound" not in raw:
            raise ConfigError("local_orders.partition_column needs lower_bound and upper_bound (the column's "
                              "usual range; rows outside it are still read, by the first and last partitions)",
                              file=path)
        low = int_key("lower_bound", None, -(2 ** 63), 2 ** 63 - 1)
        high = int_key("upper_bound", None, -(2 ** 63), 2 ** 63 - 1)
        if low >= high:
            raise ConfigError(f"local_orders.lower_bound ({low}) must be below upper_bound ({high})", file=path)
        out.update(partition_column=column, lower_bound=low, upper_bound=high)
    elif "lower_bound" in raw or "upper_bound" in raw:
        raise ConfigError("local_orders.lower_bound / upper_bound only apply with partition_column", file=path)
    return out


def local_export_files(storage: Storage, day: dt.date) -> tuple[str, list[str]]:
    """(folder, file names) of D's CSV / Parquet export; UnavailableError when there is none."""
    folder = posixpath.join("local", day.isoformat())
    names = [n for n in storage.list(folder) if not n.startswith(("_", "."))]
    if not names:
        raise UnavailableError(f"no local orders export under {storage.uri(folder)}", date=day.isoformat(),
                               hint="the order system's export for this date must land there before reconciling")
    return folder, names


# -- reading ------------------------------------------------------------------------------------------------------

def read_local_orders(spark, storage: Storage, settings_local_orders: dict, day: dt.date,
                      window_minutes: int | None = None, *, timezone: str | None = None):
    """D's local orders as a DataFrame with exactly schemas.local.spark_schema() (amount DecimalType(18,2)).

    ``settings_local_orders`` is the ``[local_orders]`` table (raw or already
    parsed). ``window_minutes`` (the largest cut-off) does not widen the JDBC read (see the module
    docstring); an export's records must lie within D and that margin around it, checked in the plan
    (``_of_the_day``; None: not checked). ``timezone`` is the business time zone (default: the
    session's spark.sql.session.timeZone, which jobs.spark sets from conf).
    """
    cfg = parse_local_orders_config(settings_local_orders, None)  # idempotent on a parsed table
    fmt = cfg.get("format", "csv")
    if fmt in ("csv", "parquet"):
        if fmt == "parquet":
            checked = lambda df: _of_the_day(df.withColumn(FILE_COLUMN, _file_path()), day, window_minutes)  # noqa: E731
        else:  # amount read as text and checked to the cent
            checked = lambda text: _of_the_day(_exact_amounts(text, day, keep_file=True), day,  # noqa: E731
                                               window_minutes)
        return _read_export(spark, storage, fmt, day, checked)
    zone = timezone or spark.conf.get("spark.sql.session.timeZone")
    from jobs.local_jdbc import read_jdbc

    return read_jdbc(spark, cfg, day, zone)


MAX_DIGITS_SHOWN = 12  # a bad amount with more digits is not quoted in the error (it could be a card number)


def _read_export(spark, storage: Storage, fmt: str, day: dt.date, per_read):
    """D's export files (``local/{D}/``) as read, ``per_read`` applied to each Spark read (where
    ``_metadata.file_path`` still names the file): Parquet with its column names checked (Spark would read a
    column the files lack as null, without a word), CSV matched by header name file by file with ``amount``
    as text (jobs/inputs.py)."""
    from jobs import inputs

    folder, names = local_export_files(storage, day)
    paths = [posixpath.join(folder, n) for n in names]
    what = "the local orders export"
    if fmt == "parquet":
        inputs.check_parquet(storage, paths, local_schema.COLUMNS, what=what, hint=EXPORT_HINT, date=day.isoformat())
        return per_read(spark.read.schema(local_schema.spark_schema()).parquet(*[storage.uri(p) for p in paths]))
    return inputs.read_csv(spark, storage, paths, _amount_as_text(), what=what, hint=EXPORT_HINT,
                           date=day.isoformat(), per_group=per_read)


def _file_path():
    from pyspark.sql import functions as F

    return F.col("_metadata.file_path")


def _amount_as_text():
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f.name, T.StringType(), True) if f.name == "amount" else f
                         for f in local_schema.spark_schema().fields])


def _exact_amounts(text, day: dt.date, *, keep_file: bool = False):
    """The export read with ``amount`` as text (``_amount_as_text``), with ``amount`` as DecimalType(18,2).

    Spark's CSV reader would parse a decimal column leniently: it drops thousands separators ("1,234.56"),
    accepts exponents ("1e2") and rounds half up to the column's 2 decimals ("12.345" becomes 12.35), so a
    local amount off by a fraction of a cent would compare equal to the channel's. Instead an amount must be
    a plain decimal exact to the cent (``schemas.money.CENTS_PATTERN``); any other value, an empty one included, fails the
    read with the order, the value and the file (Spark's CSV reader knows no line numbers).
    """
    from pyspark.sql import functions as F

    amount = F.col("amount")
    # The value is shown when it looks like a number that went wrong; anything else (a column shifted into
    # the amount: a payer id, a card number) is only described, since error messages reach the logs.
    digits = F.length(F.regexp_replace(amount, "[^0-9]", ""))
    shown = (F.when(amount.isNull(), F.lit("empty"))
             .when(amount.rlike(r"^[0-9.,eE+ -]{1,24}$") & (digits <= MAX_DIGITS_SHOWN),
                   F.concat(F.lit("'"), amount, F.lit("'")))
             .otherwise(F.concat(F.lit("of "), F.length(amount).cast("string"), F.lit(" characters, not shown,"))))
    bad = F.raise_error(F.concat(
        F.lit("local order "), F.coalesce(F.col("order_no"), F.lit("?")), F.lit(" "),
        F.coalesce(F.col("refund_no"), F.lit("")), F.lit(" (channel "), F.coalesce(F.col("channel"), F.lit("?")),
        F.lit(f", date {day.isoformat()}) in "), F.col("_metadata.file_path"), F.lit(": amount "),
        shown,
        F.lit(" is not a decimal exact to the cent (like 12.30); fix the order system's export and re-run")))
    fields = local_schema.spark_schema().fields
    money = next(f.dataType for f in fields if f.name == "amount")
    exact = F.when(amount.rlike(f"^{CENTS_PATTERN}$"), amount.cast(money)).otherwise(bad)
    columns = [(exact if f.name == "amount" else F.col(f.name)).alias(f.name) for f in fields]
    return text.select(*columns, *([_file_path().alias(FILE_COLUMN)] if keep_file else []))


# -- the export's records belong to D -------------------------------------------------------------------------------

OUT_OF_DAY = "lies outside the business date"  # in the plan's error: the job then counts the rows (out_of_day_error)
FILE_COLUMN = "recon_file"


def time_bounds(day: dt.date, margin_minutes: int) -> tuple[str, str]:
    """[first, end) of the times an export of D may hold: D and the cut-off margin on either side.

    A local record belongs to D by COALESCE(paid_at, created_at); the margin keeps clock skew around midnight
    (a callback stamped 00:00:20 on D+1 for a payment of 23:59:50, an order of 23:58) from failing a day.
    """
    margin = dt.timedelta(minutes=margin_minutes)
    start = dt.datetime.combine(day, dt.time())
    return ((start - margin).strftime("%Y-%m-%d %H:%M:%S"),
            (start + dt.timedelta(days=1) + margin).strftime("%Y-%m-%d %H:%M:%S"))


def _record_time():
    from pyspark.sql import functions as F

    return F.coalesce(F.nullif(F.col("paid_at"), F.lit("")), F.nullif(F.col("created_at"), F.lit("")))


def _outside(day: dt.date, margin_minutes: int):
    from pyspark.sql import functions as F

    first, end = time_bounds(day, margin_minutes)
    when = _record_time()  # times compare as fixed-width text in the business zone, like the cut-off
    return when.isNotNull() & ((when < F.lit(first)) | (when >= F.lit(end)))


def _of_the_day(df, day: dt.date, margin_minutes: int | None):
    """``df`` (LocalRecord columns, and the file path in FILE_COLUMN) with a check in the plan:
    a record whose time lies outside D and its margin fails the job's one pass (F.raise_error, like the
    amount check), naming one such order; the job then counts them per file (``out_of_day_error``). The check
    rides on ``created_at``, which every record carries through the classification."""
    from pyspark.sql import functions as F

    if margin_minutes is None:
        return df.drop(FILE_COLUMN) if FILE_COLUMN in df.columns else df
    first, end = time_bounds(day, margin_minutes)
    where = F.col(FILE_COLUMN) if FILE_COLUMN in df.columns else F.lit("the export")
    bad = F.raise_error(F.concat(
        F.lit("local order "), F.coalesce(F.col("order_no"), F.lit("?")), F.lit(" in "), where,
        F.lit(": its time "), _record_time(), F.lit(f" {OUT_OF_DAY} {day.isoformat()} [{first}, {end})")))
    fields = [f.name for f in local_schema.spark_schema().fields]
    checked = F.when(_outside(day, margin_minutes), bad).otherwise(F.col("created_at"))
    return df.select(*[(checked if n == "created_at" else F.col(n)).alias(n) for n in fields])


MAX_FILES_NAMED = 5


def _uri(path: str) -> str:
    """A file path as Spark gives it (``file:/x``) as Storage writes it (``file:///x``)."""
    return "file://" + path[len("file:"):] if path.startswith("file:/") and not path.startswith("file://") else path


def out_of_day_error(spark, storage: Storage, settings_local_orders: dict, day: dt.date,
                     margin_minutes: int) -> ReconError:
    """The IntegrityError (exit 4) for an export holding records of another day: per file, how many rows lie
    outside D and its margin, with the first such order and its time. Runs only on that failure (a second
    read of the export)."""
    from pyspark.sql import functions as F

    cfg = parse_local_orders_config(settings_local_orders, None)
    folder, _ = local_export_files(storage, day)
    df = _read_export(spark, storage, cfg.get("format", "csv"), day, lambda read: read.select(
        "order_no", "created_at", "paid_at", _file_path().alias(FILE_COLUMN)))
    when = _record_time()
    rows = (df.withColumn("when", when).groupBy(FILE_COLUMN)
            .agg(F.count(F.lit(1)).alias("rows"), F.sum(_outside(day, margin_minutes).cast("int")).alias("bad"),
                 F.min(F.when(_outside(day, margin_minutes), F.struct("when", "order_no"))).alias("first"),
                 F.min("when").alias("earliest"), F.max("when").alias("latest"))
            .filter(F.col("bad") > 0).orderBy(FILE_COLUMN).collect())
    return out_of_day_message(storage, folder, day, margin_minutes, rows)


def out_of_day_message(storage: Storage, folder: str, day: dt.date, margin_minutes: int, rows) -> ReconError:
    """The IntegrityError of ``out_of_day_error`` from its per-file rows (``FILE_COLUMN``, rows, bad, first
    (order_no, when), earliest, latest; files with bad rows only, sorted by file): both engines' words. A file
    is named as Storage names it (Spark's ``file:/x`` is ``file:///x``)."""
    rows = [dict(r.asDict() if hasattr(r, "asDict") else r, **{FILE_COLUMN: _uri(r[FILE_COLUMN])}) for r in rows]
    first, end = time_bounds(day, margin_minutes)
    d = day.isoformat()
    if not rows:  # the export changed between the two reads
        return IntegrityError(f"the local orders export holds records whose time {OUT_OF_DAY} {d}", date=d,
                              file=storage.uri(folder), hint="put this date's export there and re-run")
    parts = [f"{r['bad']} of {r['rows']} rows in {r[FILE_COLUMN]} (times {r['earliest']} to {r['latest']}; e.g. "
             f"order {r['first']['order_no']} at {r['first']['when']})" for r in rows[:MAX_FILES_NAMED]]
    more = f" and {len(rows) - MAX_FILES_NAMED} more files" if len(rows) > MAX_FILES_NAMED else ""
    total = sum(r["bad"] for r in rows)
    return IntegrityError(
        f"the local orders export holds {total} record{'s' if total != 1 else ''} of another day: by paid_at (or "
        f"created_at) {'it lies' if total == 1 else 'they lie'} outside {d} and its cut-off margin "
        f"[{first}, {end}): {'; '.join(parts)}{more}", date=d,
        file=rows[0][FILE_COLUMN] if len(rows) == 1 else storage.uri(folder),
        hint=f"is this another date's export? put the order system's export of {d} under "
             f"{storage.uri(folder)} and re-run; nothing was published")


