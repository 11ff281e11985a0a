"""apply-fixes: carry D's auto-fixes (corrections.csv) into the order system, each exactly once.

    recon apply-fixes --date D            dry run: prints what would change, changes nothing
    recon apply-fixes --date D --apply    applies, one transaction (or one POST) per correction

Input: ``{root}/recon/{D}/corrections.csv`` of a published result (``_SUCCESS``
present); the channel time of each fix comes from the matching row of
``discrepancies.csv`` and becomes the order's ``paid_at``.

Configuration (``[fixes]`` in pipeline.toml), target ``database``::

    [fixes]
    target = "database"
    dsn = "host=orders-primary.internal port=5432 dbname=shop"   # libpq keywords or postgresql:// URI, no password
    user = "recon_fixer"
    password_env = "RECON_FIXES_DB_PASSWORD"                       # or password_file (mode 600)
    orders_table = "orders"                        # default; schema.table allowed
    refunds_table = "refunds"                      # default
    audit_table = "recon_applied_corrections"      # default; created if missing (create_audit_table = true)
    lock_timeout_seconds = 10                      # a row locked longer than this fails that fix (re-run later)
    statement_timeout_seconds = 60
    [fixes.orders_columns]                         # only to rename; defaults shown
    order_no = "order_no"
    channel = "channel"
    amount = "amount"
    status = "status"
    paid_at = "paid_at"
    [fixes.refunds_columns]                        # the same roles plus refund_no
    refund_no = "refund_no"

The order tables are the order system's (defaults):
``orders(order_no, channel, currency, amount, status, created_at, paid_at)``
keyed by (channel, order_no), statuses PAID / UNPAID / CLOSED, and
``refunds(order_no, refund_no, channel, currency, amount, status, created_at,
paid_at)`` keyed by (channel, order_no, refund_no), statuses SUCCESS /
PROCESSING / FAILED. ``paid_at`` may be ``timestamp`` (wall time in the
business zone) or ``timestamptz``: the session's time zone is the business
zone, so the channel time lands right in both.

Each correction runs in its own transaction:

1. ``INSERT`` into the audit table ``recon_applied_corrections(idempotency_key
   PRIMARY KEY, date, channel, order_no, refund_no, action, amount,
   channel_txn_id, applied_at, outcome, detail)`` ``ON CONFLICT DO NOTHING``.
   A key already there (an earlier run, or a concurrent one, which waits on
   the key until the first commits) is ALREADY_APPLIED and nothing changes.
2. A conditional ``UPDATE`` that changes the row only in the expected state
   and with the expected amount: MARK_PAID ``status IN ('UNPAID','CLOSED')``
   -> ``'PAID'``, ``paid_at`` = the channel time (else the current time);
   MARK_REFUNDED ``status IN ('PROCESSING','FAILED')`` -> ``'SUCCESS'``, same.
   Row-level locking makes this safe against a concurrent writer: a row changed
   in between is re-checked after its lock is released.
3. The audit row gets the outcome: APPLIED, SKIPPED_STATE_CHANGED (the row is
   no longer in the expected state: someone else changed it; it is left alone
   and reported with its current status and amount) or SKIPPED_NOT_FOUND. A
   skipped key stays in the audit table, so it is reported once; to retry it
   after a person has looked, delete its audit row.

Target ``webhook``: each correction is POSTed as JSON to ``url`` with header
``Idempotency-Key`` (verified TLS; plain http only to a loopback address;
timeouts). Successes (2xx) are appended, one fsynced line at a time, to
``ledger_file`` (a local file), so a second run posts nothing. A 2xx answer
may say ``{"outcome": "SKIPPED_STATE_CHANGED"}`` (or SKIPPED_NOT_FOUND)::

    [fixes]
    target = "webhook"
    url = "https://orders.internal/api/recon-corrections"
    token_env = "RECON_FIXES_TOKEN"         # optional bearer token (or token_file)
    ca_file = "/etc/recon/orders-ca.pem"    # optional; default: the system's CAs
    timeout_seconds = 10
    ledger_file = "/var/lib/recon/fixes-webhook-ledger.csv"

Either way, after ``--apply`` every key handled for D (this run and earlier
ones) is written to ``{root}/corrections/applied/{D}.csv`` (LEDGER_COLUMNS),
for the reconciliation job to suppress corrections already applied.

Exit status of ``apply_fixes``: 0 when every correction was applied, already
applied or skipped (skips are reported, not failures); 1 when a fix failed
(a lock timeout, a webhook 4xx/5xx); errors that stop the run raise
``ReconError`` (2 configuration, 3 database or webhook unreachable, 4 a
malformed corrections file).
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import io
import os
import posixpath
import re
import sys
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from core.errors import ConfigError, FatalError, IntegrityError, ReconError, UnavailableError
from core.secrets import read_secret
from core.storage import Storage
from recon.net import is_loopback
from schemas import csvio
from schemas.money import MoneyError, format_money, parse_money
from schemas.outputs import CORRECTION_COLUMNS

MARK_PAID, MARK_REFUNDED = "MARK_PAID", "MARK_REFUNDED"
EXPECTED = {MARK_PAID: (("UNPAID", "CLOSED"), "PAID"), MARK_REFUNDED: (("PROCESSING", "FAILED"), "SUCCESS")}
APPLIED, ALREADY_APPLIED = "APPLIED", "ALREADY_APPLIED"
SKIPPED_STATE_CHANGED, SKIPPED_NOT_FOUND, FAILED = "SKIPPED_STATE_CHANGED", "SKIPPED_NOT_FOUND", "FAILED"
RECORDED_OUTCOMES = (APPLIED, SKIPPED_STATE_CHANGED, SKIPPED_NOT_FOUND)
LEDGER_COLUMNS = ("idempotency_key", "date", "channel", "order_no", "refund_no", "action", "amount",
                  "channel_txn_id", "applied_at", "outcome", "target")
ORDER_ROLES = ("order_no", "channel", "amount", "status", "paid_at")
REFUND_ROLES = ORDER_ROLES + ("refund_no",)
DB_KEYS = {"target", "dsn", "user", "password_env", "password_file", "orders_table", "refunds_table", "audit_table",
           "orders_columns", "refunds_columns", "lock_timeout_seconds", "statement_timeout_seconds",
           "create_audit_table"}
WEBHOOK_KEYS = {"target", "url", "token_env", "token_file", "ca_file", "timeout_seconds", "ledger_file"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class Fix:
    """One correction of corrections.csv, validated."""

    idempotency_key: str
    date: str
    channel: str
    order_no: str
    refund_no: str
    action: str
    amount: Decimal
    channel_txn_id: str
    channel_time: str | None = None
    line: int = 0

    def describe(self) -> str:
        ref = f"{self.order_no}/{self.refund_no}" if self.refund_no else self.order_no
        return f"{self.action:<13} {self.channel} {ref} {format_money(self.amount)}"


@dataclass
class Result:
    fix: Fix
    outcome: str
    detail: str = ""
    applied_at: str = ""


# -- configuration ------------------------------------------------------------------------------------------------

def parse_fixes_config(raw: dict, conf_file=None) -> dict:
    """Validate the ``[fixes]`` table; returns a normalised copy. Secrets are read only when used."""
    path = str(conf_file) if conf_file else None
    raw = dict(raw or {})
    target = raw.get("target")
    if target not in ("database", "webhook"):
        raise ConfigError(f"fixes.target must be \"database\" or \"webhook\", got {target!r}", file=path,
                          hint="add a [fixes] table to the pipeline configuration (see recon/fixes.py)")
    for secret in ("password", "token"):
        if secret in raw:
            raise ConfigError(f"fixes.{secret} must not be written in the configuration; use {secret}_env = "
                              f"\"VAR\" or {secret}_file = \"/path/readable/only/by/the/job\"", file=path)
    allowed = DB_KEYS if target == "database" else WEBHOOK_KEYS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [fixes] (target {target}); "
                          f"allowed: {', '.join(sorted(allowed))}", file=path)
    base = Path(path).parent if path else Path.cwd()

    def need(key):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"[fixes] target = \"{target}\" needs {key} = \"...\"", file=path)
        return value.strip()

    def seconds(key, default):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
            raise ConfigError(f"fixes.{key} must be an integer number of seconds (1-3600), got {value!r}", file=path)
        return value

    def local_path(key):
        return str((base / os.path.expanduser(need(key))).resolve())

    out: dict = {"target": target}
    if target == "database":
        dsn = need("dsn")
        if re.search(r"(?i)password\s*=", dsn) or re.match(r"^postgres(ql)?://[^/@]*:[^/@]*@", dsn):
            raise ConfigError("fixes.dsn must not carry a password; use password_env or password_file", file=path)
        out.update(dsn=dsn, user=need("user"))
        if ("password_env" in raw) == ("password_file" in raw):
            raise ConfigError("[fixes] needs exactly one of password_env or password_file", file=path)
        if "password_env" in raw:
            out["password_env"] = need("password_env")
        else:
            out["password_file"] = local_path("password_file")
        for key, default in (("orders_table", "orders"), ("refunds_table", "refunds"),
                             ("audit_table", "recon_applied_corrections")):
            value = raw.get(key, default)
            if not isinstance(value, str) or not all(_IDENT.match(p) for p in value.split(".")) \
                    or value.count(".") > 1:
                raise ConfigError(f"fixes.{key} must be a name or schema.name, got {value!r}", file=path)
            out[key] = value
        for key, roles in (("orders_columns", ORDER_ROLES), ("refunds_columns", REFUND_ROLES)):
            given = raw.get(key, {})
            if not isinstance(given, dict) or set(given) - set(roles):
                raise ConfigError(f"[fixes.{key}] maps roles {', '.join(roles)} to column names; got "
                                  f"{sorted(given) if isinstance(given, dict) else given!r}", file=path)
            columns = {r: given.get(r, r) for r in roles}
            bad = [c for c in columns.values() if not isinstance(c, str) or not _IDENT.match(c)]
            if bad:
                raise ConfigError(f"[fixes.{key}] has invalid column names {bad!r}", file=path)
            out[key] = columns
        out["lock_timeout_seconds"] = seconds("lock_timeout_seconds", 10)
        out["statement_timeout_seconds"] = seconds("statement_timeout_seconds", 60)
        create = raw.get("create_audit_table", True)
        if not isinstance(create, bool):
            raise ConfigError(f"fixes.create_audit_table must be true or false, got {create!r}", file=path)
        out["create_audit_table"] = create
    else:
        url = need("url")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"fixes.url must be an https:// URL, got {url!r}", file=path)
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError("fixes.url must use https (plain http is allowed only to a loopback address)",
                              file=path)
        if parts.username or parts.password:
            raise ConfigError("fixes.url must not carry credentials; use token_env or token_file", file=path)
        out["url"] = url
        if "token_env" in raw and "token_file" in raw:
            raise ConfigError("[fixes] takes at most one of token_env or token_file", file=path)
        if "token_env" in raw:
            out["token_env"] = need("token_env")
        if "token_file" in raw:
            out["token_file"] = local_path("token_file")
        if "ca_file" in raw:
            out["ca_file"] = local_path("ca_file")
        out["timeout_seconds"] = seconds("timeout_seconds", 10)
        out["ledger_file"] = local_path("ledger_file")
    return out


def _secret(cfg: dict, key: str, *, required: bool) -> str | None:
    return read_secret(cfg, key, section="fixes", required=required)


# -- reading and planning -----------------------------------------------------------------------------------------

def read_corrections(storage: Storage, day: dt.date) -> tuple[list[dict], dict]:
    """(rows of corrections.csv with their line numbers, channel times by key) of D's published result."""
    folder = posixpath.join("recon", day.isoformat())
    if not storage.is_file(folder, "_SUCCESS"):
        raise UnavailableError(f"no published reconciliation result under {storage.uri(folder)}",
                               date=day.isoformat(), hint="run `recon reconcile` (or `recon run`) for this date first")
    header, rows = _read_csv(storage, folder, "corrections.csv")
    if tuple(header) != CORRECTION_COLUMNS:
        raise IntegrityError(f"corrections.csv has columns {header}, expected {list(CORRECTION_COLUMNS)}",
                             date=day.isoformat(), file=storage.uri(folder, "corrections.csv"))
    out = [dict(zip(header, r), _line=n) for n, r in enumerate(rows, start=2)]
    times: dict = {}
    if storage.is_file(folder, "discrepancies.csv"):
        dheader, drows = _read_csv(storage, folder, "discrepancies.csv")
        for r in (dict(zip(dheader, v)) for v in drows):
            if r.get("category") in ("LOCAL_UNPAID_CHANNEL_PAID", "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED") \
                    and r.get("channel_time"):
                times[(r["channel"], r["order_no"], r.get("refund_no", ""))] = r["channel_time"]
    return out, times


