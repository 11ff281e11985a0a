"""Statements dropped into a local folder (by a channel's SFTP push, a mount, or a person)."""

from __future__ import annotations

import datetime as dt
import os
from typing import BinaryIO

from connectors.base import Connector, FetchInfo
from recon.errors import ConfigError, FatalError, UnavailableError

CHUNK = 1 << 20


class LocalDirConnector(Connector):
    """Copies ``{path}/{filename}`` for D. Options: ``path`` (folder), ``filename`` (pattern)."""

    def __init__(self, channel):
        super().__init__(channel)
        if "path" not in self.options:
            raise ConfigError("[download] type localdir needs path = \"<folder>\"", channel=channel.name,
                              file=channel.conf_file)
        self.folder = self.options["path"]

    def fetch(self, name: str, day: dt.date, sink: BinaryIO) -> FetchInfo:
        source = os.path.join(self.folder, name)
        try:
            fh = open(source, "rb")  # a local inbox folder by definition, never HDFS
        except FileNotFoundError:
            raise UnavailableError(f"statement {name} is not in {self.folder} yet", channel=self.channel.name,
                                   date=day.isoformat(), file=source,
                                   hint="wait for the channel to publish it, or put the file there and re-run") from None
        except OSError as exc:
            raise FatalError(f"cannot read {source}: {exc.strerror}", channel=self.channel.name,
                             date=day.isoformat(), file=source) from exc
        with fh:
            expected = os.fstat(fh.fileno()).st_size
            while chunk := fh.read(CHUNK):
                sink.write(chunk)
        return FetchInfo(source=f"file://{os.path.abspath(source)}", expected_size=expected)


CONNECTOR = LocalDirConnector
