"""Hostile statements through `recon download` + `recon normalize`: exit 4 with a message naming channel, date, file,
line and the next step, and never a traceback (an expected failure is not a bug)."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.conftest import DAY1, run_cli
from tests.normalizers.test_hostile_statements import WECHAT_HEADER, _bad_crc, gzip_of_zeros, paypal_report

D = DAY1.isoformat()


def _pipeline(base: Path, statements: dict[str, tuple[str, bytes]]) -> str:
    conf = base / "conf"
    (conf / "channels").mkdir(parents=True)
    (conf / "pipeline.toml").write_text('[pipeline]\nroot = "../root"\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    for channel, (name, data) in statements.items():
        inbox = base / "inbox" / channel
        inbox.mkdir(parents=True)
        (inbox / name).write_bytes(data)
        (conf / "channels" / f"{channel}.toml").write_text(
            f'[channel]\nname = "{channel}"\nnormalizer = "{channel}"\n\n'
            f'[download]\ntype = "localdir"\npath = "../../inbox/{channel}"\nfilename = "{name}"\nmax_attempts = 1\n',
            encoding="utf-8")
    return str(conf / "pipeline.toml")


def test_hostile_statements_are_exit_4_with_a_message_and_no_traceback(tmp_path, capsys, caplog):
    conf = _pipeline(tmp_path, {
        "wechatpay": ("bill.csv.gz", gzip_of_zeros((WECHAT_HEADER + "\r\n").encode("utf-8"), 64)),
        "alipay": ("bill.zip", _bad_crc()),
        "paypal": ("STL-20261120.01.009.CSV", paypal_report([("2026/11/19 09:00:12 -0800", "12345678901234567890"),
                                                            ("2026/02/30 09:00:12 -0800", "100")])),
    })
    caplog.set_level(logging.INFO)
    assert run_cli("download", "--conf", conf, "--date", D) == 0
    assert run_cli("normalize", "--conf", conf, "--date", D) == 4
    err = capsys.readouterr().err
    logged = caplog.text
    assert "Traceback" not in err and "Traceback" not in logged
    assert not [r for r in caplog.records if r.exc_info], "an expected failure logged a traceback"
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    expected = {
        "wechatpay": ("file bill.csv.gz line 2", "longer than 1048576 bytes", "max_line_bytes"),
        "alipay": ("file bill.zip:20880000000001560156_20261120_业务明细.csv line", "Bad CRC-32",
                   "download the bill again"),
        "paypal": ("file STL-20261120.01.009.CSV line 5", "Gross Transaction Amount 123456789012345678.90 is beyond "
                   "DECIMAL(18,2)", "max_rejected_rows"),
    }
    for channel, parts in expected.items():
        line = next((m for m in messages if f"channel {channel}, date {D}" in m), None)
        assert line is not None, f"no error for {channel}: {messages}"
        for part in parts:
            assert part in line, (channel, part, line)
        assert " -- " in line  # the next step
    assert "Transaction Completion Date '2026/02/30 09:00:12 -0800' is not a valid time" in logged
    assert not (tmp_path / "root" / "standard").exists() or not any((tmp_path / "root" / "standard").rglob("_SUCCESS"))
