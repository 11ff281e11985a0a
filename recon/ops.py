"""Operations around a run: the cron job, its run manifest and its alerts.

    python -m recon.ops cron --conf /etc/recon/pipeline.toml [--date D] [--channel NAME ...]
                             [--spark-submit] [--lock-file PATH] [--alerts-conf FILE] [--timeout-minutes N]

What ``cron`` does, in order:

1. takes an exclusive, non-blocking ``flock`` on a local lock file (one per
   configuration): a second instance exits at once with status 75
   (``EX_TEMPFAIL``: "try again later", distinct from every status of
   ``recon``) and says "already running". ``recon run`` also locks its
   storage root; when *that* lock is what stops the run, the status is 75 too.
2. picks D = yesterday in the business time zone unless ``--date`` is given,
   and always passes it explicitly, so a run started just before midnight
   cannot disagree with its manifest about the date;
3. runs ``recon run`` in a child process (or ``spark-submit jobs/run.py run``
   with ``--spark-submit`` / ``RECON_SPARK_SUBMIT=1``), relaying its output
   verbatim to stderr;
4. writes a run manifest to ``{root}/runs/{D}/{run-id}.json`` through
   :class:`core.storage.Storage` (so it works on ``hdfs://`` roots too):
   inputs and their checksums, versions, timings, exit status, and the
   outcome counts of the ``summary.json`` this run published;
5. POSTs an alert to the configured webhook when the run failed (non-zero
   status), was skipped because another run holds the lock, or left more
   MANUAL_REVIEW breaks than the configured thresholds allow.

Its own log lines go to stdout as JSON lines (``ts, level, event, date, …``);
nothing else is written to stdout, so a log shipper can parse every line.
Secrets (the webhook token, the webhook URL, which may itself carry a token)
are never logged: only the webhook's host is.

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

import argparse
import collections
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recon.lock import RunLock
from recon.net import is_loopback

PROJECT_DIR = Path(__file__).resolve().parent.parent
EXIT_ALREADY_RUNNING = 75   # sysexits.h EX_TEMPFAIL: not a failure of the pipeline, try again later
DEFAULT_URL_ENV = "RECON_ALERT_WEBHOOK_URL"
DEFAULT_TOKEN_ENV = "RECON_ALERT_TOKEN"
ALERT_KEYS = {"webhook_url", "webhook_url_env", "token_env", "ca_file", "max_manual_review_rows",
              "max_manual_review_amount", "timeout_seconds", "deadline_seconds"}
# What recon prints when it fails: these lines make the alert's message.
_ERROR_LINE = re.compile(r"^(recon: error|!! |.*already running)")


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


@dataclass
class CronConf:
    """What the cron wrapper needs from the pipeline conf, read leniently from the raw TOML.

    ``recon run`` validates the conf itself (and exits 2 if it is wrong); here
    a broken conf must not stop us from reporting that failure.
    """

    conf_file: Path
    raw: dict
    error: str | None = None

    @classmethod
    def read(cls, conf: str | os.PathLike) -> "CronConf":
        path = Path(conf).resolve()
        try:
            with path.open("rb") as fh:
                return cls(path, tomllib.load(fh))
        except FileNotFoundError:
            return cls(path, {}, error=f"configuration file not found: {path}")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return cls(path, {}, error=f"cannot read {path}: {exc}")

    @property
    def pipeline(self) -> dict:
        value = self.raw.get("pipeline", {})
        return value if isinstance(value, dict) else {}

    @property
    def timezone(self) -> str:
        tz = self.pipeline.get("timezone", "Asia/Shanghai")
        try:
            ZoneInfo(tz)
            return tz
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            return "Asia/Shanghai"  # recon run will reject it with exit 2; the default only names D

    @property
    def root(self) -> str | None:
        """The storage root URI, resolved as recon.config does (``RECON_ROOT`` overrides)."""
        from recon.config import resolve_location

        value = os.environ.get("RECON_ROOT") or self.pipeline.get("root")
        if not isinstance(value, str) or not value:
            return None
        return resolve_location(value, self.conf_file.parent)

    @property
    def spark(self) -> dict[str, str]:
        value = self.raw.get("spark", {})
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def load_alerts(cron_conf: CronConf, alerts_conf: str | None) -> AlertSettings:
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


# -- the lock ----------------------------------------------------------------------------------------

def default_lock_file(conf_file: Path) -> str:
    """A local lock file per configuration (``flock`` needs a local file, never one on HDFS)."""
    digest = hashlib.sha256(str(conf_file).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"recon-cron-{digest}.lock")


# -- the child run -----------------------------------------------------------------------------------

def spark_home() -> str:
    """``$SPARK_HOME``, else the installed pyspark package (which ships bin/spark-submit)."""
    if os.environ.get("SPARK_HOME"):
        return os.environ["SPARK_HOME"]
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise OpsConfigError("pyspark is not installed and SPARK_HOME is not set")
    return os.path.dirname(spec.origin)


def build_command(conf_file: Path, day: dt.date, *, channels: list[str] | None, spark_submit: bool,
                  submit_args: list[str], conf_spark: dict[str, str]) -> list[str]:
    """The child's argv: ``recon run`` in this interpreter, or ``spark-submit jobs/run.py run``.

    Under spark-submit the driver JVM is already started when our code reads
    the conf, so the settings that must be known before it starts (master,
    driver memory, driver JVM options) are passed on spark-submit's command
    line, taken from the conf's ``[spark]`` table (or the job's defaults)
    unless ``submit_args`` already gives them.
    """
    recon_args = ["run", "--conf", str(conf_file), "--date", day.isoformat()]
    for name in channels or []:
        recon_args += ["--channel", name]
    if not spark_submit:
        return [sys.executable, "-m", "recon.cli", *recon_args]
    cmd = [os.path.join(spark_home(), "bin", "spark-submit")]
    given = " ".join(submit_args)
    if "--master" not in given and conf_spark.get("spark.master"):
        cmd += ["--master", conf_spark["spark.master"]]
    if "--driver-memory" not in given and "spark.driver.memory" not in given and conf_spark.get("spark.driver.memory"):
        cmd += ["--driver-memory", conf_spark["spark.driver.memory"]]
    if "--driver-java-options" not in given and "spark.driver.extraJavaOptions" not in given:
        from jobs.spark import DEFAULTS
        cmd += ["--driver-java-options", conf_spark.get("spark.driver.extraJavaOptions",
                                                        DEFAULTS["spark.driver.extraJavaOptions"])]
    cmd += submit_args
    cmd += [str(PROJECT_DIR / "jobs" / "run.py"), *recon_args]
    return cmd


@dataclass
class ChildResult:
    exit_code: int
    tail: list[str]
    seconds: float
    timed_out: bool = False


def run_child(cmd: list[str], *, env: dict[str, str], timeout: float | None) -> ChildResult:
    """Run ``cmd`` in its own process group, relay its output to stderr, keep the last lines.

    Its own process group, so a timeout (or our own SIGTERM) stops the whole
    tree: spark-submit's JVM and the Python driver under it.
    """
    t0 = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=400)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT_DIR),
                            start_new_session=True)

    def relay():
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
        sys.stderr.flush()

    reader = threading.Thread(target=relay, name="child-output", daemon=True)
    reader.start()
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum, frame):  # cron or an operator stops us: stop the run too, then report
        stop_process_group(proc)

    signal.signal(signal.SIGTERM, forward)
    timed_out = False
    try:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process_group(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    reader.join(timeout=10)
    code = proc.returncode
    if code is None or code < 0 or timed_out:
        code = 1  # killed: "anything else" in DESIGN.md's statuses
    return ChildResult(code, list(tail), round(time.monotonic() - t0, 3), timed_out)


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a process group we started: TERM, then KILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def error_message(tail: list[str], limit: int = 2000) -> str:
    """The lines in which recon explained its failure (channel, date, file, what to do), joined."""
    lines = [ln.strip() for ln in tail if _ERROR_LINE.match(ln.strip())]
    if not lines:
        lines = [ln.strip() for ln in tail if ln.strip()][-5:]
    text = "\n".join(dict.fromkeys(lines))  # recon prints some failures twice (log + summary)
    return text[-limit:]


# -- manifest ----------------------------------------------------------------------------------------

def new_run_id(day: dt.date) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{day.isoformat()}-{stamp}-{uuid.uuid4().hex[:8]}"


def versions() -> dict:
    """python, pyspark, java, this project's version and git commit (each may be null, never fatal)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist, key in (("pyspark", "pyspark"), ("recon-pipeline", "recon_pipeline"), ("pyarrow", "pyarrow")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    out["java"] = _java_version()
    out["git_commit"], out["git_dirty"] = _git_commit()
    return out


