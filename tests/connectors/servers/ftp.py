"""A real pyftpdlib FTP/FTPS server on 127.0.0.1 that misbehaves on purpose (the ``FaultyServer`` of contract.py).

The server runs its own IOLoop in a background thread and serves files from a
temporary folder. Faults are chosen per control connection: the first file
request of a session (SIZE or RETR) takes one of each active fault, so
``fault("missing", times=2)`` means "the next two sessions find no file",
whichever command they ask with first. Kinds:

- ``missing``: SIZE and RETR answer ``550 No such file or directory``;
- ``hang``: RETR answers ``150`` and then never sends data nor a final reply;
- ``half``: RETR sends the file up to half its size, closes the data channel
  cleanly and reports ``226 Transfer complete`` (a resumed RETR past the half
  gets nothing, so an always-cutting server never completes);
- ``reset``: like ``half``, then closes the data socket with ``SO_LINGER 0``
  (a TCP RST, no TLS close_notify) and answers ``426``.

Besides ``logins`` (PASS commands received), the server records what a test
may want to assert: ``commands`` (command, argument) with passwords masked,
and ``data_tls`` (for each data connection: was it TLS-protected).
``refuse_rest = True`` makes it answer REST with ``502``, ``refuse_mdtm = True``
MDTM with ``502``; ``auth_failed_delay`` (seconds, default 0) delays the
``530`` of a refused login, as real servers do against password guessing.
``publish(name, data, mtime=…)`` sets the file's modification time (MDTM).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import tempfile
import threading
import warnings

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore/asynchat, deprecated since Python 3.6; nothing to act on here.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

FAULT_KINDS = ("missing", "hang", "half", "reset")
USERNAME = "recon"
PASSWORD = "s3cret-ftp-Pw!"  # noqa: S105 - a throwaway test credential

# pyftpdlib logs every command at INFO; the tests only need its warnings. A handler of its own also stops
# pyftpdlib from "configuring logging" for the whole test process when its first loop starts.
_log = logging.getLogger("pyftpdlib")
_log.setLevel(logging.WARNING)
_log.addHandler(logging.NullHandler())


class _BytesProducer:
    """Feeds bytes to an asynchat channel (also when empty, which a plain push cannot)."""

    def __init__(self, data: bytes, chunk: int = 65536):
        self._data = memoryview(data)
        self._chunk = chunk
        self._pos = 0

    def more(self) -> bytes:
        piece = bytes(self._data[self._pos:self._pos + self._chunk])
        self._pos += len(piece)
        return piece


class FaultyFtpServer:
    """An FTP (or explicit-TLS FTPS) server on 127.0.0.1 and an ephemeral port, with fault injection.

    ``certfile`` (a PEM with key and certificate chain) makes it an FTPS
    server; ``tls_required`` then refuses USER/PASS before AUTH TLS and data
    connections before PROT P. Use as a context manager or call ``start()``
    and ``stop()``.
    """

    def __init__(self, *, certfile: str | None = None, tls_required: bool = True,
                 username: str = USERNAME, password: str = PASSWORD):
        self._tmp = tempfile.TemporaryDirectory(prefix="faulty-ftp-")
        self.root = self._tmp.name
        self.username = username
        self.password = password
        self.logins = 0
        self.commands: list[tuple[str, str]] = []
        self.data_tls: list[bool] = []
        self.refuse_rest = False
        self.refuse_mdtm = False
        self.auth_failed_delay = 0.0
        self.trickle_size_reply = 0.0  # > 0: the reply to SIZE is sent one byte every this many seconds
        self._faults: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.tls = certfile is not None
        authorizer = DummyAuthorizer()
        authorizer.add_user(username, password, homedir=self.root, perm="elr")
        handler = _handler_class(self, TLS_FTPHandler if self.tls else FTPHandler)
        handler.authorizer = authorizer
        if self.tls:
            handler.certfile = certfile
            handler.tls_control_required = tls_required
            handler.tls_data_required = tls_required
        # Our own IOLoop: pyftpdlib's default is a process-wide singleton, and two servers
        # (e.g. a trusted and a rogue one) must not share it across threads.
        self._ftpd = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
        self.host, self.port = self._ftpd.socket.getsockname()[:2]

    # -- the FaultyServer protocol -----------------------------------------------------------------------------
    def publish(self, name: str, data: bytes, mtime: float | None = None) -> None:
        """Make ``name`` (in the FTP root; may be in a folder) hold ``data`` (modified at ``mtime``)."""
        os.makedirs(os.path.dirname(os.path.join(self.root, name)), exist_ok=True)
        with open(os.path.join(self.root, name), "wb") as fh:
            fh.write(data)
        if mtime is not None:
            os.utime(os.path.join(self.root, name), (mtime, mtime))

    def fault(self, kind: str, times: int | None = None) -> None:
        """Misbehave with ``kind`` for the next ``times`` sessions (None: always)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults[kind] = times

    # -- life cycle --------------------------------------------------------------------------------------------
    def start(self) -> "FaultyFtpServer":
        self._thread = threading.Thread(target=self._serve, name=f"faulty-ftp-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # pragma: no cover - would be a bug in this helper
                raise RuntimeError("the FTP test server did not stop within 10 s")
        self._tmp.cleanup()

    def __enter__(self) -> "FaultyFtpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        # One short poll at a time, so stop() is seen within ~50 ms; socket events wake the
        # poll at once, so this does not slow transfers down.
        try:
            while not self._stopping.is_set():
                self._ftpd.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        finally:
            self._ftpd.close_all()  # closes every client connection and the listening socket

    # -- used by the handlers (in the server thread) -----------------------------------------------------------
    def _take_faults(self) -> set[str]:
        with self._lock:
            taken = set()
            for kind, left in list(self._faults.items()):
                if left is None or left > 0:
                    taken.add(kind)
                    if left is not None:
                        self._faults[kind] = left - 1
            return taken


def _handler_class(server: FaultyFtpServer, base: type[FTPHandler]) -> type[FTPHandler]:
    """A handler class (and its data-channel class) bound to ``server``'s faults and records."""

    class FaultyDTPHandler(base.dtp_handler):
        timeout = 30  # a stalled data channel of a test is dropped long before pytest's timeout

        def __init__(self, sock, cmd_channel):
            super().__init__(sock, cmd_channel)
            server.data_tls.append(bool(getattr(cmd_channel, "_prot", False)))

        def handle_close(self):
            if getattr(self.cmd_channel, "_cut", None) == "reset" and not self._closed:
                # RST instead of FIN (and no TLS close_notify): the client's read fails with ECONNRESET.
                try:
                    self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self._error = True  # makes the TLS mixin skip its orderly SSL shutdown
                self._resp = ("426 Connection reset; transfer aborted.", logging.getLogger("pyftpdlib").debug)
                self.close()
                return
            super().handle_close()

    class FaultyHandler(base):
        dtp_handler = FaultyDTPHandler
        timeout = 30  # idle control connections of a test end well before pytest's timeout
        @property
        def auth_failed_timeout(self):  # pyftpdlib delays a failed login by 3 s; tests choose
            return server.auth_failed_delay
        banner = "faulty test FTP server ready"
        _session_faults: set[str] | None = None
        _cut: str | None = None

        def process_command(self, cmd, *args, **kwargs):
            server.commands.append((cmd, "****" if cmd == "PASS" else (str(args[0]) if args else "")))
            super().process_command(cmd, *args, **kwargs)

        def ftp_PASS(self, line):
            server.logins += 1
            super().ftp_PASS(line)

        def ftp_MDTM(self, path):
            if server.refuse_mdtm:
                self.respond("502 MDTM not implemented.")
                return None
            return super().ftp_MDTM(path)

        def ftp_REST(self, line):
            if server.refuse_rest:
                self.respond("502 REST not implemented.")
                return
            super().ftp_REST(line)

        def _faults(self) -> set[str]:
            if self._session_faults is None:
                self._session_faults = server._take_faults()
            return self._session_faults

        def ftp_SIZE(self, path):
            if "missing" in self._faults():
                self.respond("550 No such file or directory.")
                return
            if server.trickle_size_reply:  # every read of the client is short; the reply takes ages
                reply = f"213 {os.path.getsize(path)}\r\n"
                for i, char in enumerate(reply):
                    self.ioloop.call_later(server.trickle_size_reply * (i + 1), self._push_if_open, char)
                return
            super().ftp_SIZE(path)

        def _push_if_open(self, text):
            if self.connected:
                self.push(text)

        def ftp_RETR(self, file):
            faults = self._faults()
            if "missing" in faults:
                self._restart_position = 0
                self.respond("550 No such file or directory.")
                return None
            if "hang" in faults:
                self._restart_position = 0
                self.respond("150 File status okay. About to open data connection.")
                return None  # and then nothing, ever
            cut = "reset" if "reset" in faults else "half" if "half" in faults else None
            if cut is None:
                self._cut = None
                return super().ftp_RETR(file)
            rest, self._restart_position = self._restart_position, 0
            try:
                with open(file, "rb") as fh:  # a file of the test server's own temp folder
                    data = fh.read()
            except OSError as exc:
                self.respond(f"550 {exc.strerror}.")
                return None
            self._cut = cut
            self.push_dtp_data(_BytesProducer(data[rest:max(rest, len(data) // 2)]), isproducer=True, cmd="RETR")
            return file

    return FaultyHandler
