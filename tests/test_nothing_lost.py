"""Nothing lost, nothing wrong in silence: the local export, the carried open items and the disk.

Through the `recon` command on the session's SparkSession, on copies of the
end-to-end module's two demo days:

* an export of another date placed under local/D is exit 4 naming the file
  and how many rows lie outside D and its cut-off margin; an export without
  rows is refused while the channels have records, unless
  ``[local_orders] allow_empty = true``;
* D's opening must equal D-1's published closing (summary.json, per channel):
  open_items.csv cut mid-row, shortened but well-formed, with an amount
  changed, missing or unparsable is exit 4 naming the file and "re-run";
* a full disk (a small tmpfs as the root) and a read-only root (the tmpfs
  remounted read-only) are exit 1 in words naming the path, with the
  previous result intact.

Each failure leaves the published result as it was and no traceback.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import DAY1, DAY2, run_cli
from tests.test_end_to_end import DATA_FILES, _recon, two_days  # noqa: F401  (the module's two days)
from tests.test_inputs_as_written import BANNED, _copy, _reconcile, _table

pytestmark = pytest.mark.slow
RESULT_FILES = (*DATA_FILES, "summary.json", "_SUCCESS")


def _published(demo: Path, day) -> dict:
    return {name: (_recon(demo, day) / name).read_bytes() for name in RESULT_FILES}


def _text(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def _conf(demo: Path) -> Path:
    return demo / "conf" / "pipeline.toml"


def _clean(text: str) -> None:
    assert not [b for b in BANNED if b in text], text


def _no_leftovers(demo: Path) -> None:
    assert not [p.name for p in (demo / "root" / "recon").iterdir() if p.name.startswith((".staging-", ".retired-"))]


# -- the local export ---------------------------------------------------------------------------------------------

def _outside(rows: list[dict], first: str, end: str) -> list[dict]:
    return [r for r in rows if not first <= (r["paid_at"] or r["created_at"]) < end]


def test_an_export_of_another_date_exits_4_naming_the_file_and_how_many_rows(two_days, spark, tmp_path, capsys):  # noqa: F811
    other = _copy(two_days, tmp_path)
    export = other / "root" / "local" / DAY1.isoformat() / "orders.csv"
    shutil.copyfile(other / "root" / "local" / DAY2.isoformat() / "orders.csv", export)  # D+1's export under D
    with export.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # D and its 30-minute margin: the 00:00:20 callback of D+1 stays inside, D+1's day does not
    bad = _outside(rows, "2026-11-19 23:30:00", f"{DAY2} 00:30:00")
    assert 0 < len(bad) < len(rows)
    before = _published(other, DAY1)
    assert _reconcile(other, spark, DAY1) == 4
    text = _text(capsys)
    assert f"{len(bad)} records of another day" in text and f"{len(bad)} of {len(rows)} rows in" in text
    assert f"[date {DAY1}, file " in text and "local/2026-11-20/orders.csv" in text
    assert "[2026-11-19 23:30:00, 2026-11-21 00:30:00)" in text
    assert "e.g. order S" in text and f"put the order system's export of {DAY1}" in text
    _clean(text)
    assert _published(other, DAY1) == before
    _no_leftovers(other)


def test_an_export_with_a_header_and_no_rows_is_refused_unless_conf_expects_an_empty_day(
        two_days, spark, tmp_path, capsys):  # noqa: F811
    other = _copy(two_days, tmp_path)
    export = other / "root" / "local" / DAY2.isoformat() / "orders.csv"
    export.write_bytes(export.read_bytes().split(b"\n", 1)[0] + b"\n")  # the header only
    before = _published(other, DAY2)
    assert _reconcile(other, spark) == 4
    text = _text(capsys)
    assert "the local orders export has no records while the channels' statements have" in text
    assert str(export.as_uri()).replace("file:///", "file:/") in text.replace("file:///", "file:/")
    assert "allow_empty = true" in text and "re-run" in text
    _clean(text)
    assert _published(other, DAY2) == before

    conf = _conf(other)
    conf.write_text(conf.read_text(encoding="utf-8") + '\n[local_orders]\nformat = "csv"\nallow_empty = true\n',
                    encoding="utf-8")
    assert _reconcile(other, spark) == 0
    summary = json.loads((_recon(other, DAY2) / "summary.json").read_text())
    assert summary["channels"]["wechatpay"]["categories"]["MATCHED"]["local"]["records"] == 0  # no order today
    assert summary["channels"]["wechatpay"]["categories"]["CHANNEL_ONLY"]["channel"]["records"] > 0


# -- the chain of open items ----------------------------------------------------------------------------------------

def test_the_opening_is_checked_against_the_previous_closing_per_channel(two_days):  # noqa: F811
    for day, prev in ((DAY1, None), (DAY2, DAY1)):
        summary = json.loads((_recon(two_days, day) / "summary.json").read_text())
        per = summary["roll_forward_by_channel"]
        for term in ("opening", "new", "cleared", "closing"):
            assert sum(v[term]["records"] for v in per.values()) == summary["roll_forward"][term]["records"]
            assert sum(Decimal(v[term]["amount"]) for v in per.values()) == \
                Decimal(summary["roll_forward"][term]["amount"])
        with (_recon(two_days, day) / "open_items.csv").open(encoding="utf-8", newline="") as fh:
            items = list(csv.DictReader(fh))
        for ch, v in per.items():
            mine = [r for r in items if r["channel"] == ch]
            assert v["closing"]["records"] == len(mine)
            assert Decimal(v["closing"]["amount"]) == sum((Decimal(r["amount"]) for r in mine), Decimal("0.00"))
        assert summary["opening_checked_against"] == (prev.isoformat() if prev else None)
        assert summary["opening_checked_by"] == ("channel" if prev else None)
    day1 = json.loads((_recon(two_days, DAY1) / "summary.json").read_text())["roll_forward_by_channel"]
    day2 = json.loads((_recon(two_days, DAY2) / "summary.json").read_text())["roll_forward_by_channel"]
    assert {ch: {k: v["closing"][k] for k in ("records", "amount")} for ch, v in day1.items()} == \
        {ch: v["opening"] for ch, v in day2.items()}
    # the content of each channel's items is recorded too (a value cut or changed keeps count and amount)
    assert all(v["closing"]["digest"].lstrip("-").isdigit() for v in (*day1.values(), *day2.values()))
    assert any(v["closing"]["digest"] != "0" for v in day1.values())


def _cut_mid_row(items: Path) -> None:
    data = items.read_bytes()
    items.write_bytes(data[:-25])  # inside the last row, as a copy cut short by a full disk


def _row_removed(items: Path) -> None:
    lines = items.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3
    items.write_bytes(b"".join(lines[:1] + lines[2:]))  # well-formed, one open item fewer


def _amount_changed(items: Path) -> None:
    rows = _table(items)
    i = rows[0].index("amount")
    rows[1][i] = str(Decimal(rows[1][i]) + 1)
    with items.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _cut_in_the_last_value(items: Path) -> None:
    """Cut short inside the last value of the last row: count and amount stay, the row still parses."""
    rows = _table(items)
    last = next(r for r in rows[1:] if r[-1])  # a row whose last value (paid_at / created_at) is not empty
    rows.remove(last)
    with items.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows + [last])
    items.write_bytes(items.read_bytes()[:-4])  # "...23:58:00\n" -> "...23:58"


def _order_no_changed(items: Path) -> None:
    rows = _table(items)
    i = rows[0].index("order_no")
    rows[1][i] = rows[1][i] + "X"
    with items.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _missing(items: Path) -> None:
    items.unlink()


def _summary_missing(items: Path) -> None:
    items.with_name("summary.json").unlink()


def _summary_unparsable(items: Path) -> None:
    path = items.with_name("summary.json")
    path.write_bytes(path.read_bytes()[:100])


def _unparsable(items: Path) -> None:
    items.write_bytes(items.read_bytes().split(b"\n", 1)[0] + b"\n\x00\xff\x13garbage,\"unclosed\n")


@pytest.mark.parametrize("damage, said", [
    (_cut_mid_row, "where the header has"),
    (_row_removed, "do not add up to its closing"),
    (_amount_changed, "do not add up to its closing"),
    (_cut_in_the_last_value, "their content is not what 2026-11-20 wrote"),
    (_order_no_changed, "their content is not what 2026-11-20 wrote"),
    (_missing, "has no open_items.csv"),
    (_unparsable, "cannot be read"),
    (_summary_missing, "has no summary.json"),
    (_summary_unparsable, "summary.json published for 2026-11-20 cannot be read"),
])
def test_a_broken_chain_of_open_items_exits_4_naming_the_file_and_the_re_run(
        two_days, spark, tmp_path, capsys, damage, said):  # noqa: F811
    other = _copy(two_days, tmp_path)
    items = _recon(other, DAY1) / "open_items.csv"
    damage(items)
    before = _published(other, DAY2)
    assert _reconcile(other, spark) == 4
    text = _text(capsys)
    assert said in text, text
    named = "summary.json" if damage in (_summary_missing, _summary_unparsable) else "open_items.csv"
    assert f"{DAY1}/{named}" in text and f"re-run the reconcile of {DAY1}" in text
    assert f"recon run --date {DAY1} --cascade" in text
    if damage in (_row_removed, _amount_changed, _cut_in_the_last_value, _order_no_changed):
        assert "wechatpay:" in text and f"{DAY1}/summary.json" in text
    _clean(text)
    assert _published(other, DAY2) == before  # nothing classified, nothing published
    _no_leftovers(other)


def test_a_summary_without_per_channel_closings_is_checked_on_its_total(two_days, spark, tmp_path):  # noqa: F811
    other = _copy(two_days, tmp_path)
    path = _recon(other, DAY1) / "summary.json"
    summary = json.loads(path.read_text())
    del summary["roll_forward_by_channel"]  # as written before closings were recorded per channel
    path.write_text(json.dumps(summary))
    assert _reconcile(other, spark) == 0
    day2 = json.loads((_recon(other, DAY2) / "summary.json").read_text())
    assert (day2["opening_checked_against"], day2["opening_checked_by"]) == (DAY1.isoformat(), "total")
    assert {n: (_recon(other, DAY2) / n).read_bytes() for n in DATA_FILES} == \
        {n: (_recon(two_days, DAY2) / n).read_bytes() for n in DATA_FILES}


# -- a full disk, a read-only root ------------------------------------------------------------------------------

def _mount_tmpfs(target: Path, size: str) -> None:
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root in a container that allows mounts): {exc}")


@pytest.fixture
def small_root(two_days, tmp_path):  # noqa: F811
    """A copy of the two days whose root is a tmpfs of its own (work folder outside it), unmounted after."""
    other = _copy(two_days, tmp_path)
    conf = _conf(other)
    conf.write_text(conf.read_text(encoding="utf-8").replace("[pipeline]\n", '[pipeline]\nwork_dir = "../work"\n'),
                    encoding="utf-8")
    data = other / "root_data"
    (other / "root").rename(data)
    (other / "root").mkdir()
    _mount_tmpfs(other / "root", "16m")
    try:
        for entry in data.iterdir():
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, other / "root" / entry.name)
        yield other
    finally:
        subprocess.run(["umount", "-l", str(other / "root")], check=False)


def _fill(root: Path) -> None:
    """Fill the filesystem to the last byte."""
    with (root / "filler").open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    try:
        (root / "filler").open("ab").write(b"\0" * 4096)
    except OSError:
        pass


def _run_stage(demo: Path, stage: str, day, spark, *extra) -> int:
    return run_cli(stage, "--conf", str(_conf(demo)), "--date", day.isoformat(), *extra, spark=spark)


def test_a_full_disk_is_exit_1_naming_the_path_with_the_previous_result_intact(small_root, spark, capsys):
    before = {day: _published(small_root, day) for day in (DAY1, DAY2)}
    _fill(small_root / "root")
    capsys.readouterr()
    assert _reconcile(small_root, spark) == 1  # re-run of D: the publish finds no space
    text = _text(capsys)
    assert "no space left on device" in text and "free space" in text and f"date {DAY2}" in text
    assert "file:" in text or str(small_root / "root") in text
    _clean(text)
    assert {day: _published(small_root, day) for day in (DAY1, DAY2)} == before
    _no_leftovers(small_root)
    std = small_root / "root" / "standard" / "wechatpay" / DAY2.isoformat()
    std_before = {p.name: p.read_bytes() for p in std.iterdir() if p.is_file()}
    assert _run_stage(small_root, "normalize", DAY2, spark) == 1  # the standard folder
    text = _text(capsys)
    assert "no space left on device" in text and "channel wechatpay" in text and "free space" in text
    _clean(text)
    assert {p.name: p.read_bytes() for p in std.iterdir() if p.is_file()} == std_before
    assert _run_stage(small_root, "download", DAY2, spark, "--force-download") == 1  # the raw landing
    text = _text(capsys)
    assert "no space left on device" in text and "channel wechatpay" in text
    _clean(text)
    assert {day: _published(small_root, day) for day in (DAY1, DAY2)} == before


def test_a_read_only_root_is_exit_1_naming_the_path_with_the_previous_result_intact(small_root, spark, capsys):
    before = {day: _published(small_root, day) for day in (DAY1, DAY2)}
    subprocess.run(["mount", "-o", "remount,ro", str(small_root / "root")], check=True)
    capsys.readouterr()
    assert _reconcile(small_root, spark) == 1
    text = _text(capsys)
    assert "read-only" in text and "check the mount" in text and f"date {DAY2}" in text
    assert str(small_root / "root" / "recon") in text
    _clean(text)
    assert {day: _published(small_root, day) for day in (DAY1, DAY2)} == before
    for stage, extra in (("normalize", ()), ("download", ("--force-download",)), ("run", ())):
        assert _run_stage(small_root, stage, DAY2, spark, *extra) == 1, stage
        text = _text(capsys)
        assert "read-only" in text and "check the mount" in text and "channel wechatpay" in text, text
        _clean(text)
    # with the default work folder (under the root) the run lock cannot be taken: said so, exit 1
    default = _conf(small_root).with_name("default_work.toml")
    default.write_text(_conf(small_root).read_text(encoding="utf-8").replace('work_dir = "../work"\n', ""),
                       encoding="utf-8")
    assert run_cli("reconcile", "--conf", str(default), "--date", DAY2.isoformat(), spark=spark) == 1
    text = _text(capsys)
    assert f"cannot open the run lock {small_root / 'root' / '.work' / 'recon.lock'}: Read-only file system" in text
    assert "work_dir" in text
    _clean(text)
    assert {day: _published(small_root, day) for day in (DAY1, DAY2)} == before
