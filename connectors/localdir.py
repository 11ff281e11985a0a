"""Statements dropped into a local folder (by a channel's push, a mount, or a person)."""

from __future__ import annotations

import datetime as dt
import os

from connectors.base import Attempt, Connector, FetchInfo, PartFile
from recon.errors import FatalError, NotPublishedYet

CHUNK = 1 << 20


class LocalDirConnector(Connector):
    """Copies ``{path}/{filename}`` for D. Options: ``path`` (folder), ``filename`` (pattern)."""

    OPTIONS = frozenset({"path"})

    def __init__(self, channel):
        super().__init__(channel)
        self.folder = self.option("path", required=True)

    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        source = os.path.join(self.folder, name)
        try:
            fh = open(source, "rb")  # a local inbox folder by definition, never HDFS
        except FileNotFoundError:
            raise NotPublishedYet(f"{name} is not in {self.folder} yet", **self.where(day, source),
                                  hint="wait for the channel to publish it, or put the file there and re-run") \
                from None
        except OSError as exc:
            raise FatalError(f"cannot read {source}: {exc.strerror}", **self.where(day, source)) from exc
        with fh:
            expected = os.fstat(fh.fileno()).st_size
            part.expect(expected)
            while chunk := fh.read(CHUNK):
                part.write(chunk)
                attempt.check()
        return FetchInfo(source=f"file://{os.path.abspath(source)}", expected_size=expected)


CONNECTOR = LocalDirConnector