def _java_version() -> str | None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (proc.stderr or proc.stdout).strip().splitlines()
    return first[0] if first else None


def _git_commit() -> tuple[str | None, bool | None]:
    """The checkout's commit; a deployed wheel has no .git, hence None."""
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=20)
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def manual_review(summary: dict) -> dict:
    """Rows and money of the MANUAL_REVIEW categories in a summary.json.

    The amount at stake of a category is the larger of its local and channel
    amounts (a one-sided break has only one side; for a mismatch the larger
    side bounds what may be wrong). Decimal strings: money is never a float.
    """
    from schemas.outputs import RESOLUTIONS

    rows, amount, by_category = 0, Decimal("0"), {}
    for channel, data in sorted((summary.get("channels") or {}).items()):
        for category, c in sorted((data.get("categories") or {}).items()):
            if RESOLUTIONS.get(category) != "MANUAL_REVIEW":
                continue
            at_stake = max(Decimal(c.get("local", {}).get("amount", "0")),
                           Decimal(c.get("channel", {}).get("amount", "0")))
            rows += int(c.get("rows", 0))
            amount += at_stake
            entry = by_category.setdefault(category, {"rows": 0, "amount": Decimal("0")})
            entry["rows"] += int(c.get("rows", 0))
            entry["amount"] += at_stake
    return {"rows": rows, "amount": f"{amount:.2f}",
            "by_category": {k: {"rows": v["rows"], "amount": f"{v['amount']:.2f}"} for k, v in by_category.items()}}


