"""Alerts of the cron job: the ``[alerts]`` table, the thresholds on breaks, the webhook POST, and the
JSON log lines the cron job writes on stdout.

The ``[alerts]`` table (in the pipeline conf, or in a separate file given by
``--alerts-conf`` / ``$RECON_ALERTS_CONF``)::

    [alerts]
    webhook_url_env = "RECON_ALERT_WEBHOOK_URL"   # or webhook_url = "https://…" (not secret-bearing URLs!)
    token_env = "RECON_ALERT_TOKEN"               # sent as "Authorization: Bearer …" when set
    ca_file = "/etc/ssl/private-ca.pem"           # optional: a private CA; TLS is always verified
    max_manual_review_rows = 50                   # alert when the date has more MANUAL_REVIEW rows
    max_manual_review_amount = "10000.00"         # ... or more MANUAL_REVIEW money at stake (quoted decimal)
    timeout_seconds = 10                          # per attempt (connect and read)
    deadline_seconds = 30                         # all attempts together: an alert never holds cron up for long
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import time
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlparse

from recon.net import is_loopback

DEFAULT_URL_ENV = "RECON_ALERT_WEBHOOK_URL"
DEFAULT_TOKEN_ENV = "RECON_ALERT_TOKEN"
ALERT_KEYS = {"webhook_url", "webhook_url_env", "token_env", "ca_file", "max_manual_review_rows",
              "max_manual_review_amount", "timeout_seconds", "deadline_seconds"}


class OpsConfigError(Exception):
    """The [alerts] table (or the cron's own arguments) is wrong."""


# -- structured logging ------------------------------------------------------------------------------

def log_event(level: str, event: str, **fields) -> None:
    """One JSON line on stdout: ``ts``, ``level``, ``event`` and the given fields (never secrets)."""
    record = {"ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "level": level,
              "event": event}
    record.update({k: v for k, v in fields.items() if v is not None})
    sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


# -- configuration -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and when breaks are worth one."""

    webhook_url: str | None = field(default=None, repr=False)   # may embed a secret: kept out of repr and logs
    token: str | None = field(default=None, repr=False)         # in memory only; never logged, never written
    ca_file: str | None = None
    max_manual_review_rows: int | None = None
    max_manual_review_amount: Decimal | None = None
    timeout_seconds: float = 10.0
    deadline_seconds: float = 30.0

    @property
    def webhook_host(self) -> str | None:
        """What may be logged about the webhook: its host, never the full URL (it may embed a token)."""
        return urlparse(self.webhook_url).hostname if self.webhook_url else None


def parse_alerts(table: dict, where: str = "[alerts]", base: Path | None = None,
                 environ=os.environ) -> AlertSettings:
    """Validate an ``[alerts]`` table; the URL and token are looked up in ``environ``.

    Without a table, the default variables (``RECON_ALERT_WEBHOOK_URL``,
    ``RECON_ALERT_TOKEN``) still work, so even a run whose configuration cannot
    be read can report that.
    """
    unknown = sorted(set(table) - ALERT_KEYS)
    if unknown:
        raise OpsConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(ALERT_KEYS))}")
    if "webhook_url" in table and "webhook_url_env" in table:
        raise OpsConfigError(f"{where}: give webhook_url or webhook_url_env, not both")
    url = table.get("webhook_url") or environ.get(table.get("webhook_url_env", DEFAULT_URL_ENV)) or None
    if url:
        _check_webhook_url(url, where)
    token = environ.get(table.get("token_env", DEFAULT_TOKEN_ENV)) or None
    rows = table.get("max_manual_review_rows")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 0):
        raise OpsConfigError(f"{where}: max_manual_review_rows must be a non-negative integer, got {rows!r}")
    amount = table.get("max_manual_review_amount")
    if amount is not None:
        if isinstance(amount, float):
            raise OpsConfigError(f"{where}: max_manual_review_amount must be a quoted decimal such as \"10000.00\"")
        try:
            amount = Decimal(str(amount))
        except InvalidOperation:
            raise OpsConfigError(f"{where}: max_manual_review_amount is not a decimal: {amount!r}") from None
    ca_file = table.get("ca_file")
    if ca_file and base is not None:
        ca_file = str((base / ca_file).resolve())
    timeout = float(table.get("timeout_seconds", 10))
    deadline = float(table.get("deadline_seconds", 30))
    if not 0 < timeout <= 120 or not 0 < deadline <= 600:
        raise OpsConfigError(f"{where}: timeout_seconds must be in (0, 120] and deadline_seconds in (0, 600]")
    return AlertSettings(webhook_url=url, token=token, ca_file=ca_file, max_manual_review_rows=rows,
                         max_manual_review_amount=amount, timeout_seconds=timeout, deadline_seconds=deadline)


