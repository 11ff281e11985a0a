"""The cron job: one scheduled run with its lock, run manifest and alerts (bin/recon-cron runs this).

    python -m recon.cron cron --conf /etc/recon/pipeline.toml [--date D] [--channel NAME ...]
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

The parts live beside it: the ``[alerts]`` table, thresholds and webhook in
``recon.alerts``, the child process in ``recon.childrun``, what the manifest
holds in ``recon.runmanifest``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shlex
import socket
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recon.alerts import (AlertSettings, OpsConfigError, alert_payload, breaches, load_alerts, log_event,
                          parse_alerts, post_alert)
from recon.childrun import build_command, error_message, run_child
from recon.lock import RunLock
from recon.runmanifest import _file_sha256, _read_summary, collect_inputs, new_run_id, outcome_counts, versions
from schemas.layout import recon_dir

EXIT_ALREADY_RUNNING = 75   # sysexits.h EX_TEMPFAIL: not a failure of the pipeline, try again later


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


# -- the lock ----------------------------------------------------------------------------------------

def default_lock_file(conf_file: Path) -> str:
    """A local lock file per configuration (``flock`` needs a local file, never one on HDFS)."""
    digest = hashlib.sha256(str(conf_file).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"recon-cron-{digest}.lock")


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
        "summary": storage.uri(recon_dir(day), "summary.json") if published else None,
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
    parser = argparse.ArgumentParser(prog="python -m recon.cron", description="Operations: the cron job.")
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
    """Entry point of ``python -m recon.cron``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "cron":
        return cron(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
