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

import contextlib
import datetime as dt
import os
import re
import shutil
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from core.errors import ConfigError, FatalError, IntegrityError, RetriableError
from core.settings import ChannelSettings

_SAFE_NAME = re.compile(r"^[^/\\\x00]{1,255}$")

# [download] options every connector understands (seconds unless said otherwise)
COMMON_OPTIONS = {
    "type", "filename", "connect_timeout", "read_timeout", "attempt_timeout", "retry_interval", "retry_jitter",
    "deadline", "max_wait", "max_attempts", "max_bytes",
}
# The largest statement a channel may send unless its [download] max_bytes says otherwise: far above any real
# daily bill, small enough that a runaway server cannot fill the disk.
DEFAULT_MAX_BYTES = 20 * 10**9
# Free space the work folder must keep beyond the bytes still expected (for the landing and everything else).
FREE_SPACE_MARGIN = 256 * 2**20
# Landed statements and their .part files are readable by the job's user only, whatever the umask.
PRIVATE_MODE = 0o600
# The options that say how long to wait for a statement; a channel that sets any of them sets its own policy.
WAITING_OPTIONS = frozenset({"deadline", "max_wait", "max_attempts"})


@dataclass(frozen=True)
class FetchInfo:
    """What a connector knows about a file it sent: where from, and how to verify it."""

    source: str
    expected_size: int | None = None
    expected_sha256: str | None = None
    expected_sha1: str | None = None  # WeChat Pay V3 gives SHA-1 of the (decompressed) bill


def is_plain_name(name: str) -> bool:
    """True for a plain file name: no folders, no ``..``, nothing hidden."""
    return bool(_SAFE_NAME.match(name)) and not name.startswith(".") and ".." not in name


def safe_name(name: str, *, channel: str | None = None) -> str:
    """A remote file name, checked before it becomes part of a local path.

    Remote names are untrusted: a server that sends a folder or ``..`` is
    refused (fatal: no retry makes it safe). Names from the channel's own
    ``filename`` pattern are checked by ``Connector.statement_names`` as
    configuration instead.
    """
    if not is_plain_name(name):
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

    def expired(self) -> bool:
        return self._clock() >= self._ends_at

    def timeout_error(self, doing: str = "") -> RetriableError:
        """The retriable error of an attempt that ran out of wall-clock time (naming the limit)."""
        return RetriableError(f"attempt {self.number} exceeded its wall-clock limit of {self.wall_clock:g} s "
                              f"(attempt_timeout){' ' + doing if doing else ''}",
                              hint="the server is too slow or stuck; it is retried")

    def check(self) -> None:
        """Raise RetriableError once the attempt has run past its wall-clock limit."""
        if self.expired():
            raise self.timeout_error()


class SocketWatch:
    """The sockets of one attempt, shut down together when its time is up (``until``).

    Socket timeouts bound each read, not the attempt: a server that trickles a byte now and then keeps every
    read short and the attempt alive. Shutting the sockets down ends any blocked read at once; the connector
    then sees a closed connection and, ``expired`` being set, reports ``attempt.timeout_error()``.
    """

    def __init__(self):
        self.sockets: list[socket.socket] = []
        self.expired = threading.Event()
        self._lock = threading.Lock()

    def add(self, sock) -> None:
        with self._lock:
            self.sockets.append(sock)
        if self.expired.is_set():
            self._shut(sock)

    def expire(self) -> None:
        self.expired.set()
        with self._lock:
            for sock in self.sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock) -> None:
        # socket.socket.shutdown on the descriptor, not SSLSocket's (which would drop its TLS state under the
        # reading thread): the blocked read returns at once and the library reports a closed connection.
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass

    @contextlib.contextmanager
    def until(self, attempt: "Attempt"):
        """Expire when ``attempt`` runs out of wall-clock time, unless the block ends first."""
        timer = threading.Timer(max(0.0, attempt.remaining()), self.expire)
        timer.daemon = True
        timer.start()
        try:
            yield self
        finally:
            timer.cancel()


