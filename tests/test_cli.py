"""Command-line arguments, configuration errors and their exit statuses."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from core.errors import ConfigError
from recon.config import load_settings
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


def _dated_inbox(demo_dir, filename='filename = "wechatpay_all_{date:%Y%m%d}.csv"'):
    """The demo's WeChat Pay channel reading inbox/wechatpay/YYYY-MM-DD/ (its bills moved there), no waiting set."""
    inbox = demo_dir / "inbox" / "wechatpay"
    for bill in list(inbox.glob("wechatpay_all_*.csv")):
        day = dt.datetime.strptime(bill.stem.rsplit("_", 1)[1], "%Y%m%d").date()
        (inbox / day.isoformat()).mkdir()
        bill.rename(inbox / day.isoformat() / bill.name)
    chan = demo_dir / "conf" / "channels" / "wechatpay.toml"
    text = chan.read_text(encoding="utf-8")
    chan.write_text(text[:text.index("[download]")] + '[download]\ntype = "localdir"\n'
                    'path = "../../inbox/wechatpay/{date:%Y-%m-%d}"\n' + filename + "\n", encoding="utf-8")
    (demo_dir / "conf" / "channels" / "alipay.toml").unlink()


def test_download_reads_dated_folders_and_a_missing_file_is_exit_3_at_once_naming_it(demo_dir, capsys):
    _dated_inbox(demo_dir)
    conf = str(demo_dir / "conf/pipeline.toml")
    assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 0
    assert run_cli("download", "--conf", conf, "--date", "2026-11-21") == 0
    for day in ("2026-11-20", "2026-11-21"):
        assert (demo_dir / f"root/raw/wechatpay/{day}/wechatpay_all_{day.replace('-', '')}.csv").read_bytes() == \
            (demo_dir / f"inbox/wechatpay/{day}/wechatpay_all_{day.replace('-', '')}.csv").read_bytes()
    capsys.readouterr()
    today = dt.date.today()  # noon on D+1 is hours away: the old default waited for it
    started = time.monotonic()
    assert run_cli("download", "--conf", conf, "--date", today.isoformat()) == 3
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    path = demo_dir / "inbox" / "wechatpay" / today.isoformat() / f"wechatpay_all_{today:%Y%m%d}.csv"
    assert "wechatpay: exit 3" in out and str(path.resolve()) in out and "put the file there" in out


def test_a_folder_in_filename_exits_2_with_a_hint(demo_dir, capsys):
    _dated_inbox(demo_dir, filename='filename = "{date:%Y-%m-%d}/wechatpay_all_{date:%Y%m%d}.csv"')
    assert run_cli("download", "--conf", str(demo_dir / "conf/pipeline.toml"), "--date", "2026-11-20") == 2
    out = capsys.readouterr().out
    assert "wechatpay: exit 2" in out and "not a plain file name" in out and "put the folder part in path" in out
    assert "wechatpay.toml" in out


def test_an_unknown_normalizer_exits_2_listing_the_known_ones(demo_dir, capsys):
    chan = demo_dir / "conf" / "channels" / "wechatpay.toml"
    chan.write_text(chan.read_text().replace('normalizer = "wechatpay"', 'normalizer = "wechat_pay"'))
    conf = str(demo_dir / "conf/pipeline.toml")
    assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 0
    assert run_cli("normalize", "--conf", conf, "--date", "2026-11-20") == 2
    out = capsys.readouterr().out
    assert "no normalizer named 'wechat_pay'" in out
    assert all(name in out for name in ("wechatpay", "alipay", "unionpay", "paypal", "bankspec"))


def test_a_second_run_on_the_same_root_exits_at_once_saying_already_running(demo_dir, capsys):
    from recon.config import load_settings
    from recon.lock import RunLock

    conf = str(demo_dir / "conf/pipeline.toml")
    with RunLock(load_settings(conf).work_dir, what="recon run (test holder)"):
        assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 1
    err = capsys.readouterr().err
    assert "already running" in err and "recon run (test holder)" in err
    assert run_cli("download", "--conf", conf, "--date", "2026-11-20") == 0  # released


def test_a_landed_statement_normalize_finds_truncated_is_downloaded_again_by_the_next_run(demo_dir, capsys):
    conf = str(demo_dir / "conf/pipeline.toml")
    bill = demo_dir / "inbox" / "wechatpay" / "wechatpay_all_20261120.csv"
    whole = bill.read_bytes()
    bill.write_bytes(whole[:len(whole) // 2])  # the channel served half a file, and said so in no header
    args = ("--conf", conf, "--date", "2026-11-20", "--channel", "wechatpay")
    assert run_cli("download", *args) == 0
    capsys.readouterr()
    assert run_cli("normalize", *args) == 4
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "recon download --date 2026-11-20 --channel wechatpay --force-download" in shown
    assert "next `recon run` or `recon download` downloads it again" in shown
    assert "Traceback" not in captured.err
    raw = demo_dir / "root" / "raw" / "wechatpay" / "2026-11-20"
    assert (raw / "_refetch.json").exists()
    bill.write_bytes(whole)  # the channel's file is whole again
    assert run_cli("download", *args) == 0  # no --force-download: the damaged copy is not reused
    assert (raw / "wechatpay_all_20261120.csv").read_bytes() == whole and not (raw / "_refetch.json").exists()
    assert run_cli("normalize", *args) == 0


def test_a_symlinked_statement_is_refused_without_quoting_the_linked_file(demo_dir, tmp_path, capsys):
    import os

    conf = str(demo_dir / "conf/pipeline.toml")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-FIRST-LINE\nsecond\n")
    os.chmod(secret, 0o600)
    bill = demo_dir / "inbox" / "wechatpay" / "wechatpay_all_20261120.csv"
    bill.unlink()
    bill.symlink_to(secret)
    assert run_cli("run", "--conf", conf, "--date", "2026-11-20", "--channel", "wechatpay") == 1
    captured = capsys.readouterr()
    assert "symbolic link" in captured.out + captured.err
    assert "TOP-SECRET" not in captured.out + captured.err and "Traceback" not in captured.err
    assert not (demo_dir / "root" / "raw" / "wechatpay" / "2026-11-20" / bill.name).exists()
