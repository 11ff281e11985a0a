"""The one storage helper: every Python read and write under {root} goes through it.

``Storage`` wraps a pyarrow filesystem built from the root URI, so the same
code works on ``file://`` and ``hdfs://`` (``core.hdfs``: hdfs-native behind
pyarrow's interface, no JVM or libhdfs). Paths given to its methods are
relative to the root, written with ``/``. Spark gets full URIs from
``uri()``.

Publishing is atomic at the level of a folder: build the whole result under
a staging name, then ``swap_in`` renames it into place. A reader that trusts
only folders holding ``_SUCCESS`` never sees half a result.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import posixpath
import re
import uuid
from contextlib import contextmanager
from typing import Iterator

import pyarrow.fs as pafs

from core.hdfs import ESAFEMODE, HdfsHandler, HdfsLease, filesystem

CHUNK = 1 << 20


class Storage:
    """Files under one root URI."""

    def __init__(self, root_uri: str):
        self.root_uri = root_uri.rstrip("/")
        self.fs, self.base = filesystem(self.root_uri)

    # -- names ---------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """The filesystem path of a relative location."""
        rel = posixpath.join(*parts) if parts else ""
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"refusing a path outside the root: {rel!r}")
        return posixpath.join(self.base, rel) if rel else self.base

    def uri(self, *parts: str) -> str:
        """The full URI of a relative location (what Spark reads and writes)."""
        rel = posixpath.join(*parts) if parts else ""
        self.path(rel)  # validation only
        return f"{self.root_uri}/{rel}" if rel else self.root_uri

    # -- queries -------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def size(self, *parts: str) -> int:
        return self.fs.get_file_info(self.path(*parts)).size

    def list(self, *parts: str) -> list[str]:
        """Names (not paths) in a folder, sorted; empty if the folder is missing."""
        base = self.path(*parts)
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=False))
        return sorted(posixpath.basename(i.path) for i in infos)

    # -- reading -------------------------------------------------------------
    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as fh:
            return fh.read()

    def read_json(self, *parts: str):
        return json.loads(self.read_bytes(*parts).decode("utf-8"))

    @contextmanager
    def open_read(self, *parts: str) -> Iterator[io.BufferedReader]:
        """A buffered binary stream (iterable by line, like ``open(path, "rb")``)."""
        with self.fs.open_input_stream(self.path(*parts)) as fh:
            yield io.BufferedReader(_Readable(fh), buffer_size=CHUNK)

    def sha256(self, *parts: str) -> tuple[str, int]:
        """(hex sha256, size in bytes) of a file, streamed."""
        digest, size = hashlib.sha256(), 0
        with self.fs.open_input_stream(self.path(*parts)) as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    # -- writing -------------------------------------------------------------
    def makedirs(self, *parts: str) -> None:
        self.fs.create_dir(self.path(*parts), recursive=True)

    @contextmanager
    def open_write(self, *parts: str) -> Iterator[io.RawIOBase]:
        """A binary output stream; the parent folder is created."""
        target = self.path(*parts)
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        with self.fs.open_output_stream(target) as fh:
            yield fh

    @contextmanager
    def open_text_write(self, *parts: str, encoding: str = "utf-8") -> Iterator[io.TextIOWrapper]:
        with self.open_write(*parts) as raw:
            text = io.TextIOWrapper(_Writable(raw), encoding=encoding, newline="")
            try:
                yield text
            finally:
                text.flush()
                text.detach()

    def adopt_local_file(self, local_path: str, *parts: str) -> bool:
        """Move a local file (outside the root, e.g. a finished download) to a location under the root by a
        rename, when the root is this machine's filesystem on the same device; the parent folder is created.

        Returns False, leaving the file where it is, when a rename cannot do it (an HDFS root, another
        device): the caller then copies it.
        """
        if not isinstance(self.fs, pafs.LocalFileSystem):
            return False
        target = self.path(*parts)
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        try:
            os.replace(local_path, target)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP):
                return False
            raise
        return True

    def write_bytes(self, data: bytes, *parts: str) -> None:
        with self.open_write(*parts) as fh:
            fh.write(data)

    def write_json(self, obj, *parts: str) -> None:
        self.write_bytes((json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"),
                         *parts)

    def restrict(self, *parts: str, mode: int = 0o600) -> None:
        """Make a file under a local root readable by this user only (statements carry payer data); other
        filesystems keep their own permission model (HDFS: the folder's ACLs)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            os.chmod(self.path(*parts), mode)

    def move(self, src: str, dst: str) -> None:
        self.fs.move(self.path(src), self.path(dst))

    def copy(self, src: str, dst: str) -> None:
        """Copy a file (its folder is made); the bytes do not pass through Python on a local root."""
        self.makedirs(posixpath.dirname(dst))
        self.fs.copy_file(self.path(src), self.path(dst))

    def delete(self, *parts: str) -> None:
        """Delete a file or a folder tree; nothing if it is missing."""
        target = self.path(*parts)
        info = self.fs.get_file_info(target)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(target)
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(target)

    # -- the run lock ------------------------------------------------------------------------------------------
    def root_lock(self, what: str):
        """A lock on the root itself, for roots other hosts can reach (``HdfsLease`` on HDFS), else None: a
        local root is guarded by the run lock of the work folder (``recon.lock.RunLock``)."""
        handler = getattr(self.fs, "handler", None)
        if not isinstance(handler, HdfsHandler):
            return None
        return HdfsLease(handler, self.path(".recon.lock"), what)

    # -- atomic folders ------------------------------------------------------
    def staging(self, parent: str, name: str) -> str:
        """A fresh staging folder name beside the final one (hidden from Spark and readers)."""
        staged = posixpath.join(parent, f".staging-{name}-{uuid.uuid4().hex[:12]}")
        self.makedirs(staged)
        return staged

    def swap_in(self, staged: str, final: str) -> None:
        """Replace folder ``final`` by ``staged`` with renames only.

        The old folder is renamed aside first and deleted last, so at every
        moment ``final`` is either the complete old result, absent, or the
        complete new one.
        """
        retired = None
        if self.exists(final):
            retired = posixpath.join(posixpath.dirname(final),
                                     f".retired-{posixpath.basename(final)}-{uuid.uuid4().hex[:12]}")
            self.move(final, retired)
        try:
            self.move(staged, final)
        except BaseException:
            if retired:  # put the previous result back (Storage.recover would, under the next run's lock)
                self.move(retired, final)
            raise
        if retired:
            self.delete(retired)

    def recover(self, parent: str) -> None:
        """Undo what a killed run left in ``parent``. Call it only while holding the run lock.

        A ``.retired-{name}-{id}`` folder is the previous complete result of
        ``name``: if the run died between the two renames of ``swap_in`` it is
        the only copy, so it is moved back; otherwise it is deleted. Staging
        folders of killed runs are deleted.
        """
        for entry in self.list(parent):
            if entry.startswith(".staging-"):
                self.delete(parent, entry)
            elif entry.startswith(".retired-"):
                name = entry[len(".retired-"):].rsplit("-", 1)[0]
                if name and not self.exists(parent, name):
                    self.move(posixpath.join(parent, entry), posixpath.join(parent, name))
                else:
                    self.delete(parent, entry)


class _Writable(io.RawIOBase):
    """Adapts a pyarrow output stream to what TextIOWrapper expects."""

    def __init__(self, stream):
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._stream.write(bytes(b))
        return len(b)


class _Readable(io.RawIOBase):
    """Adapts a pyarrow input stream to what BufferedReader expects."""

    def __init__(self, stream):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._stream.readinto(buffer)  # straight into the caller's buffer: no intermediate copy


# -- a disk that cannot take the write -------------------------------------------------------------------------

DISK_PROBLEMS = {
    errno.ENOSPC: ("the filesystem is full (no space left on device)",
                   "free space on that filesystem (or give the job a larger one), then re-run"),
    errno.EDQUOT: ("the disk quota is exhausted",
                   "raise the quota or free space on that filesystem, then re-run"),
    errno.EROFS: ("the filesystem is mounted read-only",
                  "check the mount (remount it read-write, or point [pipeline] root at a writable one), then "
                  "re-run"),
    errno.EIO: ("the storage failed in the middle of the write (on HDFS: a DataNode lost, and the write's retries "
                "used up)",
                "check the storage (HDFS: hdfs dfsadmin -report lists dead DataNodes), then re-run"),
    errno.EACCES: ("permission denied",
                   "give the run's user write access there (on HDFS the user is HADOOP_USER_NAME or the Kerberos "
                   "principal: hdfs dfs -chown/-chmod or an ACL on the root), then re-run"),
    ESAFEMODE: ("the HDFS NameNode is in safe mode (it takes no writes)",
                "wait until it leaves safe mode (hdfs dfsadmin -safemode get; after a restart it leaves by itself "
                "once enough blocks are reported) or ask the cluster's administrators, then re-run"),
}
# the same conditions as Java (Hadoop, Spark) and the C library word them
DISK_PROBLEM_WORDS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                      "Read-only file system": errno.EROFS,
                      # the HDFS NameNode's refusals (Spark's Java client and core.hdfs both name them)
                      "DSQuotaExceededException": errno.EDQUOT, "NSQuotaExceededException": errno.EDQUOT,
                      "DiskSpace quota of": errno.EDQUOT, "NameSpace quota": errno.EDQUOT,
                      "AccessControlException": errno.EACCES, "SafeModeException": ESAFEMODE,
                      "Name node is in safe mode": ESAFEMODE}