def outcome_counts(summary: dict) -> dict:
    """The counts a person looks at first, from summary.json."""
    channels = {}
    for name, data in sorted((summary.get("channels") or {}).items()):
        channels[name] = {
            "local": data.get("local"), "channel": data.get("channel"), "rejects": data.get("rejects"),
            "corrections": data.get("corrections"), "discrepancy_rows": data.get("discrepancy_rows"),
            "categories": {k: {"rows": v.get("rows"), "local_records": v.get("local", {}).get("records"),
                               "channel_records": v.get("channel", {}).get("records")}
                           for k, v in sorted((data.get("categories") or {}).items())},
        }
    return {
        "channels": channels,
        "discrepancy_rows": sum(int(c.get("discrepancy_rows") or 0) for c in channels.values()),
        "corrections": sum(int(c.get("corrections") or 0) for c in channels.values()),
        "manual_review": manual_review(summary),
        "roll_forward": summary.get("roll_forward"),
        "channels_reconciled": summary.get("channels_reconciled"),
        "channels_not_available": summary.get("channels_not_available"),
    }


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


def _read_summary(storage, day: dt.date) -> dict | None:
    path = ("recon", day.isoformat(), "summary.json")
    try:
        if storage.is_file(*path) and storage.is_file("recon", day.isoformat(), "_SUCCESS"):
            return storage.read_json(*path)
    except (OSError, ValueError):
        return None
    return None


def collect_inputs(storage, day: dt.date, summary: dict | None) -> list[dict]:
    """Every input of D with its checksum: the landed statements (raw manifests) and the local export.

    The raw manifests exist even when the reconciliation failed, so a failed
    run's manifest still says what had arrived.
    """
    inputs, seen = [], set()
    for channel in storage.list("raw"):
        if not storage.is_file("raw", channel, day.isoformat(), "_manifest.json"):
            continue
        try:
            manifest = storage.read_json("raw", channel, day.isoformat(), "_manifest.json")
        except (OSError, ValueError):
            continue
        for f in manifest.get("files", []):
            uri = storage.uri("raw", channel, day.isoformat(), f["name"])
            seen.add(uri)
            inputs.append({"kind": "statement", "channel": channel, "file": uri, "sha256": f.get("sha256"),
                           "size": f.get("size"), "source": f.get("source")})
    for item in (summary or {}).get("inputs", []):
        if item.get("file") not in seen:
            seen.add(item.get("file"))
            inputs.append(dict(item))
    local = ("local", day.isoformat())
    for name in storage.list(*local):
        uri = storage.uri(*local, name)
        if uri in seen or name.startswith((".", "_")) or not storage.is_file(*local, name):
            continue
        digest, size = storage.sha256(*local, name)
        inputs.append({"kind": "local_orders", "file": uri, "sha256": digest, "size": size})
    return inputs


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


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


# -- the cron command --------------------------------------------------------------------------------