def _read_csv(storage: Storage, *parts: str) -> tuple[list[str], list[list[str]]]:
    # LF or CRLF, with or without a BOM: the file may have been saved by hand or by another tool
    return csvio.read_rows(io.StringIO(csvio.decode(storage.read_bytes(*parts)), newline=""))


def plan(corrections_rows: Iterable[dict], channel_times: dict | None = None) -> list[Fix]:
    """Validated fixes, in file order. A malformed row or a repeated key is an IntegrityError (nothing applies)."""
    fixes, seen = [], {}
    for n, row in enumerate(corrections_rows, start=2):
        line = row.get("_line", n)
        where = dict(date=row.get("date") or None, channel=row.get("channel") or None, file="corrections.csv",
                     line=line)
        action = row.get("action", "")
        if action not in EXPECTED:
            raise IntegrityError(f"unknown action {action!r}; expected MARK_PAID or MARK_REFUNDED", **where)
        key = (row.get("idempotency_key") or "").strip()
        if not key:
            raise IntegrityError("a correction without idempotency_key", **where)
        if key in seen:
            raise IntegrityError(f"idempotency_key {key} repeats line {seen[key]}", **where)
        seen[key] = line
        if not row.get("order_no") or not row.get("channel"):
            raise IntegrityError("a correction without channel or order_no", **where)
        refund_no = row.get("refund_no") or ""
        if (action == MARK_REFUNDED) != bool(refund_no):
            raise IntegrityError(f"{action} {'needs' if action == MARK_REFUNDED else 'takes no'} refund_no", **where)
        try:
            amount = parse_money(row.get("amount") or "")
        except MoneyError as exc:
            raise IntegrityError(f"bad amount: {exc}", **where) from None
        try:
            dt.date.fromisoformat(row.get("date") or "")
        except ValueError:
            raise IntegrityError(f"bad date {row.get('date')!r}", **where) from None
        ctime = (channel_times or {}).get((row["channel"], row["order_no"], refund_no))
        fixes.append(Fix(idempotency_key=key, date=row["date"], channel=row["channel"], order_no=row["order_no"],
                         refund_no=refund_no, action=action, amount=amount,
                         channel_txn_id=row.get("channel_txn_id") or "", channel_time=ctime or None, line=line))
    return fixes


