"""Landing: download to a temporary name, verify, rename into raw/, write a manifest.

A file is never visible under its final name until it is complete and
verified. A later run that finds the landed file (manifest and matching
size) does not download it again unless forced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import posixpath
import time

from connectors.base import Connector
from recon import registry
from recon.config import ChannelSettings
from recon.errors import IntegrityError
from recon.storage import Storage

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"


def raw_dir(channel: str, day: dt.date) -> str:
    return posixpath.join("raw", channel, day.isoformat())


def make_connector(channel: ChannelSettings) -> Connector:
    cls = registry.load(channel.download["type"], package="connectors", attribute="CONNECTOR",
                        conf_file=channel.conf_file)
    return cls(channel)


class _HashingSink:
    """Counts and hashes bytes on their way to the .part file."""

    def __init__(self, stream):
        self.stream, self.size, self.digest = stream, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.stream.write(data)
        self.size += len(data)
        self.digest.update(data)
        return len(data)


def landed_manifest(storage: Storage, channel: str, day: dt.date) -> dict | None:
    """The manifest of D's landed statement if every file it lists is present with its size."""
    folder = raw_dir(channel, day)
    if not storage.is_file(folder, MANIFEST):
        return None
    manifest = storage.read_json(folder, MANIFEST)
    for entry in manifest["files"]:
        if not storage.is_file(folder, entry["name"]) or storage.size(folder, entry["name"]) != entry["size"]:
            return None
    return manifest


def land(storage: Storage, channel: ChannelSettings, day: dt.date, *, force: bool = False) -> dict:
    """Fetch D's statement of ``channel`` into raw/ unless it is already there; returns the manifest."""
    if not force:
        manifest = landed_manifest(storage, channel.name, day)
        if manifest:
            log.info("channel %s date %s: statement already landed (%s), not downloading again",
                     channel.name, day, ", ".join(f["name"] for f in manifest["files"]))
            return manifest
    connector = make_connector(channel)
    folder = raw_dir(channel.name, day)
    started = time.time()
    entries = []
    for name in connector.statement_names(day):
        part = posixpath.join(folder, f".{name}.part")
        try:
            with storage.open_write(part) as out:
                sink = _HashingSink(out)
                info = connector.fetch(name, day, sink)
            if info.expected_size is not None and sink.size != info.expected_size:
                raise IntegrityError(f"received {sink.size} bytes, the source announced {info.expected_size}",
                                     channel=channel.name, date=day.isoformat(), file=name,
                                     hint="the transfer was cut short; run again to download it anew")
            sha = sink.digest.hexdigest()
            if info.expected_sha256 and sha != info.expected_sha256.lower():
                raise IntegrityError(f"sha256 {sha} differs from the source's {info.expected_sha256}",
                                     channel=channel.name, date=day.isoformat(), file=name,
                                     hint="the file was corrupted in transit; run again to download it anew")
        except BaseException:
            storage.delete(part)
            raise
        storage.move(part, posixpath.join(folder, name))
        entries.append({"name": name, "source": info.source, "size": sink.size, "sha256": sha})
        log.info("channel %s date %s: landed %s (%d bytes, sha256 %s)", channel.name, day, name, sink.size, sha[:12])
    manifest = {
        "channel": channel.name,
        "date": day.isoformat(),
        "connector": channel.download["type"],
        "files": entries,
        "attempts": 1,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    storage.write_json(manifest, folder, f".{MANIFEST}.part")
    storage.move(posixpath.join(folder, f".{MANIFEST}.part"), posixpath.join(folder, MANIFEST))
    return manifest
