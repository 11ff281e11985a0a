"""One run at a time per storage root: an exclusive lock on a local file in the work folder.

Two runs on the same root would corrupt each other (reliability.md). The
lock is taken for every command that writes; a second run exits at once
with a clear "already running" naming the holder. The kernel releases the
lock when the holder dies, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os

from recon.errors import ReconError


class AlreadyRunning(ReconError):
    """Another run holds the lock on this root."""

    exit_code = 1


class RunLock:
    """``with RunLock(work_dir): ...`` — exclusive, non-blocking."""

    def __init__(self, work_dir: str, what: str = "recon"):
        os.makedirs(work_dir, exist_ok=True)
        self.path = os.path.join(work_dir, "recon.lock")
        self.what = what
        self._fh = None

    def __enter__(self) -> "RunLock":
        fh = open(self.path, "a+")  # a local lock file by definition
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            fh.close()
            raise AlreadyRunning(f"already running: {holder} holds {self.path}",
                                 hint="wait for it to finish; a second run on the same root would corrupt the "
                                      "first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} ({self.what}) since "
                 f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
