"""Command-line arguments, configuration errors and their exit statuses."""

from __future__ import annotations

import pytest

from recon.config import load_settings
from recon.errors import ConfigError
from tests.conftest import run_cli


def test_bad_arguments_exit_2():
    assert run_cli("run", "--date", "20261120", "--conf", "nowhere.toml") == 2
    assert run_cli("frobnicate") == 2
    assert run_cli("backfill", "--from", "2026-11-02") == 2


def test_missing_configuration_exits_2(tmp_path, capsys):
    assert run_cli("run", "--date", "2026-11-20", "--conf", str(tmp_path / "nope.toml")) == 2
    assert "configuration file not found" in capsys.readouterr().err


def test_unknown_channel_exits_2(demo_dir):
    assert run_cli("download", "--conf", str(demo_dir / "conf/pipeline.toml"), "--date", "2026-11-20",
                   "--channel", "paypal") == 2


def test_backfill_range_must_be_in_order(demo_dir):
    assert run_cli("backfill", "--conf", str(demo_dir / "conf/pipeline.toml"), "--from", "2026-11-21",
                   "--to", "2026-11-20") == 2


def test_a_typo_in_configuration_is_an_error_not_a_default(demo_dir):
    chan = demo_dir / "conf" / "channels" / "wechatpay.toml"
    chan.write_text(chan.read_text().replace("cutoff_minutes", "cutof_minutes"))
    with pytest.raises(ConfigError, match="cutof_minutes"):
        load_settings(demo_dir / "conf" / "pipeline.toml")


def test_a_float_fee_rate_is_refused(demo_dir):
    chan = demo_dir / "conf" / "channels" / "wechatpay.toml"
    chan.write_text(chan.read_text().replace('rate = "0.006"', "rate = 0.006"))
    with pytest.raises(ConfigError, match="quoted decimal"):
        load_settings(demo_dir / "conf" / "pipeline.toml")


def test_download_and_normalize_stages_run_alone_without_spark(demo_dir):
    conf = str(demo_dir / "conf/pipeline.toml")
    assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 0
    assert (demo_dir / "root/raw/wechatpay/2026-11-20/_manifest.json").exists()
    assert not (demo_dir / "root/standard").exists()
    assert run_cli("normalize", "--conf", conf, "--date", "2026-11-20") == 0
    assert (demo_dir / "root/standard/wechatpay/2026-11-20/_SUCCESS").exists()


def test_a_missing_statement_exits_3(demo_dir):
    conf = str(demo_dir / "conf/pipeline.toml")
    assert run_cli("download", "--conf", conf, "--date", "2026-12-25") == 3


def test_a_second_run_on_the_same_root_exits_at_once_saying_already_running(demo_dir, capsys):
    from recon.config import load_settings
    from recon.lock import RunLock

    conf = str(demo_dir / "conf/pipeline.toml")
    with RunLock(load_settings(conf).work_dir, what="recon run (test holder)"):
        assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 1
    err = capsys.readouterr().err
    assert "already running" in err and "recon run (test holder)" in err
    assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 0  # released