def cron(args: argparse.Namespace) -> int:
    """One scheduled run: lock, run, manifest, alerts. Returns the exit status."""
    started = dt.datetime.now(dt.timezone.utc)
    cron_conf = CronConf.read(args.conf)
    try:
        alerts = load_alerts(cron_conf, args.alerts_conf or os.environ.get("RECON_ALERTS_CONF"))
    except OpsConfigError as exc:
        # a broken [alerts] must not silence the run: fall back to the default variables, and say so
        log_event("error", "alerts.config_error", message=str(exc))
        alerts = parse_alerts({})
        alert_conf_error = str(exc)
    else:
        alert_conf_error = None

    try:
        from core.dates import parse_date, yesterday

        day = parse_date(args.date) if args.date else yesterday(cron_conf.timezone)
    except Exception as exc:  # noqa: BLE001 - a bad --date is a configuration error (exit 2), reported
        day, message = None, f"bad --date: {exc}"
        log_event("error", "cron.bad_arguments", message=message, exit_code=2)
        post_alert(alerts, alert_payload("run_failed", day=None, exit_code=2, message=message, run_id="",
                                         conf=cron_conf.conf_file))
        return 2
    run_id = new_run_id(day)
    base = {"date": day.isoformat(), "run_id": run_id}
    lock = RunLock(path=args.lock_file or os.environ.get("RECON_CRON_LOCK") or default_lock_file(cron_conf.conf_file),
                   what="recon-cron")
    if not lock.try_acquire():
        message = f"already running: {lock.holder} holds {lock.path}"
        print(f"recon-cron: {message}; this run is skipped (exit {EXIT_ALREADY_RUNNING})", file=sys.stderr)
        log_event("warning", "cron.already_running", exit_code=EXIT_ALREADY_RUNNING, message=message, **base)
        post_alert(alerts, alert_payload("already_running", day=day, exit_code=EXIT_ALREADY_RUNNING,
                                         message=message, run_id=run_id, conf=cron_conf.conf_file))
        return EXIT_ALREADY_RUNNING
    try:
        return _locked_run(args, cron_conf, alerts, alert_conf_error, day, run_id, started, base)
    finally:
        lock.release()


