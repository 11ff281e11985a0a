"""The connector contract: which files a channel publishes for D, and how to fetch one attempt of one.

A connector implements ``fetch(name, day, part, attempt)``: write the file's
bytes into ``part`` (resuming from ``part.offset`` when the protocol can),
within ``attempt``'s limits, and return what it knows to verify them. It
raises ``NotPublishedYet`` or ``RetriableError`` for what a later attempt may
fix and ``FatalError`` for what it cannot (authentication, 4xx, bad host key,
bad certificate). Retries, deadlines, verification and landing are the
framework's (``connectors.landing``), not the connector's.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from recon.config import ChannelSettings
from recon.errors import ConfigError, FatalError, RetriableError

_SAFE_NAME = re.compile(r"^[^/\\\x00]{1,255}$")

# [download] options every connector understands (seconds unless said otherwise)
COMMON_OPTIONS = {
    "type", "filename", "connect_timeout", "read_timeout", "attempt_timeout", "retry_interval", "retry_jitter",
    "deadline", "max_wait", "max_attempts",
}


@dataclass(frozen=True)
class FetchInfo:
    """What a connector knows about a file it sent: where from, and how to verify it."""

    source: str
    expected_size: int | None = None
    expected_sha256: str | None = None
    expected_sha1: str | None = None  # WeChat Pay V3 gives SHA-1 of the (decompressed) bill


def safe_name(name: str, *, channel: str | None = None) -> str:
    """A remote file name, checked before it becomes part of a local path.

    Remote names are untrusted: no folders, no ``..``, nothing hidden.
    """
    if not _SAFE_NAME.match(name) or name in (".", "..") or name.startswith(".") or ".." in name:
        raise FatalError(f"refusing unsafe statement file name {name!r}", channel=channel,
                         hint="the remote name must be a plain file name; check the channel's filename pattern")
    return name


class Attempt:
    """One attempt's limits: socket timeouts and a wall-clock deadline.

    Socket timeouts end a hung read; ``check()`` ends a transfer that keeps
    trickling bytes past the attempt's wall-clock limit.
    """

    def __init__(self, number: int, *, connect_timeout: float, read_timeout: float, wall_clock: float,
                 clock: Callable[[], float] = time.monotonic):
        self.number = number
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.wall_clock = wall_clock
        self._clock = clock
        self._ends_at = clock() + wall_clock

    def remaining(self) -> float:
        return max(0.0, self._ends_at - self._clock())

    def check(self) -> None:
        """Raise RetriableError once the attempt has run past its wall-clock limit."""
        if self._clock() >= self._ends_at:
            raise RetriableError(f"attempt {self.number} exceeded its wall-clock limit of {self.wall_clock:g} s")


class PartFile:
    """The local ``.part`` file a download is written to (outside raw/), resumable across attempts."""

    def __init__(self, path: str, progress=None):
        self.path = path
        self.progress = progress
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fh = None

    @property
    def offset(self) -> int:
        """Bytes already received (a resumed transfer starts here)."""
        if self._fh is not None:
            self._fh.flush()
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def write(self, data: bytes) -> int:
        if self._fh is None:
            self._fh = open(self.path, "ab")  # a local scratch file by definition
        self._fh.write(data)
        if self.progress is not None:
            self.progress.advance(len(data))
        return len(data)

    def restart(self) -> None:
        """Forget what was received (the server cannot resume, or sent something else)."""
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)
        if self.progress is not None:
            self.progress.reset()

    def expect(self, total: int | None) -> None:
        if self.progress is not None:
            self.progress.set_total(total)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)


class Connector(ABC):
    """Fetches one channel's statement files. Subclasses implement ``fetch``.

    ``OPTIONS`` lists the subclass's own [download] keys; unknown keys are
    configuration errors.
    """

    OPTIONS: frozenset[str] = frozenset()

    def __init__(self, channel: ChannelSettings):
        self.channel = channel
        self.options = dict(channel.download)
        unknown = sorted(set(self.options) - COMMON_OPTIONS - set(self.OPTIONS))
        if unknown:
            raise ConfigError(f"unknown [download] key(s) {', '.join(unknown)} for type {self.options['type']!r}; "
                              f"allowed: {', '.join(sorted(COMMON_OPTIONS | set(self.OPTIONS)))}",
                              channel=channel.name, file=channel.conf_file)

    # -- helpers for subclasses --------------------------------------------------------------------------------
    def option(self, key: str, default=None, *, required: bool = False):
        if key in self.options:
            return self.options[key]
        if required:
            raise ConfigError(f"[download] needs {key}", channel=self.channel.name, file=self.channel.conf_file)
        return default

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """A secret named by ``<key>_env`` (environment variable) or ``<key>_file`` (a 0600 file)."""
        from connectors.secrets import resolve_secret

        return resolve_secret(self.options, key, channel=self.channel, required=required)

    def where(self, day: dt.date, name: str | None = None) -> dict:
        """Keyword arguments naming channel, date and file for errors."""
        return {"channel": self.channel.name, "date": day.isoformat(), "file": name}

    # -- the contract ------------------------------------------------------------------------------------------
    def statement_names(self, day: dt.date) -> list[str]:
        """The file names of D's statement, from the ``filename`` pattern (``{date:%Y%m%d}``)."""
        pattern = self.options.get("filename")
        if not pattern:
            raise ConfigError("[download] needs filename = \"…{date:%Y%m%d}…\"", channel=self.channel.name,
                              file=self.channel.conf_file)
        patterns = pattern if isinstance(pattern, list) else [pattern]
        try:
            return [safe_name(p.format(date=day), channel=self.channel.name) for p in patterns]
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"bad filename pattern {pattern!r}: {exc}", channel=self.channel.name,
                              file=self.channel.conf_file) from exc

    @abstractmethod
    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        """Write statement file ``name`` for ``day`` into ``part`` (one attempt)."""
