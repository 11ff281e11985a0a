"""The localdir connector and landing: atomic copy, manifest, no second download, unsafe names."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from connectors.base import safe_name
from connectors.landing import land
from recon.config import ChannelSettings
from recon.errors import FatalError, UnavailableError
from recon.storage import Storage

DAY = dt.date(2026, 11, 20)


def _channel(inbox, filename="bill_{date:%Y%m%d}.csv") -> ChannelSettings:
    return ChannelSettings(name="wechatpay", normalizer="wechatpay", conf_file="<test>",
                           download={"type": "localdir", "path": str(inbox), "filename": filename,
                                     "max_attempts": 1})


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


def test_a_pattern_producing_a_path_is_refused(setup):
    inbox, land_, _ = setup
    with pytest.raises(FatalError):
        land_(_channel(inbox, filename="../{date:%Y%m%d}.csv"), DAY)


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
    from recon.errors import IntegrityError

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
