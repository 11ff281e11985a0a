"""The localdir connector and landing: atomic copy, manifest, no second download, unsafe names, dated folders,
and its default of looking once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from connectors.base import safe_name
from connectors.landing import land
from core.errors import ConfigError, FatalError, UnavailableError
from core.settings import ChannelSettings
from core.storage import Storage
from recon.config import load_channel

DAY = dt.date(2026, 11, 20)


def _channel(inbox, filename="bill_{date:%Y%m%d}.csv", **download) -> ChannelSettings:
    """A localdir channel with its default waiting (none) unless ``download`` says otherwise."""
    return ChannelSettings(name="wechatpay", normalizer="wechatpay", conf_file="<test>",
                           download={"type": "localdir", "path": str(inbox), "filename": filename, **download})


@pytest.fixture
def setup(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    storage = Storage((tmp_path / "root").as_uri())

    def do_land(channel, day, **kw):
        return land(storage, channel, day, work_dir=str(tmp_path / "work"), **kw)

    return inbox, do_land, tmp_path / "root"


def test_lands_a_copy_with_size_and_sha256_in_the_manifest(setup):
    inbox, land_, root = setup
    data = b"header\r\nrow\r\n" * 1000
    (inbox / "bill_20261120.csv").write_bytes(data)
    manifest = land_(_channel(inbox), DAY)
    folder = root / "raw" / "wechatpay" / "2026-11-20"
    assert (folder / "bill_20261120.csv").read_bytes() == data
    (entry,) = manifest["files"]
    assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads((folder / "_manifest.json").read_text()) == manifest
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "bill_20261120.csv"]


def test_a_landed_statement_is_not_downloaded_again_unless_forced(setup):
    inbox, land_, root = setup
    (inbox / "bill_20261120.csv").write_bytes(b"first")
    land_(_channel(inbox), DAY)
    (inbox / "bill_20261120.csv").write_bytes(b"second version")
    assert land_(_channel(inbox), DAY)["files"][0]["size"] == 5
    assert land_(_channel(inbox), DAY, force=True)["files"][0]["size"] == len(b"second version")
    assert (root / "raw/wechatpay/2026-11-20/bill_20261120.csv").read_bytes() == b"second version"


def test_missing_statement_is_unavailable_exit_3_and_leaves_nothing(setup):
    inbox, land_, root = setup
    with pytest.raises(UnavailableError) as info:
        land_(_channel(inbox), DAY)
    assert info.value.exit_code == 3 and info.value.channel == "wechatpay" and info.value.date == "2026-11-20"
    folder = root / "raw" / "wechatpay" / "2026-11-20"
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape.csv", "a/b.csv", "..", ".hidden", "x\\..\\y", "a\x00b"])
def test_unsafe_remote_names_are_refused(name):
    with pytest.raises(FatalError):
        safe_name(name)


def test_a_pattern_producing_a_path_is_a_configuration_error(setup):
    inbox, land_, _ = setup
    with pytest.raises(ConfigError, match="not a plain file name") as info:
        land_(_channel(inbox, filename="../{date:%Y%m%d}.csv"), DAY)
    assert info.value.exit_code == 2


def test_a_large_statement_lands_by_a_rename_of_the_part_file_with_its_sha256(setup, tmp_path):
    inbox, land_, root = setup
    data = bytes(range(256)) * (300 << 10)  # 75 MiB: more than one kernel copy call
    (inbox / "bill_20261120.csv").write_bytes(data)
    manifest = land_(_channel(inbox), DAY)
    landed = root / "raw" / "wechatpay" / "2026-11-20" / "bill_20261120.csv"
    assert landed.read_bytes() == data and manifest["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))  # the part file became the landed file


def test_a_root_a_rename_cannot_reach_gets_a_copy_hashed_on_the_way(setup, tmp_path, monkeypatch):
    inbox, land_, root = setup
    data = b"header\r\nrow\r\n" * 100_000
    (inbox / "bill_20261120.csv").write_bytes(data)
    monkeypatch.setattr(Storage, "adopt_local_file", lambda self, local, *parts: False)  # e.g. an HDFS root
    manifest = land_(_channel(inbox), DAY)
    folder = root / "raw" / "wechatpay" / "2026-11-20"
    assert (folder / "bill_20261120.csv").read_bytes() == data
    assert manifest["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "bill_20261120.csv"]
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


@pytest.mark.parametrize("renames", [True, False])
def test_a_checksum_the_source_disagrees_with_lands_nothing(setup, tmp_path, monkeypatch, renames):
    from connectors import landing
    from connectors.base import FetchInfo
    from core.errors import IntegrityError

    inbox, land_, root = setup
    (inbox / "bill_20261120.csv").write_bytes(b"the bill")
    make = landing.make_connector

    def with_wrong_sha(channel):
        connector = make(channel)
        fetch = connector.fetch
        connector.fetch = lambda *a: FetchInfo(source=fetch(*a).source, expected_sha256="00" * 32)
        return connector

    monkeypatch.setattr(landing, "make_connector", with_wrong_sha)
    if not renames:
        monkeypatch.setattr(Storage, "adopt_local_file", lambda self, local, *parts: False)
    with pytest.raises(IntegrityError, match="sha256 of the received file") as info:
        land_(_channel(inbox), DAY)
    assert info.value.exit_code == 4 and info.value.file == "bill_20261120.csv"
    folder = root / "raw" / "wechatpay" / "2026-11-20"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


def test_the_kernel_copy_falls_back_to_reading_and_writing(setup, monkeypatch):
    import errno
    import os

    inbox, land_, root = setup
    data = os.urandom(3 << 20)
    (inbox / "bill_20261120.csv").write_bytes(data)

    def refuse(*_):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    monkeypatch.setattr(os, "sendfile", refuse)
    manifest = land_(_channel(inbox), DAY)
    assert (root / "raw/wechatpay/2026-11-20/bill_20261120.csv").read_bytes() == data
    assert manifest["files"][0]["size"] == len(data)


# -- dated folders -------------------------------------------------------------------------------------------------

WECHAT = "wechatpay_all_{date:%Y%m%d}.csv"


def _dated_inbox(tmp_path, *days):
    """inbox/wechatpay/YYYY-MM-DD/wechatpay_all_YYYYMMDD.csv for each day, each with its own bytes."""
    for day in days:
        folder = tmp_path / "inbox" / "wechatpay" / day.isoformat()
        folder.mkdir(parents=True)
        (folder / WECHAT.format(date=day)).write_bytes(f"the bill of {day}\r\n".encode())
    return tmp_path / "inbox" / "wechatpay"


def test_dated_folders_land_each_dates_own_file(setup, tmp_path):
    _, land_, root = setup
    day2 = DAY + dt.timedelta(days=1)
    inbox = _dated_inbox(tmp_path, DAY, day2)
    channel = _channel(f"{inbox}/{{date:%Y-%m-%d}}", filename=WECHAT)
    for day in (DAY, day2):
        manifest = land_(channel, day)
        landed = root / "raw" / "wechatpay" / day.isoformat()
        (entry,) = manifest["files"]
        assert entry["name"] == f"wechatpay_all_{day:%Y%m%d}.csv"  # the landed name stays a plain file name
        assert (landed / entry["name"]).read_bytes() == f"the bill of {day}\r\n".encode()
        assert entry["source"].endswith(f"/wechatpay/{day.isoformat()}/{entry['name']}")


def test_a_dated_path_in_a_channel_file_is_resolved_against_its_folder(setup, tmp_path):
    _, land_, root = setup
    _dated_inbox(tmp_path, DAY)
    conf = tmp_path / "conf" / "channels" / "wechatpay.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[channel]\nname = "wechatpay"\nnormalizer = "wechatpay"\n\n[download]\ntype = "localdir"\n'
                    'path = "../../inbox/wechatpay/{date:%Y-%m-%d}"\nfilename = "wechatpay_all_{date:%Y%m%d}.csv"\n',
                    encoding="utf-8")
    land_(load_channel(conf), DAY)
    assert (root / "raw/wechatpay/2026-11-20/wechatpay_all_20261120.csv").read_bytes() == b"the bill of 2026-11-20\r\n"


def test_a_folder_in_filename_is_exit_2_with_a_hint_to_use_path(setup, tmp_path):
    _, land_, root = setup
    inbox = _dated_inbox(tmp_path, DAY)
    channel = _channel(inbox, filename="{date:%Y-%m-%d}/wechatpay_all_{date:%Y%m%d}.csv")
    with pytest.raises(ConfigError) as info:
        land_(channel, DAY)
    err = info.value
    assert err.exit_code == 2 and err.channel == "wechatpay" and err.file == "<test>"
    assert "'2026-11-20/wechatpay_all_20261120.csv'" in err.message and "not a plain file name" in err.message
    assert "put the folder part in path" in err.hint
    assert not (root / "raw").exists()


@pytest.mark.parametrize("path", ["{date:%Y-%m-%d", "{day:%Y-%m-%d}", "{date.year.x}", "{0}"])
def test_a_bad_date_pattern_in_path_is_exit_2_naming_the_key(setup, tmp_path, path):
    _, land_, root = setup
    with pytest.raises(ConfigError) as info:
        land_(_channel(f"{tmp_path}/inbox/{path}", filename=WECHAT), DAY)
    err = info.value
    assert err.exit_code == 2 and err.channel == "wechatpay" and err.file == "<test>"
    assert "[download] path" in err.message and path in err.message
    assert not (root / "raw").exists()


# -- waiting -------------------------------------------------------------------------------------------------------

def _no_sleep(seconds):
    raise AssertionError(f"localdir waited {seconds:.0f} s for a file in a local folder")


def test_a_missing_file_is_exit_3_after_one_look_naming_the_expanded_path(setup, tmp_path):
    _, land_, root = setup
    inbox = _dated_inbox(tmp_path, DAY)
    today = dt.date.today()  # D+1 12:00 is still ahead: the old default would wait until then
    with pytest.raises(UnavailableError) as info:
        land_(_channel(f"{inbox}/{{date:%Y-%m-%d}}", filename=WECHAT), today, sleep=_no_sleep)
    err = info.value
    assert err.exit_code == 3 and err.channel == "wechatpay" and err.date == today.isoformat()
    assert "after 1 attempt(s)" in err.message
    assert f"{inbox}/{today.isoformat()}/wechatpay_all_{today:%Y%m%d}.csv" in err.message
    assert "put the file there and re-run" in err.hint and "deadline" in err.hint
    assert not (root / "raw" / "wechatpay" / today.isoformat()).exists()


def test_an_explicit_deadline_makes_localdir_wait_for_a_pushed_file(setup, tmp_path):
    _, land_, root = setup
    inbox = tmp_path / "push"
    inbox.mkdir()
    today = dt.date.today()  # D+1 23:59 is still ahead: only the deadline bounds the waiting
    name = f"bill_{today:%Y%m%d}.csv"
    sleeps = []

    def channel_pushes_while_we_wait(seconds):
        sleeps.append(seconds)
        (inbox / name).write_bytes(b"pushed late")

    manifest = land_(_channel(inbox, deadline="23:59"), today, sleep=channel_pushes_while_we_wait)
    assert manifest["attempts"] == 2 and len(sleeps) == 1 and 300 <= sleeps[0] <= 600  # the network rhythm
    assert (root / "raw" / "wechatpay" / today.isoformat() / name).read_bytes() == b"pushed late"


def test_explicit_max_attempts_retries_then_exit_3(setup):
    inbox, land_, _ = setup
    sleeps = []
    with pytest.raises(UnavailableError) as info:
        land_(_channel(inbox, deadline="", max_attempts=3, retry_interval=1, retry_jitter=0), DAY,
              sleep=sleeps.append)
    assert sleeps == [1.0, 1.0] and "after 3 attempt(s) (max_attempts 3)" in info.value.message


def test_a_bad_waiting_option_is_exit_2_naming_the_channel_file(setup):
    inbox, land_, _ = setup
    with pytest.raises(ConfigError, match="deadline must be HH:MM") as info:
        land_(_channel(inbox, deadline="noon"), DAY)
    assert info.value.exit_code == 2 and info.value.channel == "wechatpay" and info.value.file == "<test>"


# -- links, modes, limits ------------------------------------------------------------------------------------------

SECRET_LINE = b"root-only secret line 7f3a9c\n"


@pytest.mark.parametrize("link_kind", ["file", "folder"])
def test_a_link_to_a_private_file_outside_the_inbox_is_refused_and_its_content_shown_nowhere(
        setup, tmp_path, caplog, link_kind):
    import os

    inbox, land_, root = setup
    secret = tmp_path / "private" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(SECRET_LINE + b"more\n")
    os.chmod(secret, 0o600)
    if link_kind == "file":
        (inbox / "bill_20261120.csv").symlink_to(secret)
    else:  # the file itself is regular, but the folder link takes it out of the configured folder
        (inbox / "bill_20261120.csv").symlink_to(secret.parent / "secret.txt")
    caplog.set_level("DEBUG")
    with pytest.raises(FatalError) as info:
        land_(_channel(inbox), DAY)
    err = info.value
    assert err.exit_code == 1 and err.channel == "wechatpay" and err.date == "2026-11-20"
    assert "symbolic link" in err.message and "bill_20261120.csv" in str(err) and err.hint
    shown = str(err) + caplog.text
    assert SECRET_LINE.strip().decode() not in shown
    assert not (root / "raw" / "wechatpay").exists() or not any((root / "raw" / "wechatpay").rglob("*.csv"))
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


def test_landed_and_part_files_are_private_whatever_the_umask(setup, tmp_path, monkeypatch):
    import os
    import stat as st

    from connectors import base

    inbox, land_, root = setup
    (inbox / "bill_20261120.csv").write_bytes(b"header\r\nrow\r\n")
    os.chmod(inbox / "bill_20261120.csv", 0o644)
    modes = []
    open_fd = base.PartFile.open_fd

    def spy(self):
        fd = open_fd(self)
        modes.append(st.S_IMODE(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(base.PartFile, "open_fd", spy)
    old = os.umask(0o002)
    try:
        land_(_channel(inbox), DAY)
    finally:
        os.umask(old)
    landed = root / "raw" / "wechatpay" / "2026-11-20" / "bill_20261120.csv"
    assert st.S_IMODE(landed.stat().st_mode) == 0o600
    assert modes and set(modes) == {0o600}


def test_a_landed_copy_on_a_root_a_rename_cannot_reach_is_private_too(setup, monkeypatch):
    import os
    import stat as st

    inbox, land_, root = setup
    (inbox / "bill_20261120.csv").write_bytes(b"header\r\nrow\r\n")
    monkeypatch.setattr(Storage, "adopt_local_file", lambda self, local, *parts: False)
    old = os.umask(0o022)
    try:
        land_(_channel(inbox), DAY)
    finally:
        os.umask(old)
    assert st.S_IMODE((root / "raw/wechatpay/2026-11-20/bill_20261120.csv").stat().st_mode) == 0o600


def test_a_file_larger_than_max_bytes_is_an_integrity_failure_before_copying(setup, tmp_path):
    from core.errors import IntegrityError

    inbox, land_, root = setup
    (inbox / "bill_20261120.csv").write_bytes(b"x" * 5000)
    with pytest.raises(IntegrityError, match="max_bytes = 4096") as info:
        land_(_channel(inbox, max_bytes=4096), DAY)
    assert info.value.exit_code == 4 and info.value.file == "bill_20261120.csv" and "max_bytes" in info.value.hint
    assert not (root / "raw" / "wechatpay").exists() or not any((root / "raw" / "wechatpay").rglob("*.csv"))
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


def test_a_file_that_grows_past_max_bytes_while_copied_is_stopped(setup, tmp_path, monkeypatch):
    import os

    from connectors import localdir
    from core.errors import IntegrityError

    inbox, land_, root = setup
    path = inbox / "bill_20261120.csv"
    path.write_bytes(b"x" * 1000)
    monkeypatch.setattr(localdir, "CHUNK", 1000)
    real_fstat = os.fstat
    grown = []

    def grow_after_stat(fd):  # the channel keeps writing after we looked at the size
        result = real_fstat(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(path):
            grown.append(1)
            if len(grown) == 2:  # after the size was read for expect()
                with open(path, "ab") as fh:
                    fh.write(b"y" * 9000)
        return result

    monkeypatch.setattr(localdir.os, "fstat", grow_after_stat)
    with pytest.raises(IntegrityError, match="larger than max_bytes = 4096"):
        land_(_channel(inbox, max_bytes=4096), DAY)
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


@pytest.mark.parametrize("value", [0, -1, "20GB", True, 1.5])
def test_a_bad_max_bytes_is_a_configuration_error(setup, value):
    inbox, land_, _ = setup
    with pytest.raises(ConfigError, match="max_bytes") as info:
        land_(_channel(inbox, max_bytes=value), DAY)
    assert info.value.exit_code == 2 and info.value.file == "<test>"


def test_too_little_free_space_for_the_declared_size_stops_before_the_first_byte(setup, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    inbox, land_, root = setup
    (inbox / "bill_20261120.csv").write_bytes(b"x" * 5000)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(FatalError, match="not enough free space") as info:
        land_(_channel(inbox), DAY)
    assert info.value.exit_code == 1 and info.value.file == "bill_20261120.csv" and "work" in info.value.hint
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))
