"""apply-fixes' database target: conditional UPDATEs of the order system's PostgreSQL tables, with an audit row
per correction that makes each fix apply exactly once (the steps are in ``recon/fixes.py``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from decimal import Decimal

from core.errors import ConfigError, FatalError, UnavailableError
from recon.fixes_config import _secret
from recon.fixes_plan import (ALREADY_APPLIED, APPLIED, EXPECTED, FAILED, LEDGER_COLUMNS, MARK_PAID,
                              SKIPPED_NOT_FOUND, SKIPPED_STATE_CHANGED, Fix, Result)
from schemas.money import format_money


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
