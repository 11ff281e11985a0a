"""Secrets come from the environment or a 0600 file; never from the configuration itself."""

from __future__ import annotations

import os

import pytest

from connectors.secrets import resolve_secret
from core.errors import ConfigError
from core.settings import ChannelSettings

CHANNEL = ChannelSettings(name="ftpbank", normalizer="wechatpay", download={"type": "ftp"}, conf_file="bank.toml")


def test_from_environment(monkeypatch):
    monkeypatch.setenv("BANK_FTP_PASSWORD", "s3cret")
    assert resolve_secret({"password_env": "BANK_FTP_PASSWORD"}, "password", channel=CHANNEL) == "s3cret"


def test_from_a_file_readable_only_by_its_owner(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    os.chmod(path, 0o600)
    assert resolve_secret({"password_file": str(path)}, "password", channel=CHANNEL) == "s3cret"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        resolve_secret({"password_file": str(path)}, "password", channel=CHANNEL)


def test_a_literal_secret_in_conf_is_refused_and_not_echoed():
    with pytest.raises(ConfigError) as info:
        resolve_secret({"password": "hunter2"}, "password", channel=CHANNEL)
    assert "hunter2" not in info.value.describe() and "bank.toml" in info.value.describe()


def test_missing_variable_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        resolve_secret({"password_env": "NOPE_NOT_SET"}, "password", channel=CHANNEL)
    assert resolve_secret({}, "token", channel=CHANNEL, required=False) is None
