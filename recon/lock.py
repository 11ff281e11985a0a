"""One run at a time: an exclusive, non-blocking flock on a local file.

Two runs on the same root would corrupt each other (reliability.md). `recon`
locks ``{work_dir}/recon.lock`` for every command that writes; the cron
wrapper locks one file per configuration with the same class. A second run
exits at once with a clear "already running" naming the holder. The kernel
releases the lock when the holder dies, so a killed run never leaves it stuck.

A root other hosts reach (HDFS) is locked too, on the root itself (``Storage.root_lock``: a file held open
under an HDFS lease), so runs on two edge nodes, or a cluster-mode driver in a YARN container, exclude each
other as well. ``run_lock`` takes both.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from contextlib import contextmanager

from core.errors import ReconError


class AlreadyRunning(ReconError):
    """Another run holds the lock."""

    exit_code = 1


class RunLock:
    """``with RunLock(work_dir): ...`` raises AlreadyRunning; ``try_acquire()``/``release()`` do not."""

    def __init__(self, work_dir: str | None = None, what: str = "recon", *, path: str | None = None):
        if path is None:
            path = os.path.join(work_dir, "recon.lock")  # its folder is made by try_acquire
        self.path = path
        self.what = what
        self.holder = ""
        self._fh = None

    def try_acquire(self) -> bool:
        """Take the lock, or say who holds it (``holder``) and return False."""
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fh = open(self.path, "a+")  # a local lock file by definition
        except OSError as exc:
            raise ReconError(f"cannot open the run lock {self.path}: {exc.strerror or exc}", file=self.path,
                             hint="check that the work folder is writable (a read-only or full disk?) or set "
                                  "[pipeline] work_dir to a writable local folder, then re-run") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            self.holder = fh.read().strip() or "unknown process"
            fh.close()
            return False
        try:  # who holds it: a courtesy for the next run's message (the flock is the lock)
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} ({self.what}) on {socket.gethostname()} since "
                     f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}\n")
            fh.flush()
        except OSError:  # a full disk
            pass
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            try:
                self._fh.seek(0)
                self._fh.truncate()
            except OSError:  # a full disk: the holder line stays; the lock is released all the same
                pass
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None

    def __enter__(self) -> "RunLock":
        if not self.try_acquire():
            raise AlreadyRunning(f"already running: {self.holder} holds {self.path}",
                                 hint="wait for it to finish; a second run on the same root would corrupt the "
                                      "first")
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def run_lock(work_dir: str, root: str, what: str = "recon"):
    """The run lock of ``work_dir`` and, when the root is shared storage, the lock on ``root``."""
    from core.storage import Storage

    with RunLock(work_dir, what):
        lock = Storage(root).root_lock(what)
        if lock is not None and not lock.try_acquire():
            raise AlreadyRunning(f"already running: {lock.holder} holds {root.rstrip('/')}/.recon.lock",
                                 hint="wait for it to finish (HDFS frees the lock of a run that died within about "
                                      "a minute, when its lease lapses); a second run on the same root would "
                                      "corrupt the first")
        try:
            yield
        finally:
            if lock is not None:
                lock.release()