def _locked_run(args, cron_conf: CronConf, alerts: AlertSettings, alert_conf_error: str | None, day: dt.date,
                run_id: str, started: dt.datetime, base: dict) -> int:
    from core.storage import Storage

    spark_submit = args.spark_submit or os.environ.get("RECON_SPARK_SUBMIT", "") in ("1", "true", "yes")
    submit_args = shlex.split(os.environ.get("RECON_SPARK_SUBMIT_ARGS", "")) + list(args.submit_arg or [])
    cmd = build_command(cron_conf.conf_file, day, channels=args.channels, spark_submit=spark_submit,
                        submit_args=submit_args, conf_spark=cron_conf.spark)
    env = dict(os.environ)
    if spark_submit:
        # the driver spark-submit starts must be this interpreter (it has the project installed)
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    env["RECON_CRON_RUN_ID"] = run_id

    storage, root_error = None, None
    try:
        root = cron_conf.root
        storage = Storage(root) if root else None
        if storage is None:
            root_error = "no [pipeline] root in the configuration"
    except Exception as exc:  # noqa: BLE001 - an unusable root: the run will fail and say why; we still alert
        root_error = f"{type(exc).__name__}: {exc}"
    before = _read_summary(storage, day) if storage else None

    log_event("info", "run.start", mode="spark-submit" if spark_submit else "local", conf=str(cron_conf.conf_file),
              channels=args.channels, **base)
    timeout = args.timeout_minutes * 60 if args.timeout_minutes else None
    child = run_child(cmd, env=env, timeout=timeout)
    code = child.exit_code
    message = error_message(child.tail) if code else ""
    if child.timed_out:
        message = f"stopped after --timeout-minutes {args.timeout_minutes}\n{message}".strip()
    event = "run_failed"
    if code == 1 and "already running" in message:
        code, event = EXIT_ALREADY_RUNNING, "already_running"   # recon's own per-root lock stopped it
    finished = dt.datetime.now(dt.timezone.utc)

    after = _read_summary(storage, day) if storage else None
    # Only a summary this run published counts; an older one (the run failed before publishing) is stale.
    published = after if after and (before is None or after.get("run_id") != before.get("run_id")) else None
    counts = outcome_counts(published) if published else None
    reasons = breaches(counts, alerts) if counts else []

    manifest = {
        "run_id": run_id, "date": day.isoformat(), "recon_run_id": published.get("run_id") if published else None,
        "outcome": "ok" if code == 0 else ("skipped" if code == EXIT_ALREADY_RUNNING else "failed"),
        "exit_code": code, "message": message or None, "timed_out": child.timed_out,
        "mode": "spark-submit" if spark_submit else "local", "command": cmd,
        "conf": {"file": str(cron_conf.conf_file), "sha256": _file_sha256(cron_conf.conf_file)},
        "host": socket.gethostname(), "user": _user(), "pid": os.getpid(),
        "started_at": started.isoformat(timespec="seconds"), "finished_at": finished.isoformat(timespec="seconds"),
        "timings": {"total_seconds": round((finished - started).total_seconds(), 3), "child_seconds": child.seconds,
                    **((published or {}).get("timings") or {})},
        "versions": versions(),
        "inputs": collect_inputs(storage, day, published) if storage else [],
        "summary": storage.uri("recon", day.isoformat(), "summary.json") if published else None,
        "counts": counts, "threshold_breaches": reasons,
        "alerts": {"webhook_host": alerts.webhook_host, "config_error": alert_conf_error,
                   "max_manual_review_rows": alerts.max_manual_review_rows,
                   "max_manual_review_amount": (str(alerts.max_manual_review_amount)
                                                if alerts.max_manual_review_amount is not None else None)},
    }
    manifest_uri = None
    if storage is not None:
        try:
            storage.write_json(manifest, "runs", day.isoformat(), f"{run_id}.json")
            manifest_uri = storage.uri("runs", day.isoformat(), f"{run_id}.json")
            log_event("info", "manifest.written", manifest=manifest_uri, **base)
        except Exception as exc:  # noqa: BLE001 - a manifest that cannot be written must not hide the outcome
            log_event("error", "manifest.failed", problem=f"{type(exc).__name__}: {exc}", **base)
    else:
        log_event("error", "manifest.skipped", problem=root_error, **base)

    level = "info" if code == 0 else "error"
    log_event(level, "run.end", exit_code=code, outcome=manifest["outcome"], seconds=manifest["timings"]["total_seconds"],
              manual_review_rows=counts["manual_review"]["rows"] if counts else None,
              manual_review_amount=counts["manual_review"]["amount"] if counts else None,
              message=message or None, manifest=manifest_uri, **base)
    if code != 0:
        post_alert(alerts, alert_payload(event, day=day, exit_code=code, message=message, run_id=run_id,
                                         conf=cron_conf.conf_file, manifest=manifest_uri, counts=counts))
    elif reasons:
        log_event("warning", "breaks.above_threshold", reasons=reasons, **base)
        post_alert(alerts, alert_payload("breaks_above_threshold", day=day, exit_code=code, message="; ".join(reasons),
                                         run_id=run_id, conf=cron_conf.conf_file, manifest=manifest_uri,
                                         counts=counts, reasons=reasons))
    return code


def _user() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recon.ops", description="Operations: the cron job.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cron", help="one scheduled run: lock, recon run, manifest, alerts")
    p.add_argument("--conf", default=os.environ.get("RECON_CONF", "conf/pipeline.toml"),
                   help="pipeline configuration (default: $RECON_CONF or conf/pipeline.toml)")
    p.add_argument("--date", help="business date YYYY-MM-DD (default: yesterday in the business time zone)")
    p.add_argument("--channel", action="append", dest="channels", metavar="NAME", help="only this channel")
    p.add_argument("--spark-submit", action="store_true",
                   help="run through spark-submit jobs/run.py (also: RECON_SPARK_SUBMIT=1); extra spark-submit "
                        "arguments from $RECON_SPARK_SUBMIT_ARGS or --submit-arg")
    p.add_argument("--submit-arg", action="append", metavar="ARG", help="one more spark-submit argument (repeatable)")
    p.add_argument("--lock-file", help="local lock file (default: $RECON_CRON_LOCK or one per conf in the temp dir)")
    p.add_argument("--alerts-conf", help="a TOML file with the [alerts] table (default: $RECON_ALERTS_CONF, "
                                         "else the pipeline conf's [alerts])")
    p.add_argument("--timeout-minutes", type=float, help="stop the run (and alert) after this long")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m recon.ops``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "cron":
        return cron(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
