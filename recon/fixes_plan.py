"""apply-fixes' input: D's corrections.csv (and the channel times in discrepancies.csv) read from a published
result and validated into ``Fix`` values, the outcomes a target reports, and the ledger's columns."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

from core.errors import IntegrityError, UnavailableError
from core.storage import Storage
from schemas import csvio
from schemas.layout import is_reconciled, recon_dir
from schemas.money import MoneyError, format_money, parse_money
from schemas.outputs import CORRECTION_COLUMNS

MARK_PAID, MARK_REFUNDED = "MARK_PAID", "MARK_REFUNDED"
EXPECTED = {MARK_PAID: (("UNPAID", "CLOSED"), "PAID"), MARK_REFUNDED: (("PROCESSING", "FAILED"), "SUCCESS")}
APPLIED, ALREADY_APPLIED = "APPLIED", "ALREADY_APPLIED"
SKIPPED_STATE_CHANGED, SKIPPED_NOT_FOUND, FAILED = "SKIPPED_STATE_CHANGED", "SKIPPED_NOT_FOUND", "FAILED"
RECORDED_OUTCOMES = (APPLIED, SKIPPED_STATE_CHANGED, SKIPPED_NOT_FOUND)
LEDGER_COLUMNS = ("idempotency_key", "date", "channel", "order_no", "refund_no", "action", "amount",
                  "channel_txn_id", "applied_at", "outcome", "target")


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


def read_corrections(storage: Storage, day: dt.date) -> tuple[list[dict], dict]:
    """(rows of corrections.csv with their line numbers, channel times by key) of D's published result."""
    folder = recon_dir(day)
    if not is_reconciled(storage, day):
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
