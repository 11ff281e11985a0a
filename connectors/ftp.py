"""Statements on a channel's FTP server: one attempt of one file, resumable, with timeouts everywhere.

ftplib waits forever by default, so every socket this connector opens has a
timeout (connect, then every read of the control and data channels), and the
transfer callback checks the attempt's wall-clock limit so a server that
trickles bytes cannot hold an attempt open. Errors are sorted into the three
kinds of ``core.errors``: a refused login or another permanent refusal is
fatal, "no such file" means not published yet, and everything transient
(4xx replies, timeouts, resets, cut transfers) is worth another attempt.
"""

from __future__ import annotations

import datetime as dt
import ftplib
import posixpath
import ssl

from connectors.base import Attempt, Connector, FetchInfo, PartFile, SocketWatch
from core.errors import ConfigError, FatalError, NotPublishedYet, RetriableError

# Replies to REST (or to the RETR after it) that mean "I cannot resume": not implemented,
# bad parameter, parameter not implemented, invalid restart position (RFC 959 / RFC 1123).
_REST_REFUSED = {"500", "501", "502", "504", "554"}
# Replies to SIZE / MDTM that mean "I do not implement it" (then the size or time is simply unknown).
_SIZE_UNSUPPORTED = {"500", "502", "504"}


def reply_code(exc: ftplib.Error) -> str:
    """The three-digit reply code an ftplib error carries ('' if it carries none)."""
    text = str(exc)
    return text[:3] if text[:3].isdigit() else ""


class _TimedTransfers:
    """Mixin for ftplib.FTP classes: data connections get the read timeout once connected.

    ftplib gives a data socket ``self.timeout``, which we keep at the connect
    timeout for connecting; reads then use the (usually longer) read timeout.
    """

    read_timeout: float = 60.0
    watch: SocketWatch | None = None  # the attempt's: its data connections are cut with it

    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        watched(self, conn)
        conn.settimeout(self.read_timeout)
        return conn, size


def watched(ftp: ftplib.FTP, sock) -> None:
    """Register a socket of ``ftp`` with its attempt's watch (if it has one)."""
    if getattr(ftp, "watch", None) is not None:
        ftp.watch.add(sock)


class _FTP(_TimedTransfers, ftplib.FTP):
    """ftplib.FTP with per-read timeouts on the data channel."""


