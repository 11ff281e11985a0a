"""Local orders of date D read from the order system's PostgreSQL read replica into DuckDB, without a JVM.

The DuckDB engine's twin of ``jobs/local_jdbc.py`` (read its docstring for the
columns, the time zones and which rows belong to D). Both paths must give the
same rows, so everything that decides *which* rows and *how they are written*
is shared, not copied: the SQL is ``jobs.local_jdbc.jdbc_sql`` and a failure
is classified by ``jobs.local_jdbc._jdbc_error``, so the messages, kinds and
exit statuses are the Spark path's.

How the rows travel: one psycopg 3 connection (``SET TIME ZONE`` first, read
only, a statement timeout) runs ``COPY (<jdbc_sql>) TO STDOUT (FORMAT csv,
HEADER)``; the server streams the text into a temporary file (mode 600: it
holds order data; deleted afterwards), which DuckDB's ``read_csv`` loads with
every column declared VARCHAR -- nothing is sniffed. Text survives the trip
unchanged: PostgreSQL writes SQL NULL as an unquoted empty field and an empty
string as ``""``, and ``read_csv`` is told to keep that difference
(``allow_quoted_nulls = false``); the SQL already NULLIFs empty text, as the
Spark path receives it. ``amount`` arrives as the text of a ``numeric(18,2)``
and is cast to DECIMAL(18,2), never through a DOUBLE. One COPY is one snapshot
of the replica, and several times faster than fetching rows into Python.

``num_partitions`` / ``partition_column`` only split Spark's read over
connections; here one stream reads the same rows (a partition column is
still selected, so a source without it fails as on Spark), and
``fetch_size`` has no meaning for COPY.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import tempfile
from typing import BinaryIO
from urllib.parse import parse_qsl, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError, IntegrityError, ReconError
from core.secrets import read_secret
from jobs.local_jdbc import EXACT_COLUMN, PART_COLUMN, describe_source, jdbc_sql
from jobs.local_jdbc import _jdbc_error as jdbc_error  # one classification of failures for both engines
from schemas import local as local_schema

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 15   # the Spark path's connectTimeout; never more than timeout_seconds
APPLICATION_NAME = "recon local orders"
DEFAULT_PORT = "5432"
MAX_MESSAGE = 600              # the Spark path keeps this much of a check's message (jobs.read_errors)
# libpq parameters a JDBC URL may carry under the same name and meaning
_SAME_NAME = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "options")
# pgjdbc's names for libpq's parameters, values unchanged
_RENAMED = {"ApplicationName": "application_name", "gssEncMode": "gssencmode", "channelBinding": "channel_binding"}
_TARGET = {"any": "any", "primary": "primary", "master": "primary", "secondary": "standby", "slave": "standby",
           "preferSecondary": "prefer-standby", "preferSlave": "prefer-standby"}
_SERVER_WORDS = re.compile(r"\b(FATAL|PANIC|ERROR):\s+(.*)")


# -- the public entry ------------------------------------------------------------------------------------------------

def load_local_pg(con, cfg: dict, day: dt.date, zone: str, table: str = "local_raw") -> None:
    """Create (or replace) DuckDB table ``table`` on ``con`` holding D's local orders from the replica.

    The columns are schemas.local.COLUMNS in that order, all VARCHAR except ``amount`` DECIMAL(18,2): the
    rows, values and nulls ``jobs.local_jdbc.read_jdbc`` gives for the same ``cfg`` (a parsed
    ``[local_orders]`` table of format "jdbc"), ``day`` and business time zone ``zone``. Failures are the
    Spark path's ReconErrors: an unknown zone or a missing table / column is a ConfigError (exit 2), a
    refused password a FatalError (1), an unreachable replica or a timeout an UnavailableError (3), an
    amount with more than 2 decimals an IntegrityError (4). No message holds the password. An earlier
    ``table`` is left as it was when the read fails.
    """
    _check_zone(zone)
    password = read_secret(cfg, "password", section="local_orders")  # as jobs.local_jdbc._password
    fd, path = tempfile.mkstemp(prefix="recon-local-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            _copy_day(cfg, day, zone, password, out)
        _load_csv(con, path, cfg, day, table)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# -- the JDBC URL as libpq parameters --------------------------------------------------------------------------------

def pg_conninfo(url: str) -> dict[str, str]:
    """libpq connection parameters (host, port, dbname, TLS...) of a ``jdbc:postgresql://`` URL.

    Several hosts (``h1:5432,h2:5433``) stay a list, as libpq takes them; pgjdbc's parameters that libpq
    knows under another name are renamed (``ssl=true`` is pgjdbc's verify-full, ``currentSchema`` its
    search_path); JDBC-only ones (prepareThreshold, socketTimeout, ...) are dropped. The user and the
    password never come from the URL (the configuration refuses a password there).
    """
    if not url.startswith("jdbc:postgresql://"):
        raise ConfigError(f"local_orders.url must start with jdbc:postgresql://, got {url.split('?')[0]!r}")
    rest, _, query = url[len("jdbc:postgresql://"):].partition("?")
    authority, _, dbname = rest.partition("/")
    hosts = [_host_port(h) for h in authority.split(",") if h]
    out = {"host": ",".join(h for h, _ in hosts) or "localhost",
           "port": ",".join(p for _, p in hosts) or DEFAULT_PORT}
    if unquote(dbname):
        out["dbname"] = unquote(dbname)
    params = dict(parse_qsl(query, keep_blank_values=True))
    out.update(_libpq_params(params))
    dropped = sorted(set(params) - set(_SAME_NAME) - set(_RENAMED) - {"ssl", "sslfactory", "targetServerType",
                                                                       "loadBalanceHosts", "currentSchema"})
    if dropped:
        log.debug("JDBC-only URL parameters not used by the DuckDB engine's read: %s", ", ".join(dropped))
    return out


def _host_port(item: str) -> tuple[str, str]:
    """(host, port) of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if item.startswith("["):
        host, _, tail = item[1:].partition("]")
        return host, tail.lstrip(":") or DEFAULT_PORT
    host, _, port = item.partition(":")
    return host, port or DEFAULT_PORT


