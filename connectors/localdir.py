"""Statements dropped into a local folder (by a channel's push, a mount, or a person)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat

from connectors.base import Attempt, Connector, FetchInfo, PartFile
from core.errors import FatalError, NotPublishedYet

CHUNK = 64 << 20  # bytes per copy call; the attempt's clock is checked between calls
# copy_file_range / sendfile refusing this pair of files: fall back to reading and writing
_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}


class LocalDirConnector(Connector):
    """Copies ``{path}/{filename}`` for D. Options: ``path`` (folder, may be dated: ``…/{date:%Y-%m-%d}``),
    ``filename`` (pattern).

    A local folder is not a server that publishes late: the file is there when the run starts or it is
    not, so by default it is looked for once and a missing file is exit 3 at once, naming the path. A
    channel that pushes into the folder later sets ``deadline``/``max_wait``/``max_attempts`` to wait.
    """

    OPTIONS = frozenset({"path"})
    FOLDER_OPTION = "path"
    DEFAULT_WAITING = {"deadline": "", "max_attempts": 1}
    UNAVAILABLE_HINT = ("put the file there and re-run this date; if the channel pushes it into the folder later, "
                        "set deadline (or max_wait) in the channel's [download] to wait for it")

    def __init__(self, channel):
        super().__init__(channel)
        self.option("path", required=True)

    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        folder = self.folder(day)
        source = os.path.join(folder, name)
        with self._open(folder, source, day) as fh:
            expected = os.fstat(fh.fileno()).st_size
            part.expect(expected)
            _copy(fh, part, attempt)
        return FetchInfo(source=f"file://{os.path.abspath(source)}", expected_size=expected)

    def _open(self, folder: str, source: str, day: dt.date):
        """The statement file, opened without following a link: a symlink (or anything resolving outside
        the configured folder, or not a regular file) is refused, since it would copy into raw/ a file
        nobody put in the inbox. Fatal (exit 1), not a configuration error: the configuration is fine, the
        inbox holds something it must not. The message names the path, never the file's content."""
        where = self.where(day, source)
        refuse = ("remove it and put the statement itself (a regular file) in the folder; if nobody made "
                  "the link, treat it as a security incident")
        if os.path.islink(source):
            raise FatalError(f"refusing {source}: it is a symbolic link (to {os.readlink(source)!r}); statements "
                             f"are never read through a link", **where, hint=refuse)
        real_folder = os.path.realpath(folder)
        if os.path.commonpath([real_folder, os.path.realpath(source)]) != real_folder:
            raise FatalError(f"refusing {source}: it resolves outside the configured folder {folder}", **where,
                             hint=refuse)
        try:
            # O_NOFOLLOW closes the race with a link made after the check; O_NONBLOCK keeps a FIFO from hanging.
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotPublishedYet(f"{os.path.basename(source)} is not in {folder} (looked for {source})", **where,
                                  hint="put the file there and re-run") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FatalError(f"refusing {source}: it is a symbolic link", **where, hint=refuse) from None
            raise FatalError(f"cannot read {source}: {exc.strerror}", **where) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FatalError(f"refusing {source}: not a regular file", **where, hint=refuse)
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=0)  # a local inbox folder by definition, never HDFS


def _copy(src, part: PartFile, attempt: Attempt) -> None:
    """Append ``src`` to the part file, in the kernel when it can (no bytes through Python), else by chunks.

    The part file is this connector's to fill: localdir does not resume, so the landing starts each attempt
    with no part file, and the part file's path is where PartFile reads its size from.
    """
    part.close()
    fd = part.open_fd()  # 0600, at its end; not O_APPEND: copy_file_range refuses it
    with open(fd, "wb") as dst:  # the local part file (an existing one is appended to, not truncated)
        start = dst.tell()
        for copy in (os.copy_file_range if hasattr(os, "copy_file_range") else None, _sendfile):
            if copy is None:
                continue
            try:
                while n := copy(src.fileno(), dst.fileno(), CHUNK):
                    _advance(part, n, dst)
                    attempt.check()
                return
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY or dst.tell() != start:
                    raise  # a refusal after bytes were copied is a real error
        buf = bytearray(8 << 20)
        while n := src.readinto(buf):
            part.account(n, dst.tell() + n)  # checked before the bytes are written
            dst.write(memoryview(buf)[:n])
            attempt.check()


def _sendfile(src_fd: int, dst_fd: int, count: int) -> int:
    return os.sendfile(dst_fd, src_fd, None, count)


def _advance(part: PartFile, n: int, dst) -> None:
    """Count ``n`` bytes the kernel copied (a file that grows while copied still meets max_bytes)."""
    part.account(n, os.fstat(dst.fileno()).st_size)


CONNECTOR = LocalDirConnector
