"""Secrets by reference: an environment variable or a file only its owner can read. Never in conf.

Every configuration table that needs a secret (a channel's [download], the
pipeline's [local_orders] and [fixes]) names it as ``<key>_env = "VAR"`` or
``<key>_file = "/path"``; a literal ``<key>`` is refused, and the value is
never logged or echoed.
"""

from __future__ import annotations

import os
import stat

from core.errors import ConfigError


def read_secret(table: dict, key: str, *, section: str, required: bool = True, **where) -> str | None:
    """The secret ``key`` of ``table`` (``[section]`` in messages); ``where`` names channel/file for errors."""
    if key in table:
        raise ConfigError(f"[{section}] {key} must not be written in the configuration; use {key}_env = \"VAR\" "
                          f"or {key}_file = \"/path/readable/only/by/the/job\"", **where)
    if f"{key}_env" in table:
        var = table[f"{key}_env"]
        value = os.environ.get(var)
        if value is None:
            raise ConfigError(f"environment variable {var} ([{section}] {key}_env) is not set", **where,
                              hint="export it in the job's environment")
        return value
    if f"{key}_file" in table:
        path = table[f"{key}_file"]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigError(f"secret file {path} ([{section}] {key}_file) does not exist", **where) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"secret file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                              f"chmod 600 it", **where)
        with open(path, encoding="utf-8") as fh:  # a local secret file, never on HDFS
            return fh.read().strip()
    if required:
        raise ConfigError(f"[{section}] needs {key}_env or {key}_file", **where)
    return None
