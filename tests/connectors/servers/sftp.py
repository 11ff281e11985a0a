"""A real SSH/SFTP server on 127.0.0.1, built on paramiko, that misbehaves on purpose.

It serves the files of one folder, read-only, to one user (password or
public key), and implements the ``FaultyServer`` protocol of
``tests/connectors/contract.py``:

- ``"missing"``: ``stat``/``open`` answer "no such file";
- ``"hang"``: ``open`` is answered, then the first ``read`` never is;
- ``"half"``: bytes up to half the file are served, then the connection is
  closed (FIN, no SSH goodbye);
- ``"reset"``: bytes up to a third of the file are served, then the TCP
  connection is reset (RST, ``SO_LINGER`` 0).

Cuts are at fixed positions in the file, not relative to where a resumed read
starts, so a server that always cuts can never be outwitted by resuming.
Every thread is a daemon and waits in short steps, so ``close()`` never hangs.
"""

from __future__ import annotations

import os
import posixpath
import socket
import struct
import threading

import paramiko

FAULTS = ("hang", "half", "reset", "missing")
_POLL = 0.05  # seconds between checks of "stop?" in every wait, so teardown is prompt


class FaultySftpServer:
    """An SFTP server in background threads; ``port`` is chosen by the OS.

    ``logins`` counts authentication attempts (password or public key),
    ``connections`` TCP connections accepted.
    """

    def __init__(self, root: str, host_key: paramiko.PKey, *, username: str, password: str | None = None,
                 authorized_key: paramiko.PKey | None = None):
        self.root = os.path.realpath(root)
        self.host_key = host_key
        self.username = username
        self.password = password
        self.authorized_key = authorized_key
        self.logins = 0
        self.connections = 0
        self._fault: str | None = None
        self._fault_times: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)  # accept() wakes up to notice close()
        self.host, self.port = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"sftp-accept-{self.port}", daemon=True)

    # -- the FaultyServer protocol -------------------------------------------------------------------------------
    def publish(self, name: str, data: bytes) -> None:
        """Make ``data`` available as ``name`` (relative to the SFTP root, which is the login folder)."""
        path = self._local(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)

    def fault(self, kind: str, times: int | None = None) -> None:
        """Misbehave with ``kind`` on the next ``times`` file requests (``None``: always)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._fault, self._fault_times = kind, times

    # -- life cycle ----------------------------------------------------------------------------------------------
    def start(self) -> "FaultySftpServer":
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, drop every session and wait (briefly) for the threads."""
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            transports, threads = list(self._transports), list(self._threads)
        for transport in transports:
            transport.close()
        for thread in threads:
            thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- internals -----------------------------------------------------------------------------------------------
    def _local(self, remote: str) -> str:
        """The local path of a remote path; the SFTP root is ``/`` and the login folder, nothing escapes it."""
        virtual = posixpath.normpath(posixpath.join("/", remote))
        return os.path.join(self.root, virtual.lstrip("/"))

    def _take_fault(self, kinds: tuple[str, ...]) -> str | None:
        """The fault to apply to this request, if any, counting it down."""
        with self._lock:
            if self._fault not in kinds or self._fault_times == 0:
                return None
            if self._fault_times is not None:
                self._fault_times -= 1
            return self._fault

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self.connections += 1
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        with self._lock:
            self._transports.append(transport)
        if self._stop.is_set():
            transport.close()
            return
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _SftpFiles)
        try:
            # Blocks until the key exchange ends; paramiko's own thread then serves the session.
            transport.start_server(server=_Sessions(self, transport))
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()  # the client gave up during the handshake (e.g. it rejected our host key)

    def _cut(self, transport: paramiko.Transport, kind: str) -> None:
        """End a session mid-transfer: a plain close (FIN) for "half", a TCP reset (RST) for "reset"."""
        if kind == "reset":
            try:
                transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.close()

    def _hang(self, transport: paramiko.Transport) -> None:
        """Never answer: wait until the client goes away or the server stops."""
        while transport.is_active() and not self._stop.wait(_POLL):
            pass


class _Sessions(paramiko.ServerInterface):
    """Authentication (one user) and session channels for the SFTP subsystem."""

    def __init__(self, server: FaultySftpServer, transport: paramiko.Transport):
        self.server = server
        self.transport = transport

    def get_allowed_auths(self, username):
        methods = []
        if self.server.password is not None:
            methods.append("password")
        if self.server.authorized_key is not None:
            methods.append("publickey")
        return ",".join(methods)

    def _count_login(self) -> None:
        with self.server._lock:
            self.server.logins += 1

    def check_auth_password(self, username, password):
        self._count_login()
        if (self.server.password is not None and username == self.server.username
                and password == self.server.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        self._count_login()
        if self.server.authorized_key is not None and username == self.server.username \
                and key == self.server.authorized_key:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _SftpFiles(paramiko.SFTPServerInterface):
    """Read-only SFTP over the server's root folder, with the server's faults."""

    def __init__(self, sessions: _Sessions, *args, **kwargs):
        super().__init__(sessions, *args, **kwargs)
        self.server = sessions.server
        self.transport = sessions.transport

    def canonicalize(self, path):
        return posixpath.normpath(posixpath.join("/", path))

    def _stat(self, path):
        if self.server._take_fault(("missing",)):
            return paramiko.SFTP_NO_SUCH_FILE
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self.server._local(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    stat = lstat = _stat

    def list_folder(self, path):
        folder = self.server._local(path)
        try:
            return [paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(folder, n)), n)
                    for n in sorted(os.listdir(folder))]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def open(self, path, flags, attr):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            return paramiko.SFTP_PERMISSION_DENIED  # a channel's outbox is read-only to us
        fault = self.server._take_fault(FAULTS)
        if fault == "missing":
            return paramiko.SFTP_NO_SUCH_FILE
        try:
            fh = open(self.server._local(path), "rb")  # the test server's own temp folder
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return _FaultyHandle(self.server, self.transport, fh, fault)


class _FaultyHandle(paramiko.SFTPHandle):
    """An open remote file; reads follow the fault chosen when it was opened."""

    def __init__(self, server: FaultySftpServer, transport: paramiko.Transport, fh, fault: str | None):
        super().__init__()
        self.server = server
        self.transport = transport
        self.readfile = fh  # SFTPHandle.close() closes it
        self.fault = fault
        self.size = os.fstat(fh.fileno()).st_size

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))

    def read(self, offset, length):
        if self.fault == "hang":
            self.server._hang(self.transport)
            return paramiko.SFTP_FAILURE  # nobody is listening any more
        if self.fault in ("half", "reset"):
            cut = self.size // 2 if self.fault == "half" else self.size // 3
            if offset >= cut:
                self.server._cut(self.transport, self.fault)
                return paramiko.SFTP_FAILURE  # never reaches the client: the connection is gone
            length = min(length, cut - offset)
        self.readfile.seek(offset)
        return self.readfile.read(length)