class FtpConnector(Connector):
    """Downloads ``{remote_dir}/{filename}`` for D from an FTP server, resuming a cut transfer.

    [download] options: ``host``; ``port`` (default 21); ``username``;
    ``password_env`` or ``password_file`` (never a literal password);
    ``remote_dir`` (default ``/``; may be dated: ``/out/{date:%Y%m%d}``); ``passive`` (default true; false uses
    active mode, where the server connects back to us).

    Plain FTP sends the password and the statement in clear: use it only on
    a private line, and prefer ``type = "ftps"`` when the channel offers it.
    """

    OPTIONS = frozenset({"host", "port", "username", "password_env", "password_file", "remote_dir", "passive"})
    FOLDER_OPTION = "remote_dir"
    RESUMABLE = True
    SCHEME = "ftp"

    def __init__(self, channel):
        super().__init__(channel)
        where = {"channel": channel.name, "file": channel.conf_file}
        self.host = self.option("host", required=True)
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(f"[download] host must be a host name or address, got {self.host!r}", **where)
        self.port = self.option("port", 21)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError(f"[download] port must be an integer from 1 to 65535, got {self.port!r}", **where)
        self.username = self.option("username", required=True)
        if not isinstance(self.username, str) or not self.username:
            raise ConfigError(f"[download] username must be a non-empty string, got {self.username!r}", **where)
        self.passive = self.option("passive", True)
        if not isinstance(self.passive, bool):
            raise ConfigError(f"[download] passive must be true or false, got {self.passive!r}", **where)
        # (size, MDTM) of the remote file when the bytes in a .part file were read, per file name: a resumed
        # transfer must continue the same version, not splice a new one published in between.
        self._seen: dict[str, tuple[int | None, str | None]] = {}

    # -- hooks for FTPS --------------------------------------------------------------------------------------
    def _client(self, attempt: Attempt) -> ftplib.FTP:
        """An unconnected ftplib client whose sockets time out."""
        ftp = _FTP(timeout=attempt.connect_timeout)
        ftp.read_timeout = attempt.read_timeout
        return ftp

    def _before_login(self, ftp: ftplib.FTP) -> None:
        """Called on the connected control channel before USER/PASS (FTPS secures it here)."""

    def _after_login(self, ftp: ftplib.FTP) -> None:
        """Called after a successful login (FTPS protects the data channel here)."""

    # -- one attempt -----------------------------------------------------------------------------------------
    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        """Write ``name`` into ``part``, resuming from ``part.offset`` when the server allows REST."""
        password = self.secret("password")
        remote_dir = self.folder(day, "/")
        path = posixpath.join(remote_dir, name) if remote_dir else name
        source = f"{self.SCHEME}://{self.host}:{self.port}{path if path.startswith('/') else '/' + path}"
        where = self.where(day, name)
        ftp = self._client(attempt)
        # Socket timeouts bound each reply; the watch bounds the attempt (a server trickling its replies).
        ftp.watch = SocketWatch()
        stage = "connect"
        try:
            with ftp.watch.until(attempt):
                size = self._dialogue(ftp, name, path, password, part, attempt)
            stage = "done"
        except ftplib.error_perm as exc:
            raise self._permanent(exc, getattr(exc, "stage", stage), path, where) from exc
        except BaseException as exc:
            error = self._transient(exc, getattr(exc, "stage", stage), ftp.watch, attempt, where)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._close(ftp, polite=stage == "done")
        return FetchInfo(source=source, expected_size=size)

    def _dialogue(self, ftp: ftplib.FTP, name: str, path: str, password: str, part: PartFile,
                  attempt: Attempt) -> int | None:
        """Connect, log in and retrieve ``path`` into ``part``; returns the remote size (None if unknown).
        An exception leaves with the stage it happened in (``exc.stage``)."""
        stage = "connect"
        try:
            ftp.connect(self.host, self.port, timeout=attempt.connect_timeout)
            watched(ftp, ftp.sock)
            # From here on the control channel waits at most read_timeout for each reply.
            ftp.sock.settimeout(attempt.read_timeout)
            stage = "tls"
            self._before_login(ftp)
            watched(ftp, ftp.sock)  # FTPS: the TLS socket that now holds the connection
            stage = "login"
            self._login(ftp, password, attempt)
            ftp.sock.settimeout(attempt.read_timeout)
            stage = "tls"
            self._after_login(ftp)
            ftp.set_pasv(self.passive)
            stage = "transfer"
            ftp.voidcmd("TYPE I")  # binary: exact bytes, and SIZE is refused in ASCII mode
            size = self._size(ftp, path)
            self._resume_or_restart(ftp, name, path, size, part)
            self._retrieve(ftp, path, size, part, attempt)
            return size
        except BaseException as exc:
            exc.stage = stage
            raise

    def _transient(self, exc: BaseException, stage: str, watch: SocketWatch, attempt: Attempt,
                   where: dict) -> BaseException:
        """The error to raise for what ended an attempt in ``stage``, other than a 5xx reply (``_permanent``);
        ``exc`` itself when it is none of ours to sort."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return FatalError(f"the server's TLS certificate is not trusted: {exc.verify_message or exc}", **where,
                              hint="this may be an impostor" + (": the password was not sent" if stage == "tls"
                                                                else "")
                                   + "; check host and ca_file with the channel before trusting another "
                                     "certificate")
        if isinstance(exc, RetriableError):  # attempt.check() ran out of time, or the transfer was cut
            return exc.named(**where)
        if watch.expired.is_set() and isinstance(exc, Exception):
            # The watch cut the connection: whatever ftplib made of the half reply it was reading (EOFError,
            # OSError, or a ValueError parsing "213 " cut short), the attempt ran out of time.
            return attempt.timeout_error(f"in stage {stage}").named(**where)
        if isinstance(exc, ftplib.error_temp):
            return RetriableError(f"the server answered {str(exc).strip()!r}", **where,
                                  hint="a transient refusal (busy, cannot open data connection, transfer aborted); "
                                       "it is retried")
        if isinstance(exc, (ftplib.error_reply, ftplib.error_proto)):
            return RetriableError(f"unexpected reply from the server: {str(exc).strip()!r}", **where,
                                  hint="the server or something between us garbled the FTP dialogue; it is "
                                       "retried")
        if isinstance(exc, TimeoutError):
            if stage == "login":  # waited for as long as the attempt allows (see _login)
                return attempt.timeout_error(f"waiting for the server to answer the login of {self.username!r}") \
                    .named(**where)
            return RetriableError(f"no answer within the timeout while in stage {stage} ({exc or 'timed out'})",
                                  **where, hint="the server is slow or stuck; it is retried")
        if isinstance(exc, (EOFError, OSError)):  # resets, refused connections, TLS cut short, name resolution
            return RetriableError(f"connection failed in stage {stage}: {type(exc).__name__}: {exc}", **where,
                                  hint="a network or server failure; it is retried")
        return exc

    def _login(self, ftp: ftplib.FTP, password: str, attempt: Attempt) -> None:
        """USER/PASS, waiting for the verdict as long as the attempt allows rather than read_timeout.

        Servers delay a refusal on purpose (pyftpdlib and vsftpd by seconds, against password guessing), and
        a 530 that arrives after read_timeout is still a refusal: retrying it as a timeout would hammer a
        wrong password into a locked account. A login that truly hangs still ends at the attempt's limit.
        """
        ftp.sock.settimeout(max(attempt.read_timeout, attempt.remaining()))
        ftp.login(self.username, password)

    def _mdtm(self, ftp: ftplib.FTP, path: str) -> str | None:
        """The remote modification time as the server gives it (None if it does not implement MDTM)."""
        try:
            reply = ftp.sendcmd(f"MDTM {path}")
        except ftplib.error_perm as exc:
            if reply_code(exc) in _SIZE_UNSUPPORTED:
                return None
            raise
        return reply[4:].strip() if reply[:3] == "213" else None

    def _resume_or_restart(self, ftp: ftplib.FTP, name: str, path: str, size: int | None, part: PartFile) -> None:
        """Keep the partial bytes only when the remote file is provably the one they came from: same size
        and same MDTM as when they were read. Without MDTM (or SIZE) nothing proves it: start over."""
        version = (size, self._mdtm(ftp, path))
        if part.offset and (None in version or self._seen.get(name) != version):
            part.restart()
        self._seen[name] = version

    def _size(self, ftp: ftplib.FTP, path: str) -> int | None:
        """The remote size (None if the server does not implement SIZE)."""
        try:
            size = ftp.size(path)
        except ftplib.error_perm as exc:
            if reply_code(exc) in _SIZE_UNSUPPORTED:
                return None
            raise
        return size

    def _retrieve(self, ftp: ftplib.FTP, path: str, size: int | None, part: PartFile, attempt: Attempt) -> None:
        offset = part.offset
        if size is None or offset > size:
            # Unknown size: a resumed copy cannot be checked. Larger than the remote: it changed.
            part.restart()
            offset = 0
        part.expect(size)

        def write(chunk: bytes) -> None:
            part.write(chunk)
            attempt.check()  # socket timeouts end a silent server; this ends a trickling one

        if size is not None and offset == size:
            return  # a previous attempt received everything but the final reply
        try:
            ftp.retrbinary(f"RETR {path}", write, rest=offset or None)
        except ftplib.error_perm as exc:
            if not offset or reply_code(exc) not in _REST_REFUSED:
                raise
            # The server cannot resume: start over from the first byte, in this same attempt.
            part.restart()
            part.expect(size)
            ftp.retrbinary(f"RETR {path}", write)
        received = part.offset
        if size is not None and received < size:
            # Keep what arrived: the next attempt resumes from here.
            raise RetriableError(f"the transfer ended after {received} of {size} bytes",
                                 hint="the server cut the transfer short; the next attempt resumes it")
        if size is not None and received > size:
            part.restart()
            raise RetriableError(f"received {received} bytes but the server announced {size}",
                                 hint="the file probably changed during the download; it is fetched again")

    def _permanent(self, exc: ftplib.error_perm, stage: str, path: str, where: dict) -> Exception:
        """The error a 5xx reply means, depending on when it came."""
        code, reply = reply_code(exc), str(exc).strip()
        if stage == "tls":
            return FatalError(f"the server refused TLS: {reply!r}", **where,
                              hint="it may not offer explicit FTPS (AUTH TLS); ask the channel, or use "
                                   "type = \"ftp\" only if the line is private")
        if stage == "login":
            if "tls" in reply.lower() or "ssl" in reply.lower():
                return FatalError(f"the server requires TLS: {reply!r}", **where,
                                  hint="use type = \"ftps\" for this channel (the password was not accepted "
                                       "in clear)")
            if code == "530":
                return FatalError(f"login refused for user {self.username!r}: {reply!r}", **where,
                                  hint="check username and the password in password_env/password_file; not "
                                       "retried, so the account is not locked by repeated attempts")
            return FatalError(f"the server refused the login: {reply!r}", **where,
                              hint="check the account with the channel")
        if code == "550":
            return NotPublishedYet(f"{path} is not on the server yet ({reply!r})", **where,
                                   hint="the channel has not published it; it is retried until the deadline")
        return FatalError(f"the server refused {path}: {reply!r}", **where,
                          hint="a permanent refusal (permissions, bad name, unsupported command); check the "
                               "remote_dir and filename with the channel")

    @staticmethod
    def _close(ftp: ftplib.FTP, *, polite: bool) -> None:
        """Say goodbye after a good transfer; otherwise just drop the connection (the server may be stuck)."""
        if polite:
            try:
                ftp.quit()
                return
            except (ftplib.Error, OSError, EOFError):
                pass
        ftp.close()


CONNECTOR = FtpConnector
