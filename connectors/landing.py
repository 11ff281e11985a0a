"""Landing: download to a local .part file (outside raw/), verify, move (or copy) into raw/ under a hidden
name, rename, write a manifest.

A file is never visible under raw/ until it is complete and verified, and
the manifest is written last. A later run that finds the landed file
(manifest and matching sizes) does not download it again unless forced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import posixpath
import time

from connectors.base import Connector, PartFile
from connectors.progress import Progress
from connectors.retry import RetryPolicy, fetch_with_retries
from core import registry
from core.errors import ConfigError, IntegrityError, RetriableError
from core.settings import ChannelSettings
from core.storage import Storage
from schemas.layout import MANIFEST, REFETCH, landed_manifest, raw_dir

log = logging.getLogger(__name__)


def make_connector(channel: ChannelSettings) -> Connector:
    cls = registry.load(channel.download["type"], package="connectors", attribute="CONNECTOR",
                        conf_file=channel.conf_file)
    return cls(channel)


def mark_for_refetch(storage: Storage, channel: str, day: dt.date, reason: str) -> None:
    """Record that D's landed statement is damaged, so the next ``recon run``/``recon download`` fetches it
    again (a plain re-run would otherwise reuse the bad copy). The landed file stays until it is replaced."""
    folder = raw_dir(channel, day)
    if storage.is_file(folder, MANIFEST):
        storage.write_json({"channel": channel, "date": day.isoformat(), "reason": reason}, folder, REFETCH)


HASH_CHUNK = 8 << 20  # bytes hashed (and copied) per read


def _digests(src, *, sha1: bool = False, copy_to=None) -> tuple[str, str | None]:
    """(sha256, sha1 or None) of a binary stream, read once; ``copy_to`` (a binary stream) gets the bytes too.

    SHA-1 is computed only when asked (to compare with channels that publish it).
    """
    digests = [hashlib.sha256()] + ([hashlib.sha1()] if sha1 else [])
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    while n := src.readinto(buf):
        chunk = view[:n]
        for digest in digests:
            digest.update(chunk)
        if copy_to is not None:
            copy_to.write(bytes(chunk))  # its own bytes: a stream may keep what it is given
    return digests[0].hexdigest(), (digests[1].hexdigest() if sha1 else None)


def land(storage: Storage, channel: ChannelSettings, day: dt.date, *, work_dir: str, timezone: str = "Asia/Shanghai",
         force: bool = False, policy: RetryPolicy | None = None, sleep=time.sleep) -> dict:
    """Fetch D's statement of ``channel`` into raw/ unless it is already there; returns the manifest."""
    d = day.isoformat()
    if not force:
        manifest = landed_manifest(storage, channel.name, day, reuse=True)
        if manifest:
            log.info("channel %s date %s: statement already landed (%s), not downloading again",
                     channel.name, d, ", ".join(f["name"] for f in manifest["files"]))
            return manifest
    connector = make_connector(channel)
    try:
        policy = policy or RetryPolicy.from_options(connector.waiting_options(), day, timezone)
    except ConfigError as exc:  # the policy does not know which file it was read from
        exc.channel, exc.file = exc.channel or channel.name, exc.file or channel.conf_file
        exc.args = (exc.describe(),)
        raise
    folder = raw_dir(channel.name, day)
    started = time.time()
    entries, total_attempts = [], 0
    for name in connector.statement_names(day):
        part = PartFile(os.path.join(work_dir, "parts", channel.name, d, name + ".part"),
                        progress=Progress(f"{channel.name} {name}"), max_bytes=connector.max_bytes,
                        where={"channel": channel.name, "date": d, "file": name})
        part.discard()  # a fresh landing never trusts leftovers of another run

        def one(attempt, name=name, part=part):
            if not getattr(connector, "RESUMABLE", False):
                part.restart()
            try:
                info = connector.fetch(name, day, part, attempt)
            finally:
                part.close()
            size = part.offset
            if info.expected_size is not None and size != info.expected_size:
                # a short file can be resumed by a connector that resumes; anything else starts over
                if size > info.expected_size or not getattr(connector, "RESUMABLE", False):
                    part.restart()
                raise RetriableError(f"received {size} bytes, the source announced {info.expected_size}")
            return info

        log.info("channel %s date %s: downloading %s", channel.name, d, name)
        try:
            info, attempts = fetch_with_retries(one, policy, channel=channel.name, date=d, file=name, sleep=sleep,
                                                unavailable_hint=connector.UNAVAILABLE_HINT)
        except BaseException:
            part.discard()
            raise
        part.progress.finish()
        total_attempts += attempts
        size = part.offset
        hidden = posixpath.join(folder, f".{name}.part")
        part.close()
        # Into raw/ under the hidden name, reading the bytes once: a rename when the root is this machine's
        # disk (then hashed where they landed), else one pass that hashes and copies. Nothing is visible
        # before the checks below, and a failed check removes it.
        want_sha1 = bool(info.expected_sha1)
        if storage.adopt_local_file(part.path, hidden):
            with storage.open_read(hidden) as landed:
                sha256, sha1 = _digests(landed, sha1=want_sha1)
        else:
            with open(part.path, "rb", buffering=0) as src, storage.open_write(hidden) as dst:  # the local part
                sha256, sha1 = _digests(src, sha1=want_sha1, copy_to=dst)
            storage.restrict(hidden)  # a copy gets the umask's mode; the statement stays private
        for kind, expected, actual in (("sha256", info.expected_sha256, sha256), ("SHA-1", info.expected_sha1, sha1)):
            if expected and expected.lower() != actual:
                storage.delete(hidden)
                part.discard()
                raise IntegrityError(f"{kind} of the received file is {actual}, the channel says {expected}",
                                     channel=channel.name, date=d, file=name,
                                     hint="the channel served a different file than it described; nothing was "
                                          "landed; run again later or ask the channel")
        storage.move(hidden, posixpath.join(folder, name))
        part.discard()
        entries.append({"name": name, "source": info.source, "size": size, "sha256": sha256, "attempts": attempts})
        log.info("channel %s date %s: landed %s (%d bytes, sha256 %s, %d attempt(s))", channel.name, d, name, size,
                 sha256[:12], attempts)
    manifest = {
        "channel": channel.name,
        "date": d,
        "connector": channel.download["type"],
        "files": entries,
        "attempts": total_attempts,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    storage.write_json(manifest, folder, f".{MANIFEST}.part")
    storage.move(posixpath.join(folder, f".{MANIFEST}.part"), posixpath.join(folder, MANIFEST))
    storage.delete(folder, REFETCH)  # a damaged copy marked by normalize has just been replaced
    return manifest
