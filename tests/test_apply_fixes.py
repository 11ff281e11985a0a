"""apply-fixes against a real PostgreSQL (and a real HTTPS webhook on 127.0.0.1): dry run, apply once, races."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import ssl
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.errors import ConfigError, IntegrityError, UnavailableError
from core.storage import Storage
from recon.fixes import apply_fixes
from recon.fixes_config import parse_fixes_config
from recon.fixes_plan import LEDGER_COLUMNS, plan
from schemas import csvio
from schemas.outputs import CORRECTION_COLUMNS, DISCREPANCY_COLUMNS

D = dt.date(2026, 11, 20)
TZ = "Asia/Shanghai"
PASSWORD_VAR = "RECON_TEST_FIXES_DB_PASSWORD"

SCHEMA = """
CREATE TABLE orders (order_no text NOT NULL, channel text NOT NULL, currency char(3) NOT NULL,
                     amount numeric(18,2) NOT NULL, status text NOT NULL, created_at timestamp NOT NULL,
                     paid_at timestamp, PRIMARY KEY (channel, order_no));
CREATE TABLE refunds (order_no text NOT NULL, refund_no text NOT NULL, channel text NOT NULL, currency char(3) NOT NULL,
                      amount numeric(18,2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL,
                      paid_at timestamptz, PRIMARY KEY (channel, order_no, refund_no));
INSERT INTO orders VALUES
  ('S1', 'wechatpay', 'CNY', 10.00, 'UNPAID', '2026-11-20 10:00:00', NULL),
  ('S2', 'wechatpay', 'CNY', 20.00, 'CLOSED', '2026-11-20 11:00:00', NULL),
  ('S3', 'wechatpay', 'CNY', 30.00, 'UNPAID', '2026-11-20 12:00:00', NULL),
  ('S4', 'wechatpay', 'CNY',  5.00, 'PAID',   '2026-11-20 13:00:00', '2026-11-20 13:00:09'),
  ('S1', 'alipay',    'CNY', 10.00, 'UNPAID', '2026-11-20 10:00:00', NULL);
INSERT INTO refunds VALUES
  ('S0', 'RF5', 'wechatpay', 'CNY', 7.50, 'PROCESSING', '2026-11-20 14:00:00', NULL),
  ('S0', 'RF6', 'wechatpay', 'CNY', 8.00, 'FAILED',     '2026-11-20 15:00:00', NULL);
"""
# (channel, txn_type, order_no, refund_no, action, amount, channel time)
CORRECTIONS = [
    ("wechatpay", "PAYMENT", "S1", "", "MARK_PAID", "10.00", "2026-11-20 10:00:06"),
    ("wechatpay", "PAYMENT", "S2", "", "MARK_PAID", "20.00", ""),
    ("wechatpay", "PAYMENT", "S3", "", "MARK_PAID", "30.00", "2026-11-20 12:00:07"),
    ("wechatpay", "REFUND", "S0", "RF5", "MARK_REFUNDED", "7.50", "2026-11-20 14:00:05"),
    ("wechatpay", "REFUND", "S0", "RF6", "MARK_REFUNDED", "8.00", "2026-11-20 23:59:58"),
]


def key_of(channel, txn_type, order_no, refund_no, action) -> str:
    return hashlib.sha256("|".join((channel, txn_type, order_no, refund_no, action)).encode()).hexdigest()


KEYS = {c[2] + c[3]: key_of(*c[:5]) for c in CORRECTIONS}


def publish_result(root: Path, corrections=CORRECTIONS) -> Storage:
    """A published recon/{D}/ folder with corrections.csv and the matching discrepancies rows."""
    storage = Storage(root.as_uri())
    folder = f"recon/{D}"
    with storage.open_text_write(folder, "corrections.csv") as fh:
        csvio.write_rows(fh, CORRECTION_COLUMNS, [
            (D.isoformat(), ch, o, r, a, amt, f"42{o}{r}", key_of(ch, t, o, r, a))
            for ch, t, o, r, a, amt, _ in corrections])
    with storage.open_text_write(folder, "discrepancies.csv") as fh:
        rows = []
        for ch, t, o, r, a, amt, when in corrections:
            cat = "LOCAL_UNPAID_CHANNEL_PAID" if a == "MARK_PAID" else "LOCAL_NOT_REFUNDED_CHANNEL_REFUNDED"
            row = dict.fromkeys(DISCREPANCY_COLUMNS, "")
            row.update(date=D.isoformat(), channel=ch, category=cat, resolution="AUTO_FIXED", order_no=o,
                       refund_no=r, channel_amount=amt, channel_time=when)
            rows.append([row[c] for c in DISCREPANCY_COLUMNS])
        csvio.write_rows(fh, DISCREPANCY_COLUMNS, rows)
    storage.write_bytes(b"", folder, "_SUCCESS")
    return storage


@pytest.fixture
def shop(pg_db, monkeypatch):  # noqa: F811
    with pg_db.connect() as conn:
        conn.execute(f"SET TIME ZONE '{TZ}'")
        conn.execute(SCHEMA)
    monkeypatch.setenv(PASSWORD_VAR, pg_db.password)
    return pg_db


def db_conf(db, **extra) -> dict:
    return dict({"target": "database", "dsn": db.conninfo.replace(f" user={db.user}", ""), "user": db.user,
                 "password_env": PASSWORD_VAR}, **extra)


def snapshot(db) -> dict:
    """Every order and refund row, times as text in the business zone."""
    with db.connect() as conn:
        conn.execute(f"SET TIME ZONE '{TZ}'")
        rows = conn.execute("SELECT 'O', channel, order_no, '', status, amount, "
                            "to_char(paid_at, 'YYYY-MM-DD HH24:MI:SS') FROM orders UNION ALL "
                            "SELECT 'R', channel, order_no, refund_no, status, amount, "
                            "to_char(paid_at, 'YYYY-MM-DD HH24:MI:SS') FROM refunds").fetchall()
    return {r[:4]: r[4:] for r in rows}


def audit(db) -> dict:
    with db.connect() as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT idempotency_key, outcome, order_no, refund_no, amount FROM recon_applied_corrections")}


def run(conf, storage, *, apply) -> tuple[int, str]:
    out = io.StringIO()
    code = apply_fixes(conf, storage, D, apply=apply, out=out, timezone=TZ)
    return code, out.getvalue()


def listed(text: str, outcome: str) -> int:
    """How many corrections the report lists with this outcome."""
    return sum(1 for line in text.splitlines() if line.split()[:1] == [outcome] and line.startswith("  "))


def ledger(storage) -> list[dict]:
    with storage.open_read("corrections", "applied", f"{D}.csv") as fh:
        header, rows = csvio.read_rows(io.TextIOWrapper(fh, encoding="utf-8", newline=""))
    assert tuple(header) == LEDGER_COLUMNS
    return [dict(zip(header, r)) for r in rows]


def test_dry_run_changes_nothing_and_prints_the_plan(shop, tmp_path):
    storage = publish_result(tmp_path / "root")
    before = snapshot(shop)
    code, text = run(db_conf(shop), storage, apply=False)
    assert code == 0
    assert snapshot(shop) == before
    assert listed(text, "WOULD_APPLY") == 5 and "dry run" in text and "--apply" in text
    assert "orders.status UNPAID/CLOSED -> PAID, paid_at = 2026-11-20 10:00:06" in text
    assert "refunds.status PROCESSING/FAILED -> SUCCESS" in text
    assert shop.password not in text
    with shop.connect() as conn:  # not even the audit table is created
        assert conn.execute("SELECT to_regclass('recon_applied_corrections')").fetchone()[0] is None
    assert not storage.exists("corrections")


def test_apply_changes_exactly_the_expected_rows_and_a_second_run_none(shop, tmp_path):
    storage = publish_result(tmp_path / "root")
    before = snapshot(shop)
    code, text = run(db_conf(shop), storage, apply=True)
    assert code == 0, text
    after = snapshot(shop)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {("O", "wechatpay", "S1", ""), ("O", "wechatpay", "S2", ""), ("O", "wechatpay", "S3", ""),
                       ("R", "wechatpay", "S0", "RF5"), ("R", "wechatpay", "S0", "RF6")}
    assert after[("O", "wechatpay", "S1", "")] == ("PAID", Decimal("10.00"), "2026-11-20 10:00:06")
    assert after[("R", "wechatpay", "S0", "RF6")] == ("SUCCESS", Decimal("8.00"), "2026-11-20 23:59:58")
    status, _, paid_at = after[("O", "wechatpay", "S2", "")]  # no channel time: now, in the business zone
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    assert status == "PAID" and abs(dt.datetime.fromisoformat(paid_at) - now) < dt.timedelta(minutes=5)
    assert after[("O", "alipay", "S1", "")] == before[("O", "alipay", "S1", "")]  # same order_no, other channel
    assert {k: v[0] for k, v in audit(shop).items()} == {k: "APPLIED" for k in KEYS.values()}
    assert listed(text, "APPLIED") == 5
    assert {r["idempotency_key"]: r["outcome"] for r in ledger(storage)} == {k: "APPLIED" for k in KEYS.values()}

    code, text = run(db_conf(shop), storage, apply=True)
    assert code == 0
    assert snapshot(shop) == after
    assert listed(text, "ALREADY_APPLIED") == 5 and listed(text, "APPLIED") == 0
    code, text = run(db_conf(shop), storage, apply=False)
    assert listed(text, "ALREADY_APPLIED") == 5 and "WOULD_APPLY" not in text


def test_a_row_changed_after_planning_is_left_alone_and_reported(shop, tmp_path):
    storage = publish_result(tmp_path / "root")
    _, text = run(db_conf(shop), storage, apply=False)
    assert listed(text, "WOULD_APPLY") == 5
    with shop.connect() as conn:  # someone else: the late callback marks S3 paid; RF6's amount is edited
        conn.execute("UPDATE orders SET status = 'PAID', paid_at = '2026-11-20 12:00:30' WHERE order_no = 'S3'")
        conn.execute("UPDATE refunds SET amount = 9.00 WHERE refund_no = 'RF6'")
    before = snapshot(shop)
    code, text = run(db_conf(shop), storage, apply=True)
    assert code == 0, text
    after = snapshot(shop)
    assert after[("O", "wechatpay", "S3", "")] == before[("O", "wechatpay", "S3", "")]
    assert after[("R", "wechatpay", "S0", "RF6")] == before[("R", "wechatpay", "S0", "RF6")]
    assert "SKIPPED_STATE_CHANGED" in text and "status is now PAID" in text and "amount is now 9.00" in text
    outcomes = {k: v[0] for k, v in audit(shop).items()}
    assert outcomes[KEYS["S3"]] == outcomes[KEYS["S0RF6"]] == "SKIPPED_STATE_CHANGED"
    assert [outcomes[KEYS[k]] for k in ("S1", "S2", "S0RF5")] == ["APPLIED"] * 3


def _wait_until_blocked(db, timeout=20.0):
    with db.connect(autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'recon apply-fixes' "
                            "AND wait_event_type = 'Lock'").fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("apply-fixes never waited for the locked row")


def test_a_concurrent_writer_wins_and_a_held_lock_fails_only_that_fix(shop, tmp_path):
    storage = publish_result(tmp_path / "root", CORRECTIONS[:2])
    # 1. another transaction holds S1 and marks it paid; apply-fixes waits for it, then sees the new state
    other = shop.connect()
    other.execute("UPDATE orders SET status = 'PAID', paid_at = '2026-11-20 10:00:30' WHERE order_no = 'S1' "
                  "AND channel = 'wechatpay'")
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=run(db_conf(shop), storage, apply=True)))
    worker.start()
    try:
        _wait_until_blocked(shop)
        other.commit()
    finally:
        worker.join(60)
        other.close()
    code, text = result["out"]
    assert code == 0 and "SKIPPED_STATE_CHANGED" in text and "status is now PAID" in text
    assert snapshot(shop)[("O", "wechatpay", "S1", "")] == ("PAID", Decimal("10.00"), "2026-11-20 10:00:30")

    # 2. a lock held past lock_timeout fails that fix only, records nothing for it, and a re-run applies it
    storage = publish_result(tmp_path / "root2", CORRECTIONS[2:3])
    other = shop.connect()
    other.execute("SELECT 1 FROM orders WHERE order_no = 'S3' FOR UPDATE")
    try:
        code, text = run(db_conf(shop, lock_timeout_seconds=1), storage, apply=True)
    finally:
        other.rollback()
        other.close()
    assert code == 1 and "FAILED" in text and "stayed locked" in text
    assert KEYS["S3"] not in audit(shop)
    code, text = run(db_conf(shop), storage, apply=True)
    assert code == 0 and listed(text, "APPLIED") == 1
    assert snapshot(shop)[("O", "wechatpay", "S3", "")] == ("PAID", Decimal("30.00"), "2026-11-20 12:00:07")


# -- webhook --------------------------------------------------------------------------------------------------------

class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.posts.append((self.path, dict(self.headers), body))
        status = server.fail.pop(body["order_no"] + body["refund_no"], 200)
        data = json.dumps({"outcome": "APPLIED"} if status == 200 else {"error": "try later"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.posts, server.fail = [], {}
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"https://127.0.0.1:{server.server_address[1]}/recon/corrections", str(ca_file)
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_posts_each_correction_once_with_its_idempotency_key(webhook, tmp_path, monkeypatch):
    server, url, ca_file = webhook
    monkeypatch.setenv("RECON_TEST_HOOK_TOKEN", "hook-token-123")
    storage = publish_result(tmp_path / "root")
    conf = {"target": "webhook", "url": url, "ca_file": ca_file, "timeout_seconds": 5,
            "token_env": "RECON_TEST_HOOK_TOKEN", "ledger_file": str(tmp_path / "work" / "hook-ledger.csv")}
    code, text = run(conf, storage, apply=False)
    assert code == 0 and listed(text, "WOULD_POST") == 5 and not server.posts

    server.fail["S3"] = 503
    code, text = run(conf, storage, apply=True)
    assert code == 1 and "HTTP 503" in text and "hook-token-123" not in text
    assert [h["Idempotency-Key"] for _, h, _ in server.posts] == [KEYS[c[2] + c[3]] for c in CORRECTIONS]
    assert all(h["Authorization"] == "Bearer hook-token-123" for _, h, _ in server.posts)
    path, _, body = server.posts[0]
    assert path == "/recon/corrections"
    assert body == {"idempotency_key": KEYS["S1"], "date": "2026-11-20", "channel": "wechatpay", "order_no": "S1",
                    "refund_no": "", "action": "MARK_PAID", "amount": "10.00", "channel_txn_id": "42S1",
                    "channel_time": "2026-11-20 10:00:06", "time_zone": TZ}
    assert {r["idempotency_key"] for r in ledger(storage)} == {KEYS[k] for k in ("S1", "S2", "S0RF5", "S0RF6")}

    server.posts.clear()  # the re-run posts only what failed
    code, text = run(conf, storage, apply=True)
    assert code == 0 and [b["order_no"] for _, _, b in server.posts] == ["S3"]
    server.posts.clear()
    code, text = run(conf, storage, apply=True)
    assert code == 0 and not server.posts and listed(text, "ALREADY_APPLIED") == 5
    assert len(ledger(storage)) == 5


def test_webhook_refuses_a_certificate_it_cannot_verify(webhook, tmp_path):
    from core.errors import FatalError

    _, url, _ = webhook
    conf = {"target": "webhook", "url": url, "ledger_file": str(tmp_path / "ledger.csv")}
    with pytest.raises(FatalError, match="TLS verification failed"):
        run(conf, publish_result(tmp_path / "root"), apply=True)


# -- inputs and configuration -----------------------------------------------------------------------------------------

def test_missing_result_and_malformed_corrections(tmp_path):
    conf = {"target": "webhook", "url": "https://127.0.0.1:9/x", "ledger_file": str(tmp_path / "l.csv")}
    with pytest.raises(UnavailableError, match="no published reconciliation result"):
        run(conf, Storage((tmp_path / "empty").as_uri()), apply=False)
    rows = [dict(zip(CORRECTION_COLUMNS, (D.isoformat(), "wechatpay", "S1", "", "MARK_PAID", "10.00", "t", "k1"))),
            dict(zip(CORRECTION_COLUMNS, (D.isoformat(), "wechatpay", "S2", "", "MARK_PAID", "10.00", "t", "k1")))]
    with pytest.raises(IntegrityError, match="repeats line 2") as err:
        plan(rows)
    assert err.value.exit_code == 4
    rows[1]["idempotency_key"], rows[1]["amount"] = "k2", "10.001"
    with pytest.raises(IntegrityError, match="bad amount"):
        plan(rows)
    assert [f.amount for f in plan(rows[:1])] == [Decimal("10.00")]


@pytest.mark.parametrize("raw, message", [
    ({}, "fixes.target"),
    ({"target": "database", "dsn": "host=h dbname=d", "user": "u", "password": "x"}, "must not be written"),
    ({"target": "database", "dsn": "host=h dbname=d password=x", "user": "u", "password_env": "V"},
     "must not carry a password"),
    ({"target": "database", "dsn": "host=h", "user": "u", "password_env": "V", "orders_table": "a;drop"},
     "orders_table"),
    ({"target": "database", "dsn": "host=h", "user": "u", "password_env": "V", "orders_columns": {"state": "s"}},
     "maps roles"),
    ({"target": "webhook", "url": "http://orders.example/x", "ledger_file": "l.csv"}, "must use https"),
    ({"target": "webhook", "url": "https://orders.example/x"}, "ledger_file"),
])
def test_bad_configuration_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_fixes_config(raw, "/etc/recon/pipeline.toml")
    assert err.value.exit_code == 2
