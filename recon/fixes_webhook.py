"""apply-fixes' webhook target: each correction POSTed with an Idempotency-Key, successes kept in a local,
fsynced ledger file so a second run posts nothing."""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import os
from urllib.parse import urlsplit

from core.errors import FatalError, ReconError, UnavailableError
from recon.fixes_config import _secret
from recon.fixes_plan import ALREADY_APPLIED, APPLIED, FAILED, LEDGER_COLUMNS, RECORDED_OUTCOMES, Fix, Result
from schemas import csvio
from schemas.money import format_money


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
