"""Secrets by reference: an environment variable or a file only its owner can read. Never in conf."""

from __future__ import annotations

import os
import stat

from recon.config import ChannelSettings
from recon.errors import ConfigError


def resolve_secret(options: dict, key: str, *, channel: ChannelSettings, required: bool = True) -> str | None:
    """The secret ``key`` from ``<key>_env`` or ``<key>_file``; a literal ``<key>`` in conf is refused."""
    where = dict(channel=channel.name, file=channel.conf_file)
    if key in options:
        raise ConfigError(f"[download] {key} must not be written in the configuration; use {key}_env = \"VAR\" "
                          f"or {key}_file = \"/path/readable/only/by/the/job\"", **where)
    if f"{key}_env" in options:
        var = options[f"{key}_env"]
        value = os.environ.get(var)
        if value is None:
            raise ConfigError(f"environment variable {var} (for {key}) is not set", **where)
        return value
    if f"{key}_file" in options:
        path = options[f"{key}_file"]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigError(f"secret file {path} (for {key}) does not exist", **where) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"secret file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                              f"chmod 600 it", **where)
        with open(path, encoding="utf-8") as fh:  # a local secret file, never on HDFS
            return fh.read().strip()
    if required:
        raise ConfigError(f"[download] needs {key}_env or {key}_file", **where)
    return None
