"""One channel's failure does not stop the others: they are reconciled and published, the run exits non-zero."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DAY1, run_cli

pytestmark = pytest.mark.slow

LATE_CHANNEL = """
[channel]
name = "wechatpay_hk"
normalizer = "wechatpay"

[download]
type = "localdir"
path = "../../inbox/wechatpay_hk"
filename = "hk_{date:%Y%m%d}.csv"
deadline = ""          # no time-of-day deadline in a test: max_wait bounds the retries
max_wait = 1.5
retry_interval = 0.3
retry_jitter = 0
"""


def test_a_statement_missing_at_the_deadline_exits_3_and_the_others_are_published(demo_dir, spark, capsys):
    (demo_dir / "inbox" / "wechatpay_hk").mkdir()
    (demo_dir / "conf" / "channels" / "wechatpay_hk.toml").write_text(LATE_CHANNEL, encoding="utf-8")
    code = run_cli("run", "--conf", str(demo_dir / "conf" / "pipeline.toml"), "--date", DAY1.isoformat(),
                   spark=spark)
    assert code == 3
    recon = demo_dir / "root" / "recon" / DAY1.isoformat()
    assert (recon / "_SUCCESS").exists()
    summary = json.loads((recon / "summary.json").read_text())
    assert summary["channels_reconciled"] == ["alipay", "wechatpay"]
    assert summary["channels_not_available"] == ["wechatpay_hk"]
    assert "wechatpay_hk" in summary["failures"] and "still unavailable" in summary["failures"]["wechatpay_hk"]
    assert summary["channels"]["wechatpay"]["categories"]["MATCHED"]["local"]["records"] > 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("!!"))
    assert "wechatpay_hk" in line and "exit 3" in line and "hk_20261120.csv" in line
    assert "attempt" in line and "not in" in line  # what was last seen
    assert "NOT reconciled (no statement): wechatpay_hk" in out
    assert not (demo_dir / "root" / "raw" / "wechatpay_hk" / DAY1.isoformat()).exists() or \
        not list((demo_dir / "root" / "raw" / "wechatpay_hk" / DAY1.isoformat()).iterdir())


def test_a_channel_whose_statement_fails_integrity_does_not_block_the_others(demo_dir, spark):
    (demo_dir / "inbox" / "wechatpay_hk").mkdir()
    (demo_dir / "inbox" / "wechatpay_hk" / "hk_20261120.csv").write_bytes(
        "交易时间,商户订单号\r\n`2026-11-20 10:00:00,`X\r\n".encode())
    (demo_dir / "conf" / "channels" / "wechatpay_hk.toml").write_text(LATE_CHANNEL, encoding="utf-8")
    assert run_cli("run", "--conf", str(demo_dir / "conf" / "pipeline.toml"), "--date", DAY1.isoformat(),
                   spark=spark) == 4
    summary = json.loads((demo_dir / "root" / "recon" / DAY1.isoformat() / "summary.json").read_text())
    assert summary["channels_reconciled"] == ["alipay", "wechatpay"]
    assert "unknown column set" in summary["failures"]["wechatpay_hk"]
