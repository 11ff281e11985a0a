"""The connector contract: which files a channel publishes for D, and how to fetch one."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO

from recon.config import ChannelSettings
from recon.errors import ConfigError, FatalError

_SAFE_NAME = re.compile(r"^[^/\\\x00]{1,255}$")


@dataclass(frozen=True)
class FetchInfo:
    """What a connector knows about a file it sent: where from, and how to verify it."""

    source: str
    expected_size: int | None = None
    expected_sha256: str | None = None


def safe_name(name: str, *, channel: str | None = None) -> str:
    """A remote file name, checked before it becomes part of a local path.

    Remote names are untrusted: no folders, no ``..``, nothing hidden.
    """
    if not _SAFE_NAME.match(name) or name in (".", "..") or name.startswith(".") or ".." in name:
        raise FatalError(f"refusing unsafe statement file name {name!r}", channel=channel,
                         hint="the remote name must be a plain file name; check the channel's filename pattern")
    return name


class Connector(ABC):
    """Fetches one channel's statement files. Subclasses implement ``fetch``."""

    def __init__(self, channel: ChannelSettings):
        self.channel = channel
        self.options = dict(channel.download)
        self.options.pop("type", None)

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
    def fetch(self, name: str, day: dt.date, sink: BinaryIO) -> FetchInfo:
        """Write the bytes of statement file ``name`` for ``day`` to ``sink``.

        Raise ``UnavailableError`` when it is not published yet, ``RetriableError``
        for transient failures and ``FatalError`` for anything no retry fixes.
        """
