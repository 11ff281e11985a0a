"""apply-fixes: carry D's auto-fixes (corrections.csv) into the order system, each exactly once.

This module runs it (``apply_fixes``) and keeps the ledger under {root}; the ``[fixes]`` table is validated in
``recon.fixes_config``, corrections.csv read and checked in ``recon.fixes_plan``, and the two targets are
``recon.fixes_database`` and ``recon.fixes_webhook``.

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

import datetime as dt
import posixpath
import sys
import uuid

from core.errors import ReconError
from core.storage import Storage
from recon.fixes_config import parse_fixes_config
from recon.fixes_database import DatabaseTarget
from recon.fixes_plan import (FAILED, LEDGER_COLUMNS, SKIPPED_NOT_FOUND, SKIPPED_STATE_CHANGED, Result, _read_csv,
                              plan, read_corrections)
from recon.fixes_webhook import WebhookTarget
from schemas import csvio
from schemas.layout import recon_dir


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
    source = storage.uri(recon_dir(day), "corrections.csv")
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