class PartFile:
    """The local ``.part`` file a download is written to (outside raw/), resumable across attempts.

    It enforces what no connector should have to remember: the file is private (mode 0600 whatever the
    umask, since a statement carries payer data), it never grows past ``max_bytes`` (a statement larger
    than the channel's limit cannot be trusted: ``IntegrityError``, exit 4, not retried), and a declared
    size is checked against that limit and the work folder's free space before the first byte is written.
    """

    def __init__(self, path: str, progress=None, *, max_bytes: int | None = None, where: dict | None = None):
        self.path = path
        self.progress = progress
        self.max_bytes = max_bytes
        self.where = where or {}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fh = None
        self._size = 0

    @property
    def offset(self) -> int:
        """Bytes already received (a resumed transfer starts here)."""
        if self._fh is not None:
            self._fh.flush()
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def open_fd(self) -> int:
        """A write descriptor on the part file (created 0600, positioned at its end), for kernel copies."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)  # an existing file, or a umask that would have kept more bits
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def write(self, data: bytes) -> int:
        if self._fh is None:
            self._fh = open(self.open_fd(), "ab")  # a local scratch file by definition
            self._size = self._fh.tell()
        self.account(len(data), self._size + len(data))
        self._fh.write(data)
        self._size += len(data)
        return len(data)

    def account(self, n: int, size: int) -> None:
        """``n`` more bytes, ``size`` in all: enforce max_bytes as they stream (before writing them), advance
        the progress bar."""
        if self.max_bytes is not None and size > self.max_bytes:
            raise IntegrityError(f"the statement is larger than max_bytes = {self.max_bytes} (received more than "
                                 f"{size - n} bytes and still streaming); the download was stopped", **self.where,
                                 hint="a statement that large cannot be trusted: check with the channel what it "
                                      "sent; if it is right, raise [download] max_bytes for this channel")
        if self.progress is not None:
            self.progress.advance(n)

    def restart(self) -> None:
        """Forget what was received (the server cannot resume, or sent something else)."""
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)
        if self.progress is not None:
            self.progress.reset()

    def expect(self, total: int | None) -> None:
        """The size the source declares (SIZE, Content-Length, stat): checked against max_bytes and the free
        space of the work folder before the transfer starts, so neither is found out by filling the disk."""
        if total is not None and self.max_bytes is not None and total > self.max_bytes:
            raise IntegrityError(f"the source announces {total} bytes, more than max_bytes = {self.max_bytes}; "
                                 f"nothing was downloaded", **self.where,
                                 hint="a statement that large cannot be trusted: check with the channel; if it is "
                                      "right, raise [download] max_bytes for this channel")
        self.check_free_space(max(0, (total or 0) - self.offset))
        if self.progress is not None:
            self.progress.set_total(total)

    def check_free_space(self, needed: int) -> None:
        """Refuse to start when the work folder lacks ``needed`` bytes plus a margin (not retried: space does
        not come back by waiting)."""
        free = shutil.disk_usage(os.path.dirname(self.path)).free
        if free < needed + FREE_SPACE_MARGIN:
            raise FatalError(f"not enough free space in {os.path.dirname(self.path)} for the download: "
                             f"{free} bytes free, {needed} needed plus a margin of {FREE_SPACE_MARGIN}",
                             **self.where, hint="free space in the work folder (work_dir) and run again")

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
    configuration errors. ``FOLDER_OPTION`` names the key holding the folder
    the statement is in (``path``, ``remote_dir``): like ``filename`` it may
    contain ``{date:%Y-%m-%d}``, since real systems write dated folders.
    ``DEFAULT_WAITING`` is how long this type waits for a missing statement
    when the channel sets none of ``WAITING_OPTIONS``: empty means the retry
    module's default (every 5–10 min until 12:00 on D+1), which fits servers
    that publish late, not every source.
    """

    OPTIONS: frozenset[str] = frozenset()
    FOLDER_OPTION: str | None = None
    DEFAULT_WAITING: dict = {}
    # The hint of the exit-3 error when the statement is still missing at the end (None: the retry module's).
    UNAVAILABLE_HINT: str | None = None

    def __init__(self, channel: ChannelSettings):
        self.channel = channel
        self.options = dict(channel.download)
        unknown = sorted(set(self.options) - COMMON_OPTIONS - set(self.OPTIONS))
        if unknown:
            raise ConfigError(f"unknown [download] key(s) {', '.join(unknown)} for type {self.options['type']!r}; "
                              f"allowed: {', '.join(sorted(COMMON_OPTIONS | set(self.OPTIONS)))}",
                              channel=channel.name, file=channel.conf_file)
        if self.FOLDER_OPTION in self.options:
            self.folder(dt.date(2000, 1, 1))  # a bad pattern is a configuration error now, before any download
        self.max_bytes = self._max_bytes()

    def _max_bytes(self) -> int:
        """[download] max_bytes: a positive number of bytes (default DEFAULT_MAX_BYTES)."""
        value = self.options.get("max_bytes", DEFAULT_MAX_BYTES)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"[download] max_bytes must be a positive number of bytes, got {value!r}",
                              channel=self.channel.name, file=self.channel.conf_file,
                              hint=f"e.g. max_bytes = {DEFAULT_MAX_BYTES} (the default, 20 GB)")
        return value

    # -- helpers for subclasses --------------------------------------------------------------------------------
    def option(self, key: str, default=None, *, required: bool = False):
        if key in self.options:
            return self.options[key]
        if required:
            raise ConfigError(f"[download] needs {key}", channel=self.channel.name, file=self.channel.conf_file)
        return default

    def expand(self, key: str, day: dt.date, default: str | None = None) -> str | None:
        """Option ``key`` with ``{date:…}`` filled in for ``day`` (str.format, as in ``filename``)."""
        value = self.options.get(key, default)
        if value is None:
            return None
        return self._dated(key, value, day)

    def _dated(self, key: str, pattern, day: dt.date) -> str:
        """``pattern`` (the value of ``key``) with ``{date:…}`` filled in; a pattern that cannot be is exit 2."""
        where = {"channel": self.channel.name, "file": self.channel.conf_file}
        if not isinstance(pattern, str):
            raise ConfigError(f"[download] {key} must be a string, got {pattern!r}", **where)
        try:
            return pattern.format(date=day)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad [download] {key} pattern {pattern!r}: {type(exc).__name__}: {exc}", **where,
                              hint="the only field is {date:…} with strftime codes, e.g. {date:%Y-%m-%d}; "
                                   "write a literal brace as {{ or }}") from exc

    def folder(self, day: dt.date, default: str | None = None) -> str | None:
        """The folder D's statement is in: ``FOLDER_OPTION`` expanded for ``day``."""
        return self.expand(self.FOLDER_OPTION, day, default) if self.FOLDER_OPTION else default

    def waiting_options(self) -> dict:
        """The [download] options the retry policy is built from: this type's waiting defaults unless the
        channel sets its own (any one of deadline, max_wait, max_attempts replaces them all)."""
        if WAITING_OPTIONS & set(self.options):
            return self.options
        return {**self.options, **self.DEFAULT_WAITING}

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """A secret named by ``<key>_env`` (environment variable) or ``<key>_file`` (a 0600 file)."""
        from connectors.secrets import resolve_secret

        return resolve_secret(self.options, key, channel=self.channel, required=required)

    def where(self, day: dt.date, name: str | None = None) -> dict:
        """Keyword arguments naming channel, date and file for errors."""
        return {"channel": self.channel.name, "date": day.isoformat(), "file": name}

    # -- the contract ------------------------------------------------------------------------------------------
    def statement_names(self, day: dt.date) -> list[str]:
        """The file names of D's statement, from the ``filename`` pattern (``{date:%Y%m%d}``).

        The pattern is the channel's configuration, so a name with a folder in it is a configuration
        mistake (exit 2), not an unsafe server: the landed file keeps a plain name.
        """
        pattern = self.options.get("filename")
        where = {"channel": self.channel.name, "file": self.channel.conf_file}
        if not pattern:
            raise ConfigError("[download] needs filename = \"…{date:%Y%m%d}…\"", **where)
        patterns = pattern if isinstance(pattern, list) else [pattern]
        names = []
        for p in patterns:
            name = self._dated("filename", p, day)
            if not is_plain_name(name):
                folder = self.FOLDER_OPTION or "the option that says where the file is"
                raise ConfigError(f"filename pattern {p!r} gives {name!r}, which is not a plain file name", **where,
                                  hint=f"put the folder part in {folder} (it takes {{date:%Y-%m-%d}} too) and "
                                       f"keep filename to the file's own name; no '..', no leading '.'")
            names.append(name)
        return names

    @abstractmethod
    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        """Write statement file ``name`` for ``day`` into ``part`` (one attempt)."""