def _libpq_params(params: dict[str, str]) -> dict[str, str]:
    """The URL's parameters that mean something to libpq, under libpq's names and values."""
    out = {k: v for k, v in params.items() if k in _SAME_NAME}
    out.update({new: params[old] for old, new in _RENAMED.items() if old in params})
    if "sslmode" not in out and "ssl" in params:  # pgjdbc: ssl=true without sslmode verifies the server fully
        nonvalidating = params.get("sslfactory", "").endswith("NonValidatingFactory")
        out["sslmode"] = ("disable" if params["ssl"].lower() == "false"
                          else "require" if nonvalidating else "verify-full")
    if params.get("targetServerType") in _TARGET:
        out["target_session_attrs"] = _TARGET[params["targetServerType"]]
    if params.get("loadBalanceHosts", "").lower() == "true":
        out["load_balance_hosts"] = "random"
    if params.get("currentSchema"):  # pgjdbc sets search_path at connection start: so does libpq's options
        path = params["currentSchema"].replace("\\", "\\\\").replace(" ", "\\ ")
        out["options"] = f"{out.get('options', '')} -c search_path={path}".strip()
    return out


# -- reading the replica ---------------------------------------------------------------------------------------------

def _check_zone(zone: str) -> None:
    """The Spark path's check, before any connection: a zone name Python does not know is a configuration error."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown business time zone {zone!r}") from None


def _one_stream(cfg: dict) -> dict:
    """``cfg`` for one COPY of every row: without Spark's hash column (a hashtext per row for nothing). A
    ``partition_column`` stays selected, unused, so that a source lacking it fails here as it fails on Spark."""
    return cfg if "partition_column" in cfg else {k: v for k, v in cfg.items() if k != "num_partitions"}


def _copy_day(cfg: dict, day: dt.date, zone: str, password: str, out: BinaryIO) -> None:
    """Stream D's rows as CSV (header first) from the replica into ``out``; failures as the Spark path's errors."""
    import psycopg
    from psycopg import sql

    timeout = cfg.get("timeout_seconds", 900)
    statement = f"COPY ({jdbc_sql(_one_stream(cfg), day)}) TO STDOUT (FORMAT csv, HEADER)"
    connecting = True
    try:
        with psycopg.connect(**_connect_params(cfg, password), autocommit=True) as conn:
            connecting = False
            conn.execute(sql.SQL("SET TIME ZONE {}").format(sql.Literal(zone)))
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{timeout}s")))
            with conn.cursor().copy(statement) as copy:
                for chunk in copy:
                    out.write(chunk)
    except psycopg.Error as exc:
        raise jdbc_error(_DriverError.of(exc, connecting=connecting, timeout=timeout), cfg, day,
                         password) from None
    except OSError as exc:  # the temporary file: a full or read-only disk
        from core.storage import disk_error

        error = disk_error(exc, writing=f"the local orders read from {describe_source(cfg)} (a temporary file "
                                        f"under {tempfile.gettempdir()})", date=day.isoformat())
        if error is None:
            raise
        raise error from None


def _connect_params(cfg: dict, password: str) -> dict[str, str | int]:
    """libpq parameters of the read: the URL's, the user and password of the configuration, and timeouts so that
    no network wait is unbounded (keepalives notice a replica that vanished in the middle of the stream)."""
    timeout = cfg.get("timeout_seconds", 900)
    return {"application_name": APPLICATION_NAME,  # pgjdbc: the URL's ApplicationName wins over Spark's option
            **pg_conninfo(cfg["url"]),
            "user": cfg["user"], "password": password, "client_encoding": "UTF8",
            "connect_timeout": min(CONNECT_TIMEOUT_SECONDS, timeout),
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


class _DriverError(Exception):
    """A psycopg failure told as pgjdbc tells it, for ``jobs.local_jdbc._jdbc_error`` to classify and quote.

    The first line is what the user reads: the server's own words as pgjdbc prints them (``FATAL: password
    authentication failed for user "x"``, ``ERROR: relation "t" does not exist``), else libpq's. The lines
    below it carry what pgjdbc says with its exception classes: the SQLSTATE (08001 for a connection that
    could not be made, as pgjdbc's), and ``timed out`` for a connect or statement timeout (pgjdbc's
    SocketTimeoutException).
    """

    @classmethod
    def of(cls, exc: Exception, *, connecting: bool, timeout: int) -> "_DriverError":
        text = str(exc).strip()
        diag = getattr(exc, "diag", None)
        server = _SERVER_WORDS.search(text)
        if diag is not None and diag.message_primary:
            first = f"{diag.severity or 'ERROR'}: {diag.message_primary}"
        elif server:
            first = f"{server.group(1)}: {server.group(2).strip()}"
        else:
            first = text.splitlines()[0] if text else type(exc).__name__
        lines = [first]
        state = getattr(exc, "sqlstate", None) or ("08001" if connecting and not server else None)
        if state:
            lines.append(f"SQLSTATE {state}")
        if state == "57014" or "timeout expired" in text:
            lines.append(f"timed out ({'connecting' if connecting else f'timeout_seconds = {timeout}'})")
        return cls("\n".join(lines))


# -- into DuckDB -----------------------------------------------------------------------------------------------------

def _csv_scan(path: str) -> str:
    """A ``read_csv`` of COPY's file, every column VARCHAR, PostgreSQL's CSV dialect spelled out (nothing sniffed).

    The columns are declared in the order of the file's header (jdbc_sql's order, whatever it becomes), since
    without sniffing ``read_csv`` names them by position.
    """
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split(",")
    expected = {*local_schema.COLUMNS, EXACT_COLUMN} | ({PART_COLUMN} & set(header))
    if set(header) != expected or len(header) != len(expected):
        raise ReconError(f"the local orders read gave the columns {', '.join(header)}, expected "
                         f"{', '.join(sorted(expected))} (jobs.local_jdbc.jdbc_sql changed?)")
    columns = ", ".join(f"'{c}': 'VARCHAR'" for c in header)
    quoted = path.replace("'", "''")
    return (f"read_csv('{quoted}', header = true, delim = ',', quote = '\"', escape = '\"', nullstr = '', "
            f"allow_quoted_nulls = false, auto_detect = false, strict_mode = true, columns = {{{columns}}})")


def _load_csv(con, path: str, cfg: dict, day: dt.date, table: str) -> None:
    """Check every amount is exact to the cent, then create ``table`` from the file (left alone on failure)."""
    import duckdb

    scan = _csv_scan(path)
    try:
        bad = con.execute(f"SELECT order_no, refund_no FROM {scan} WHERE {EXACT_COLUMN} IS DISTINCT FROM 't' "
                          f"ORDER BY order_no, refund_no NULLS FIRST LIMIT 1").fetchone()
        if bad is not None:
            raise _inexact_error(cfg, day, *bad)
        columns = ", ".join("CAST(amount AS DECIMAL(18,2)) AS amount" if c == "amount" else c
                            for c in local_schema.COLUMNS)
        con.execute(f"CREATE OR REPLACE TABLE {_identifier(table)} AS SELECT {columns} FROM {scan}")
    except duckdb.Error as exc:
        raise ReconError(f"loading local orders from {describe_source(cfg)} into DuckDB failed: "
                         f"{str(exc).splitlines()[0][:400]}", date=day.isoformat()) from None


def _inexact_error(cfg: dict, day: dt.date, order_no: str | None, refund_no: str | None) -> IntegrityError:
    """The Spark path's error for an amount not exact to the cent (its F.raise_error, as jobs.read_errors tells
    it). Like Spark's check this also catches a NULL amount: the exactness of NULL is not true."""
    d = day.isoformat()
    order = "?" if order_no is None else order_no
    refund = "" if refund_no is None else refund_no
    message = (f"local order {order} {refund} has an amount with more than 2 decimals in {describe_source(cfg)} "
               f"(date {d}); fix the order system's data or cast it in local_orders.query")
    return IntegrityError(message[:MAX_MESSAGE], date=d)


def _identifier(name: str) -> str:
    """``name`` quoted as one DuckDB identifier (whatever the caller chose, it cannot break the statement)."""
    return '"' + name.replace('"', '""') + '"'
