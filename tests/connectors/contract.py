"""The contract every network connector passes, against a real server on loopback that misbehaves on purpose.

A test module subclasses ``ConnectorContract`` and provides:

- ``connector_type``: the [download] type (e.g. ``"ftp"``);
- a ``server`` fixture yielding a running server object with
  ``publish(name, data)``, ``fault(kind, times=None)`` and ``logins`` (see
  ``FaultyServer``);
- ``download_options(self, server)``: the [download] options that reach it
  (host, port, credentials by reference, TLS or host-key pinning…), without
  filename or timing knobs;
- ``wrong_credentials(self, server)``: overrides that make authentication
  fail (e.g. a password_env pointing at a wrong password).

Fault kinds a server must support: ``"hang"`` (accept, then never answer the
file request), ``"half"`` (send half the file, then close cleanly),
``"reset"`` (send part, then reset the connection), ``"missing"`` (answer
"not available" the protocol's way). ``times=None`` means always; ``times=N``
the next N requests only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from typing import Protocol

import pytest

from connectors.landing import land
from core.errors import ConfigError, FatalError, UnavailableError
from core.settings import ChannelSettings
from core.storage import Storage

DAY = dt.date(2026, 11, 20)
NAME = "bill_20261120.csv"
# Large enough to need many reads, with a recognisable pattern (a truncated copy never matches).
STATEMENT = b"".join(b"`2026-11-20 10:00:%02d,`row %06d,`0.01\r\n" % (i % 60, i) for i in range(12000))
# Seconds instead of minutes; no time-of-day deadline (DAY's 12:00 is long past), max_wait bounds the retries.
FAST = {"connect_timeout": 2, "read_timeout": 1, "attempt_timeout": 10, "retry_interval": 0.2, "retry_jitter": 0,
        "max_wait": 3, "deadline": ""}


class FaultyServer(Protocol):
    logins: int

    def publish(self, name: str, data: bytes) -> None: ...

    def fault(self, kind: str, times: int | None = None) -> None: ...


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


class ConnectorContract:
    connector_type: str = ""

    def download_options(self, server) -> dict:  # pragma: no cover - subclasses implement
        raise NotImplementedError

    def wrong_credentials(self, server) -> dict:  # pragma: no cover - subclasses implement
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------------------
    def channel(self, server, **extra) -> ChannelSettings:
        options = {"type": self.connector_type, "filename": "bill_{date:%Y%m%d}.csv", **FAST}
        options.update(self.download_options(server))
        options.update(extra)
        return ChannelSettings(name="wechatpay", normalizer="wechatpay", download=options, conf_file="<test>")

    @pytest.fixture
    def landing(self, tmp_path):
        """land(channel) into a fresh root; returns (land function, raw folder of DAY)."""
        storage = Storage((tmp_path / "root").as_uri())

        def do_land(channel, **kw):
            return land(storage, channel, DAY, work_dir=str(tmp_path / "work"), **kw)

        return do_land, tmp_path / "root" / "raw" / "wechatpay" / DAY.isoformat()

    @staticmethod
    def assert_nothing_landed(raw_dir) -> None:
        assert not raw_dir.exists() or sorted(p.name for p in raw_dir.iterdir()) == [], \
            f"partial files left in raw/: {sorted(p.name for p in raw_dir.iterdir())}"

    # -- the contract ----------------------------------------------------------------------------------------
    def test_downloads_the_exact_bytes_and_lands_them_with_a_manifest(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        (entry,) = manifest["files"]
        assert entry["size"] == len(STATEMENT) and entry["sha256"] == hashlib.sha256(STATEMENT).hexdigest()
        assert entry["source"].split(":")[0] in ("ftp", "ftps", "sftp", "https")
        assert sorted(p.name for p in raw.iterdir()) == ["_manifest.json", NAME]

    def test_not_available_twice_then_served(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("missing", times=2)
        manifest = do_land(self.channel(server))
        assert manifest["attempts"] == 3
        assert (raw / NAME).read_bytes() == STATEMENT

    def test_still_missing_at_the_deadline_is_exit_3(self, server, landing):
        do_land, raw = landing
        server.fault("missing")
        with pytest.raises(UnavailableError) as info:
            do_land(self.channel(server))
        err = info.value
        assert err.exit_code == 3 and err.channel == "wechatpay" and err.file == NAME
        assert "last seen" in err.message
        self.assert_nothing_landed(raw)

    def test_a_server_that_hangs_is_abandoned_and_nothing_is_landed(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("hang")
        with pytest.raises(UnavailableError):
            do_land(self.channel(server))
        self.assert_nothing_landed(raw)

    @pytest.mark.parametrize("kind", ["half", "reset"])
    def test_a_cut_transfer_is_retried_and_lands_whole(self, server, landing, kind):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault(kind, times=1)
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["attempts"] >= 2

    @pytest.mark.parametrize("kind", ["half", "reset"])
    def test_a_transfer_always_cut_leaves_nothing_in_raw(self, server, landing, kind):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault(kind)
        with pytest.raises(UnavailableError):
            do_land(self.channel(server))
        self.assert_nothing_landed(raw)

    def test_a_wrong_password_fails_at_once_without_retrying(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        before = server.logins
        with pytest.raises(FatalError) as info:
            do_land(self.channel(server, **self.wrong_credentials(server)))
        assert info.value.exit_code == 1 and info.value.channel == "wechatpay"
        assert server.logins - before == 1
        self.assert_nothing_landed(raw)

    def test_a_filename_pattern_with_dotdot_is_a_configuration_error_before_any_connection(self, server, landing):
        do_land, raw = landing
        before = server.logins
        with pytest.raises(ConfigError, match="not a plain file name") as info:
            do_land(self.channel(server, filename="../{date:%Y%m%d}.csv"))
        assert info.value.exit_code == 2 and info.value.channel == "wechatpay"
        assert server.logins == before
        self.assert_nothing_landed(raw)

    @pytest.mark.slow
    def test_the_downloaded_statement_goes_through_the_whole_run(self, server, spark, tmp_path):
        from recon.demo import Demo, bill_name
        from tests.conftest import run_cli

        out = tmp_path / "demo"
        Demo(DAY, 1, orders_per_day=20).build().write(out)
        server.publish(bill_name(DAY), (out / "inbox" / "wechatpay" / bill_name(DAY)).read_bytes())
        options = {"type": self.connector_type, "filename": "wechatpay_all_{date:%Y%m%d}.csv", **FAST,
                   **self.download_options(server)}
        conf = out / "conf" / "channels" / "wechatpay.toml"
        text = conf.read_text(encoding="utf-8")
        conf.write_text(text[:text.index("[download]")] + "[download]\n" +
                        "".join(f"{k} = {toml_value(v)}\n" for k, v in options.items()), encoding="utf-8")
        assert run_cli("run", "--conf", str(out / "conf" / "pipeline.toml"), "--date", DAY.isoformat(),
                       spark=spark) == 0
        recon = out / "root" / "recon" / DAY.isoformat()
        assert (recon / "_SUCCESS").exists()
        manifest = json.loads((out / "root" / "raw" / "wechatpay" / DAY.isoformat() / "_manifest.json").read_text())
        assert manifest["connector"] == self.connector_type
        assert os.path.getsize(out / "root" / "raw" / "wechatpay" / DAY.isoformat() / bill_name(DAY)) > 0


class FolderContract:
    """The contract of a connector with a folder option (``FOLDER_OPTION``, e.g. ``remote_dir``): mixed into
    the test classes of those connectors beside ``ConnectorContract`` (an HTTPS ``url`` has no folder)."""

    def folder_option(self) -> str:
        from core.registry import load

        key = load(self.connector_type, package="connectors", attribute="CONNECTOR").FOLDER_OPTION
        assert key, f"{self.connector_type} declares no FOLDER_OPTION"
        return key

    def test_a_dated_folder_option_lands_each_dates_own_file(self, server, tmp_path):
        key = self.folder_option()
        days = (DAY, DAY + dt.timedelta(days=1))
        for day in days:
            server.publish(f"out/{day.isoformat()}/bill_{day:%Y%m%d}.csv", b"the bill of %s" % day.isoformat().encode())
        storage = Storage((tmp_path / "root").as_uri())
        channel = self.channel(server, **{key: "/out/{date:%Y-%m-%d}"})
        for day in days:
            manifest = land(storage, channel, day, work_dir=str(tmp_path / "work"))
            (entry,) = manifest["files"]
            assert entry["name"] == f"bill_{day:%Y%m%d}.csv"
            assert entry["source"].endswith(f"/out/{day.isoformat()}/{entry['name']}")
            landed = tmp_path / "root" / "raw" / "wechatpay" / day.isoformat() / entry["name"]
            assert landed.read_bytes() == b"the bill of %s" % day.isoformat().encode()

    def test_a_bad_date_pattern_in_the_folder_option_is_exit_2_before_any_connection(self, server, landing):
        key = self.folder_option()
        do_land, raw = landing
        before = server.logins
        with pytest.raises(ConfigError, match=f"bad \\[download\\] {key} pattern") as info:
            do_land(self.channel(server, **{key: "/out/{date:%Y-%m-%d"}))
        assert info.value.exit_code == 2 and info.value.channel == "wechatpay"
        assert server.logins == before
        self.assert_nothing_landed(raw)