def _check_webhook_url(url: str, where: str) -> None:
    """https only (TLS verified); plain http only to a loopback address (a local relay, tests)."""
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        return
    if parsed.scheme == "http" and parsed.hostname and is_loopback(parsed.hostname):
        return
    # the URL itself is not echoed: it may carry a secret
    raise OpsConfigError(f"{where}: the webhook URL must be https:// (plain http only to a loopback address)")


def load_alerts(cron_conf, alerts_conf: str | None) -> AlertSettings:
    """``[alerts]`` from ``alerts_conf`` when given, else from the pipeline conf."""
    if alerts_conf:
        path = Path(alerts_conf).resolve()
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise OpsConfigError(f"cannot read alerts configuration {path}: {exc}") from exc
        return parse_alerts(data.get("alerts", {}), f"[alerts] of {path}", path.parent)
    return parse_alerts(cron_conf.raw.get("alerts", {}), f"[alerts] of {cron_conf.conf_file}",
                        cron_conf.conf_file.parent)


def breaches(counts: dict, alerts: AlertSettings) -> list[str]:
    """Why the breaks deserve an alert (empty: they do not)."""
    reasons = []
    mr = counts["manual_review"]
    if alerts.max_manual_review_rows is not None and mr["rows"] > alerts.max_manual_review_rows:
        reasons.append(f"{mr['rows']} MANUAL_REVIEW rows > max_manual_review_rows {alerts.max_manual_review_rows}")
    if alerts.max_manual_review_amount is not None and Decimal(mr["amount"]) > alerts.max_manual_review_amount:
        reasons.append(f"MANUAL_REVIEW amount {mr['amount']} > max_manual_review_amount "
                       f"{alerts.max_manual_review_amount}")
    return reasons


# -- alerts ------------------------------------------------------------------------------------------

def post_alert(alerts: AlertSettings, payload: dict) -> bool:
    """POST ``payload`` as JSON to the webhook; True when it answered 2xx.

    TLS is always verified (a private CA goes in ``ca_file``). Each attempt
    has connect and read timeouts, and all attempts together a deadline: an
    alert must never hold the next night's run up. Retried only on
    connection errors, timeouts and 5xx; a 4xx will not get better.
    """
    import requests

    if not alerts.webhook_url:
        log_event("warning", "alert.not_configured", reason=payload.get("event"), date=payload.get("date"),
                  message="no webhook configured ([alerts] webhook_url_env or $RECON_ALERT_WEBHOOK_URL)")
        return False
    headers = {"Content-Type": "application/json", "User-Agent": "recon-cron",
               "X-Recon-Run-Id": str(payload.get("run_id", ""))}
    if alerts.token:
        headers["Authorization"] = f"Bearer {alerts.token}"
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    deadline = time.monotonic() + alerts.deadline_seconds
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        timeout = max(0.5, min(alerts.timeout_seconds, left))
        try:
            resp = requests.post(alerts.webhook_url, data=body, headers=headers, timeout=(timeout, timeout),
                                 verify=alerts.ca_file or True, allow_redirects=False)
            if 200 <= resp.status_code < 300:
                log_event("info", "alert.sent", reason=payload.get("event"), date=payload.get("date"),
                          webhook_host=alerts.webhook_host, status=resp.status_code, attempt=attempt)
                return True
            problem, retriable = f"HTTP {resp.status_code}", resp.status_code >= 500
        except requests.exceptions.SSLError as exc:
            problem, retriable = f"TLS verification failed: {type(exc).__name__}", False
        except requests.exceptions.RequestException as exc:
            # the exception text may repeat the URL (and a token in it): log only its type
            problem, retriable = type(exc).__name__, True
        if not retriable or time.monotonic() + 2 > deadline:
            log_event("error", "alert.failed", reason=payload.get("event"), date=payload.get("date"),
                      webhook_host=alerts.webhook_host, problem=problem, attempt=attempt)
            return False
        log_event("warning", "alert.retry", webhook_host=alerts.webhook_host, problem=problem, attempt=attempt)
        time.sleep(min(2.0 * attempt, max(0.0, deadline - time.monotonic() - 1)))


def alert_payload(event: str, *, day: dt.date | None, exit_code: int, message: str, run_id: str, conf: Path,
                  manifest: str | None = None, counts: dict | None = None, reasons: list[str] | None = None) -> dict:
    """The JSON an alert carries: what happened, to which date, how to look further."""
    severity = "warning" if event in ("breaks_above_threshold", "already_running") else "error"
    payload = {"source": "recon", "event": event, "severity": severity, "date": day.isoformat() if day else None,
               "exit_code": exit_code, "message": message, "run_id": run_id, "host": socket.gethostname(),
               "conf": str(conf), "manifest": manifest}
    if counts is not None:
        payload["manual_review"] = counts["manual_review"]
        payload["channels_not_available"] = counts.get("channels_not_available")
    if reasons:
        payload["reasons"] = reasons
    return payload