# -- the database target ------------------------------------------------------------------------------------------

class DatabaseTarget:
    """Conditional UPDATEs plus an audit row per correction, in the order system's PostgreSQL."""

    def __init__(self, cfg: dict, timezone: str):
        self.cfg = cfg
        self.timezone = timezone
        self.conn = None

    def describe(self) -> str:
        try:
            from psycopg.conninfo import conninfo_to_dict

            info = conninfo_to_dict(self.cfg["dsn"])
            where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        except Exception:
            where = "the configured database"
        return f"database {where} (tables {self.cfg['orders_table']}, {self.cfg['refunds_table']}; " \
               f"audit {self.cfg['audit_table']})"

    def __enter__(self):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("apply-fixes to a database needs psycopg: pip install 'psycopg[binary]>=3.1'") from None
        password = _secret(self.cfg, "password", required=True)
        options = (f"-c lock_timeout={self.cfg['lock_timeout_seconds'] * 1000} "
                   f"-c statement_timeout={self.cfg['statement_timeout_seconds'] * 1000}")
        try:
            self.conn = psycopg.connect(self.cfg["dsn"], user=self.cfg["user"], password=password,
                                        connect_timeout=10, options=options, application_name="recon apply-fixes")
            self.conn.execute("SELECT set_config('TimeZone', %s, false)", (self.timezone,))
            self.conn.commit()
        except psycopg.OperationalError as exc:
            text = str(exc).replace(password, "***") if password else str(exc)
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            if "password authentication failed" in text or "authentication" in text:
                raise FatalError(f"{self.describe()} refused user {self.cfg['user']}: {first}",
                                 hint="check fixes.user and the password; nothing was changed") from None
            raise UnavailableError(f"cannot reach {self.describe()}: {first}",
                                   hint="re-run apply-fixes when the database is reachable; nothing was changed") \
                from None
        return self

    def __exit__(self, *exc):
        if self.conn is not None:
            self.conn.close()

    # SQL pieces ----------------------------------------------------------------------------------------------
    def _ident(self, dotted: str):
        from psycopg import sql

        return sql.Identifier(*dotted.split("."))

    def _table(self, fix: Fix):
        from psycopg import sql

        if fix.action == MARK_PAID:
            cols = self.cfg["orders_columns"]
            key = sql.SQL("{} = %(channel)s AND {} = %(order_no)s").format(
                sql.Identifier(cols["channel"]), sql.Identifier(cols["order_no"]))
            return self._ident(self.cfg["orders_table"]), cols, key
        cols = self.cfg["refunds_columns"]
        key = sql.SQL("{} = %(channel)s AND {} = %(order_no)s AND {} = %(refund_no)s").format(
            sql.Identifier(cols["channel"]), sql.Identifier(cols["order_no"]), sql.Identifier(cols["refund_no"]))
        return self._ident(self.cfg["refunds_table"]), cols, key

    @staticmethod
    def _params(fix: Fix) -> dict:
        expected, new = EXPECTED[fix.action]
        return dict(asdict(fix), expected=list(expected), new_status=new, date=dt.date.fromisoformat(fix.date))

    def _current(self, cur, fix: Fix):
        from psycopg import sql

        table, cols, key = self._table(fix)
        cur.execute(sql.SQL("SELECT {}, {} FROM {} WHERE ").format(
            sql.Identifier(cols["status"]), sql.Identifier(cols["amount"]), table) + key, self._params(fix))
        return cur.fetchall()

    def _state_detail(self, rows, fix: Fix) -> tuple[str, str]:
        if not rows:
            return SKIPPED_NOT_FOUND, "no such row in the order system"
        if len(rows) > 1:
            return FAILED, f"{len(rows)} rows match this key; the key is not unique in the order system"
        status, amount = rows[0]
        expected, _ = EXPECTED[fix.action]
        if status not in expected:
            return SKIPPED_STATE_CHANGED, f"status is now {status} (expected {'/'.join(expected)})"
        if Decimal(amount) != fix.amount:
            return SKIPPED_STATE_CHANGED, f"amount is now {amount} (expected {format_money(fix.amount)})"
        return APPLIED, ""

    def _audit_exists(self, cur) -> bool:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (self.cfg["audit_table"],))
        return cur.fetchone()[0]

    def _audit_row(self, cur, key: str):
        from psycopg import sql

        cur.execute(sql.SQL("SELECT outcome, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS') FROM {} "
                            "WHERE idempotency_key = %s").format(self._ident(self.cfg["audit_table"])), (key,))
        return cur.fetchone()

    # operations ----------------------------------------------------------------------------------------------
    def preview(self, fixes: list[Fix]) -> list[Result]:
        """What --apply would do now (read-only, rolled back)."""
        results = []
        with self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            audit = self._audit_exists(cur)
            for fix in fixes:
                prior = self._audit_row(cur, fix.idempotency_key) if audit else None
                if prior:
                    results.append(Result(fix, ALREADY_APPLIED, f"{prior[0]} at {prior[1]}", prior[1]))
                    continue
                outcome, detail = self._state_detail(self._current(cur, fix), fix)
                if outcome == APPLIED:
                    detail = self._change_text(fix)
                results.append(Result(fix, _WOULD[outcome], detail))
        self.conn.rollback()
        return results

    def _change_text(self, fix: Fix) -> str:
        expected, new = EXPECTED[fix.action]
        table = self.cfg["orders_table"] if fix.action == MARK_PAID else self.cfg["refunds_table"]
        return (f"{table}.status {'/'.join(expected)} -> {new}, paid_at = "
                f"{fix.channel_time or 'now (no channel time)'}")

    def prepare(self) -> None:
        from psycopg import sql

        with self.conn.cursor() as cur:
            if not self._audit_exists(cur):
                if not self.cfg["create_audit_table"]:
                    raise ConfigError(f"audit table {self.cfg['audit_table']} does not exist and "
                                      f"fixes.create_audit_table is false", hint="create it (see recon/fixes.py)")
                cur.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (idempotency_key text PRIMARY KEY, date date NOT NULL, "
                    "channel text NOT NULL, order_no text NOT NULL, refund_no text NOT NULL DEFAULT '', "
                    "action text NOT NULL, amount numeric(18,2) NOT NULL, channel_txn_id text NOT NULL DEFAULT '', "
                    "applied_at timestamptz NOT NULL DEFAULT now(), outcome text NOT NULL, "
                    "detail text NOT NULL DEFAULT '')").format(self._ident(self.cfg["audit_table"])))
        self.conn.commit()

    def apply(self, fix: Fix) -> Result:
        import psycopg
        from psycopg import sql

        audit = self._ident(self.cfg["audit_table"])
        params = self._params(fix)
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(sql.SQL(
                    "INSERT INTO {} (idempotency_key, date, channel, order_no, refund_no, action, amount, "
                    "channel_txn_id, outcome) VALUES (%(idempotency_key)s, %(date)s, %(channel)s, %(order_no)s, "
                    "%(refund_no)s, %(action)s, %(amount)s, %(channel_txn_id)s, 'PENDING') "
                    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1").format(audit), params)
                if cur.fetchone() is None:
                    prior = self._audit_row(cur, fix.idempotency_key)
                    return Result(fix, ALREADY_APPLIED, f"{prior[0]} at {prior[1]}" if prior else "",
                                  prior[1] if prior else "")
                table, cols, key = self._table(fix)
                cur.execute(sql.SQL(
                    "UPDATE {} SET {} = %(new_status)s, {} = COALESCE(CAST(%(channel_time)s AS timestamp), "
                    "LOCALTIMESTAMP) WHERE ").format(table, sql.Identifier(cols["status"]),
                                                     sql.Identifier(cols["paid_at"]))
                            + key + sql.SQL(" AND {} = ANY(%(expected)s) AND {} = %(amount)s").format(
                                sql.Identifier(cols["status"]), sql.Identifier(cols["amount"])), params)
                changed = cur.rowcount
                if changed == 1:
                    outcome, detail = APPLIED, self._change_text(fix)
                elif changed == 0:
                    outcome, detail = self._state_detail(self._current(cur, fix), fix)
                    if outcome == APPLIED:  # cannot happen under row locking; never claim a change we did not make
                        outcome, detail = FAILED, "the row matched only after the update; re-run"
                else:
                    outcome, detail = FAILED, f"{changed} rows match this key"
                if outcome == FAILED:
                    raise _Rollback(detail)
                cur.execute(sql.SQL("UPDATE {} SET outcome = %s, detail = %s, applied_at = now() "
                                    "WHERE idempotency_key = %s "
                                    "RETURNING to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS')").format(audit),
                            (outcome, detail, fix.idempotency_key))
                return Result(fix, outcome, detail, cur.fetchone()[0])
        except _Rollback as exc:
            return Result(fix, FAILED, f"{exc}; nothing changed")
        except psycopg.errors.LockNotAvailable:
            return Result(fix, FAILED, f"the row stayed locked by another transaction for more than "
                                       f"{self.cfg['lock_timeout_seconds']} s; nothing changed, re-run later")
        except psycopg.errors.QueryCanceled:
            return Result(fix, FAILED, "the statement timed out; nothing changed, re-run later")
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise ConfigError(f"{self.describe()}: {str(exc).splitlines()[0]}",
                              hint="set fixes.orders_table / refunds_table / [fixes.*_columns] to the order "
                                   "system's names") from None
        except psycopg.OperationalError as exc:
            raise UnavailableError(f"lost {self.describe()} while applying {fix.idempotency_key}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                   hint="re-run apply-fixes: applied keys are in the audit table and are skipped") \
                from None

    def ledger_rows(self, day: dt.date) -> list[dict]:
        """Every recorded key of D in the audit table (the source of truth)."""
        from psycopg import sql

        with self.conn.cursor() as cur:
            cur.execute(sql.SQL(
                "SELECT idempotency_key, to_char(date, 'YYYY-MM-DD'), channel, order_no, refund_no, action, amount, "
                "channel_txn_id, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS'), outcome FROM {} "
                "WHERE date = %s AND outcome <> 'PENDING' ORDER BY idempotency_key").format(
                    self._ident(self.cfg["audit_table"])), (day,))
            rows = cur.fetchall()
        self.conn.rollback()
        return [dict(zip(LEDGER_COLUMNS, (*r[:6], format_money(Decimal(r[6])), *r[7:], "database"))) for r in rows]


_WOULD = {APPLIED: "WOULD_APPLY", SKIPPED_STATE_CHANGED: "WOULD_SKIP_STATE_CHANGED",
          SKIPPED_NOT_FOUND: "WOULD_SKIP_NOT_FOUND", FAILED: "WOULD_FAIL"}


class _Rollback(Exception):
    """Abort one correction's transaction (nothing of it is kept)."""


# -- the webhook target -------------------------------------------------------------------------------------------

class WebhookTarget:
    """POST each correction with an Idempotency-Key; a local ledger file makes a second run post nothing."""

    def __init__(self, cfg: dict, timezone: str):
        self.cfg = cfg
        self.timezone = timezone
        self.ledger_fh = None
        self.done: dict[str, dict] = {}

    def describe(self) -> str:
        parts = urlsplit(self.cfg["url"])
        return f"webhook {parts.scheme}://{parts.netloc}{parts.path} (ledger {self.cfg['ledger_file']})"

    def __enter__(self):
        import requests

        path = self.cfg["ledger_file"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self.ledger_fh = open(path, "a+", encoding="utf-8", newline="")  # a local ledger, never on HDFS
        try:
            fcntl.flock(self.ledger_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.ledger_fh.close()
            raise ReconError(f"another apply-fixes run holds the ledger {path}", hint="wait for it to finish") \
                from None
        if new:
            csvio.writer(self.ledger_fh).writerow(LEDGER_COLUMNS)
            self._sync()
        self.ledger_fh.seek(0)
        for row in csv.DictReader(_without_bom(self.ledger_fh)):
            self.done[row["idempotency_key"]] = row
        self.ledger_fh.seek(0, os.SEEK_END)
        self.session = requests.Session()
        # per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify
        self.verify = self.cfg.get("ca_file", True)
        self.token = _secret(self.cfg, "token", required=False)
        return self

    def __exit__(self, *exc):
        if self.ledger_fh is not None:
            self.ledger_fh.close()  # releases the lock
        if getattr(self, "session", None) is not None:
            self.session.close()

    def _sync(self):
        self.ledger_fh.flush()
        os.fsync(self.ledger_fh.fileno())

    def preview(self, fixes: list[Fix]) -> list[Result]:
        out = []
        for fix in fixes:
            prior = self.done.get(fix.idempotency_key)
            out.append(Result(fix, ALREADY_APPLIED, f"{prior['outcome']} at {prior['applied_at']}",
                              prior["applied_at"]) if prior else
                       Result(fix, "WOULD_POST", f"POST with Idempotency-Key to {self.describe()}"))
        return out

    def prepare(self) -> None:
        pass

    def apply(self, fix: Fix) -> Result:
        import requests

        prior = self.done.get(fix.idempotency_key)
        if prior:
            return Result(fix, ALREADY_APPLIED, f"{prior['outcome']} at {prior['applied_at']}", prior["applied_at"])
        body = {"idempotency_key": fix.idempotency_key, "date": fix.date, "channel": fix.channel,
                "order_no": fix.order_no, "refund_no": fix.refund_no, "action": fix.action,
                "amount": format_money(fix.amount), "channel_txn_id": fix.channel_txn_id,
                "channel_time": fix.channel_time, "time_zone": self.timezone}
        headers = {"Idempotency-Key": fix.idempotency_key, "User-Agent": "recon-apply-fixes"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = self.cfg["timeout_seconds"]
        try:
            resp = self.session.post(self.cfg["url"], json=body, headers=headers, timeout=(timeout, timeout),
                                     verify=self.verify, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            reason = str(exc.__context__ or exc).split("(Caused by ")[-1][:300]
            raise FatalError(f"{self.describe()}: TLS verification failed ({reason})",
                             hint="check fixes.url and fixes.ca_file") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise UnavailableError(f"cannot reach {self.describe()}: {type(exc).__name__}",
                                   hint="re-run apply-fixes later: posted keys are in the ledger and are skipped") \
                from None
        if not 200 <= resp.status_code < 300:
            text = resp.text[:200].replace("\n", " ")
            return Result(fix, FAILED, f"HTTP {resp.status_code} {text!r}; not recorded, re-run to retry")
        outcome = APPLIED
        try:
            said = resp.json().get("outcome")
            if said in RECORDED_OUTCOMES:
                outcome = said
        except (ValueError, AttributeError):
            pass
        applied_at = dt.datetime.now(_zone(self.timezone)).strftime("%Y-%m-%d %H:%M:%S")
        row = {"idempotency_key": fix.idempotency_key, "date": fix.date, "channel": fix.channel,
               "order_no": fix.order_no, "refund_no": fix.refund_no, "action": fix.action,
               "amount": format_money(fix.amount), "channel_txn_id": fix.channel_txn_id, "applied_at": applied_at,
               "outcome": outcome, "target": "webhook"}
        csvio.writer(self.ledger_fh).writerow([row[c] for c in LEDGER_COLUMNS])
        self._sync()
        self.done[fix.idempotency_key] = row
        return Result(fix, outcome, f"HTTP {resp.status_code}", applied_at)

    def ledger_rows(self, day: dt.date) -> list[dict]:
        return sorted((r for r in self.done.values() if r["date"] == day.isoformat()),
                      key=lambda r: r["idempotency_key"])


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _without_bom(lines):
    """The ledger's lines with a UTF-8 byte order mark dropped from the first (a ledger saved by an editor)."""
    first = True
    for line in lines:
        yield line[1:] if first and line.startswith(csvio.BOM) else line
        first = False


# -- the ledger under {root} --------------------------------------------------------------------------------------

def ledger_path(day: dt.date) -> tuple[str, str]:
    return posixpath.join("corrections", "applied"), f"{day.isoformat()}.csv"


def write_ledger(storage: Storage, day: dt.date, rows: list[dict]) -> None:
    """Rewrite {root}/corrections/applied/{D}.csv with ``rows`` (plus earlier rows of other targets)."""
    folder, name = ledger_path(day)
    merged = {}
    if storage.is_file(folder, name):
        header, old = _read_csv(storage, folder, name)
        for r in old:
            merged[r[0]] = dict(zip(header, r))
    for r in rows:
        merged[r["idempotency_key"]] = r
    tmp = f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    with storage.open_text_write(folder, tmp) as fh:
        csvio.write_rows(fh, LEDGER_COLUMNS, ([merged[k].get(c, "") for c in LEDGER_COLUMNS] for k in sorted(merged)))
    storage.delete(folder, name)
    storage.move(posixpath.join(folder, tmp), posixpath.join(folder, name))


# -- entry point --------------------------------------------------------------------------------------------------

def apply_fixes(settings_like: dict, storage: Storage, day: dt.date, *, apply: bool, out=sys.stdout,
                timezone: str = "Asia/Shanghai", conf_file=None) -> int:
    """Dry run (``apply=False``) or apply D's corrections to the configured target; returns the exit status.

    ``settings_like`` is the ``[fixes]`` table (raw or parsed). Errors that
    stop the run raise ReconError (the CLI prints it and exits with its code).
    """
    cfg = parse_fixes_config(settings_like, conf_file)
    rows, times = read_corrections(storage, day)
    fixes = plan(rows, times)
    target = (DatabaseTarget if cfg["target"] == "database" else WebhookTarget)(cfg, timezone)
    d = day.isoformat()
    source = storage.uri("recon", d, "corrections.csv")
    mode = "APPLY" if apply else "dry run: nothing is changed"
    print(f"apply-fixes {d}: {len(fixes)} correction(s) from {source}", file=out)
    print(f"target: {target.describe()} ({mode})", file=out)
    if not fixes:
        print("nothing to apply", file=out)
        return 0
    results: list[Result] = []
    with target:
        if not apply:
            results = target.preview(fixes)
            for result in results:
                _print_result(result, out)
        else:
            target.prepare()
            finished = False
            try:
                for fix in fixes:
                    result = target.apply(fix)
                    results.append(result)
                    _print_result(result, out)
                finished = True
            finally:
                try:
                    write_ledger(storage, day, target.ledger_rows(day))
                except Exception as exc:
                    if finished:
                        raise ReconError(f"corrections were applied but the ledger {storage.uri(*ledger_path(day))} "
                                         f"could not be written: {exc}", date=d,
                                         hint="re-run apply-fixes --apply: it applies nothing twice and rewrites "
                                              "the ledger") from exc
                    print(f"warning: the ledger could not be written either: {exc}", file=out)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    if not apply:
        print(f"dry run: {summary}. Re-run with --apply to change the order system.", file=out)
        return 0
    ledger = storage.uri(*ledger_path(day))
    print(f"applied: {summary}. Ledger: {ledger}", file=out)
    if counts.get(SKIPPED_STATE_CHANGED) or counts.get(SKIPPED_NOT_FOUND):
        print("skipped corrections were left alone: the order changed since the reconciliation; "
              "check them by hand (their audit rows say what was found)", file=out)
    if counts.get(FAILED):
        print(f"{counts[FAILED]} correction(s) failed and were not recorded: re-run apply-fixes --apply to retry",
              file=out)
        return 1
    return 0


def _print_result(result: Result, out) -> None:
    fix = result.fix
    print(f"  {result.outcome:<26} {fix.describe()}  {result.detail}  key {fix.idempotency_key[:16]}", file=out)