_QUOTED_PATH = re.compile(r"'(/[^']+)'")


def disk_problem(exc: BaseException | str) -> int | None:
    """The errno (ENOSPC, EDQUOT, EROFS) when ``exc`` (an exception or an error text) says the disk could not
    take a write, else None."""
    if isinstance(exc, OSError) and exc.errno in DISK_PROBLEMS:
        return exc.errno
    text = exc if isinstance(exc, str) else str(exc)
    for words, code in DISK_PROBLEM_WORDS.items():
        if words in text:
            return code
    return None


def disk_error(exc: BaseException | str, *, writing: str, channel: str | None = None, date: str | None = None,
               code: int | None = None, file: str | None = None):
    """The ReconError (exit 1) for a write that failed because the disk is full or read-only, or None when
    ``exc`` is something else. ``writing`` says what was being written, e.g. a folder's URI; the file the
    system named (when it named one, else ``file``) is the error's file."""
    from core.errors import ReconError

    code = code or disk_problem(exc)
    if code is None:
        return None
    what, hint = DISK_PROBLEMS[code]
    m = _QUOTED_PATH.search(exc if isinstance(exc, str) else str(exc))
    file = m.group(1) if m else (exc.filename if isinstance(exc, OSError) and exc.filename else file)
    return ReconError(f"cannot write {writing}: {what}; nothing was published, the result published before is "
                      f"unchanged", channel=channel, date=date, file=str(file) if file else None, hint=hint)
