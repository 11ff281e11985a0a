"""bin/recon-cron as cron runs it: real processes, a real lock, a real webhook server on loopback.

One Spark run in the whole module (two wrappers started at once: one runs, the
other is turned away); the failing runs stop before Spark starts, so they are fast.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recon.cron import EXIT_ALREADY_RUNNING

PROJECT = Path(__file__).resolve().parent.parent
CRON = PROJECT / "bin" / "recon-cron"
DAY = "2026-11-20"
TOKEN = "s3cret-alert-token-do-not-log"


class Webhook:
    """A real HTTP server on 127.0.0.1 that records every POST (headers and JSON body)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/recon"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, name: str) -> list[dict]:
        return [r for r in self.received if r["json"]["event"] == name]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def _demo(folder: Path, *, max_rows: int | None = None) -> Path:
    """A one-day demo and an alerts file beside its conf; returns the pipeline conf."""
    from recon.demo import Demo

    Demo(dt.date(2026, 11, 20), 1, orders_per_day=20).build().write(folder)
    lines = ["[alerts]", 'webhook_url_env = "TEST_RECON_WEBHOOK"', 'token_env = "TEST_RECON_TOKEN"']
    if max_rows is not None:
        lines += [f"max_manual_review_rows = {max_rows}", 'max_manual_review_amount = "1000000.00"']
    (folder / "conf" / "alerts.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "conf" / "pipeline.toml"


def _start(conf: Path, webhook: Webhook, *extra: str) -> subprocess.Popen:
    # The [alerts] table sits in its own file until recon/config.py accepts it in the pipeline conf.
    env = dict(os.environ, TEST_RECON_WEBHOOK=webhook.url, TEST_RECON_TOKEN=TOKEN,
               RECON_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    return subprocess.Popen([str(CRON), "--conf", str(conf), "--date", DAY,
                             "--alerts-conf", str(conf.parent / "alerts.toml"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/")


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, list[dict], str]:
    out, err = proc.communicate(timeout=timeout)
    # every stdout line is a structured log line
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    for e in events:
        assert {"ts", "level", "event"} <= set(e), e
        dt.datetime.fromisoformat(e["ts"])
    assert TOKEN not in out and TOKEN not in err, "the alert token leaked into the logs"
    return proc.returncode, events, err


def _manifest(events: list[dict]) -> dict:
    uri = next(e["manifest"] for e in events if e["event"] == "manifest.written")
    assert uri.startswith("file://")
    return json.loads(Path(uri[len("file://"):]).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def overlapping_runs(tmp_path_factory, webhook):
    """Two wrappers started at once on the same demo: (winner, loser) as (code, events, stderr, seconds)."""
    conf = _demo(tmp_path_factory.mktemp("cron") / "demo", max_rows=3)
    lock = str(conf.parent / "cron.lock")
    t0 = time.monotonic()
    procs = [_start(conf, webhook, "--lock-file", lock) for _ in range(2)]
    results = {}

    def wait(i):
        results[i] = (*_finish(procs[i]), time.monotonic() - t0)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = [r for r in results.values() if r[0] != EXIT_ALREADY_RUNNING]
    skipped = [r for r in results.values() if r[0] == EXIT_ALREADY_RUNNING]
    assert len(ran) == 1 and len(skipped) == 1, [(r[0], r[2][-2000:]) for r in results.values()]
    return ran[0], skipped[0], conf


def test_second_run_is_turned_away_at_once(overlapping_runs, webhook):
    (code, events, err, seconds), (skip_code, skip_events, skip_err, skip_seconds), _ = overlapping_runs
    assert code == 0, err[-3000:]
    assert skip_code == EXIT_ALREADY_RUNNING
    assert "already running" in skip_err
    turned_away = [e for e in skip_events if e["event"] == "cron.already_running"]
    assert turned_away and "already running" in turned_away[0]["message"] and turned_away[0]["date"] == DAY
    assert skip_seconds < 30 and skip_seconds < seconds   # it did not wait for the lock
    # the skipped run touched nothing: no run.start, no manifest
    assert not [e for e in skip_events if e["event"] in ("run.start", "manifest.written")]
    alert = webhook.events("already_running")
    assert alert and alert[0]["json"]["exit_code"] == EXIT_ALREADY_RUNNING


def test_structured_log_lines(overlapping_runs):
    (code, events, err, _), _, _ = overlapping_runs
    names = [e["event"] for e in events]
    assert names[0] == "run.start" and "manifest.written" in names and "run.end" in names
    end = next(e for e in events if e["event"] == "run.end")
    assert end["date"] == DAY and end["exit_code"] == 0 and end["level"] == "info"
    assert end["manual_review_rows"] > 3
    assert "published" in err   # recon's own output is relayed to stderr, untouched


def test_manifest_records_inputs_versions_timings_counts(overlapping_runs):
    (code, events, _, _), _, conf = overlapping_runs
    manifest = _manifest(events)
    root = conf.parent.parent / "root"
    assert manifest["date"] == DAY and manifest["exit_code"] == 0 and manifest["outcome"] == "ok"
    assert manifest["run_id"] in str(next(root.glob(f"runs/{DAY}/*.json")))
    summary = json.loads((root / "recon" / DAY / "summary.json").read_text(encoding="utf-8"))
    assert manifest["recon_run_id"] == summary["run_id"]
    kinds = {(i["kind"], i.get("channel")) for i in manifest["inputs"]}
    assert {("statement", "wechatpay"), ("statement", "alipay"), ("local_orders", None)} <= kinds
    import hashlib
    for item in manifest["inputs"]:
        path = Path(item["file"][len("file://"):])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"], item
    v = manifest["versions"]
    assert v["python"] and v["pyspark"] and v["java"]
    assert v["git_commit"] is None or len(v["git_commit"]) == 40
    t = manifest["timings"]
    assert t["total_seconds"] >= t["child_seconds"] > 0 and "reconcile_seconds" in t
    counts = manifest["counts"]
    assert counts["channels_reconciled"] == ["alipay", "wechatpay"]
    assert counts["discrepancy_rows"] == sum(c["discrepancy_rows"] for c in summary["channels"].values())
    assert counts["manual_review"]["rows"] > 3 and "." in counts["manual_review"]["amount"]
    assert TOKEN not in json.dumps(manifest)


def test_breaks_above_threshold_alert(overlapping_runs, webhook):
    (_, events, _, _), _, _ = overlapping_runs
    alerts = webhook.events("breaks_above_threshold")
    assert len(alerts) == 1
    body, headers = alerts[0]["json"], alerts[0]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert body["date"] == DAY and body["exit_code"] == 0
    assert "max_manual_review_rows 3" in body["message"]
    assert body["manual_review"]["rows"] > 3
    assert body["manifest"].endswith(".json")


def test_missing_statements_alert_with_exit_3(tmp_path, webhook):
    conf = _demo(tmp_path / "demo")
    for bill in (tmp_path / "demo" / "inbox").glob("*/*"):
        bill.unlink()   # no channel has published: nothing to reconcile, no Spark started
    before = len(webhook.received)
    code, events, err = _finish(_start(conf, webhook, "--lock-file", str(tmp_path / "cron.lock")), timeout=180)
    assert code == 3, err[-3000:]
    new = webhook.received[before:]
    assert len(new) == 1
    body = new[0]["json"]
    assert new[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert new[0]["headers"]["Content-Type"] == "application/json"
    assert body["event"] == "run_failed" and body["date"] == DAY and body["exit_code"] == 3
    assert "wechatpay" in body["message"] and "unavailable" in body["message"]
    manifest = _manifest(events)
    assert manifest["outcome"] == "failed" and manifest["counts"] is None   # nothing published by this run
    assert [i["kind"] for i in manifest["inputs"]] == ["local_orders"]
    assert next(e for e in events if e["event"] == "run.end")["level"] == "error"


def test_bad_configuration_alerts_with_exit_2(tmp_path, webhook):
    conf = _demo(tmp_path / "demo")
    conf.write_text(conf.read_text(encoding="utf-8").replace("[pipeline]\n", "[pipeline]\nrooot = \"typo\"\n"),
                    encoding="utf-8")
    before = len(webhook.received)
    code, events, err = _finish(_start(conf, webhook, "--lock-file", str(tmp_path / "cron.lock")), timeout=180)
    assert code == 2, err[-3000:]
    body = webhook.received[before:][0]["json"]
    assert body["exit_code"] == 2 and body["date"] == DAY and "rooot" in body["message"]
