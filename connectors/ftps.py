"""Statements on a channel's FTPS server (explicit TLS, ``AUTH TLS``): FTP with a verified, private line.

``ftplib.FTP_TLS(context=None)`` does not verify the server's certificate,
so this connector always passes a default context (hostname checking on),
loaded with the channel's private CA when ``ca_file`` is given. The password
is sent only after the certificate is verified, and ``prot_p()`` protects the
data channel too; without it the statement would travel in clear.
Implicit FTPS (TLS from the first byte, usually port 990) is not supported.
"""

from __future__ import annotations

import ftplib
import os
import ssl

from connectors.base import Attempt
from connectors.ftp import FtpConnector, watched
from core.errors import ConfigError


class _FTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS whose data connections reuse the control channel's TLS session and time out.

    Many FTPS servers (vsftpd's ``require_ssl_reuse``, the default) refuse a
    data connection that does not resume the control connection's session,
    as a guard against data-channel hijacking; ftplib does not reuse it.
    """

    read_timeout: float = 60.0
    watch = None  # the attempt's SocketWatch (connectors.ftp.watched)

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # the plain socket; wrapped here
        try:
            watched(self, conn)  # the attempt's watch cuts it, during the TLS handshake too
            if self._prot_p:
                session = getattr(self.sock, "session", None)
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
                watched(self, conn)
            conn.settimeout(self.read_timeout)
        except BaseException:
            conn.close()
            raise
        return conn, size


class FtpsConnector(FtpConnector):
    """Downloads D's statement over explicit FTPS, verifying the server's certificate and host name.

    [download] options: those of ``type = "ftp"``, plus ``ca_file`` (a PEM
    file of the channel's private CA; default: the system trust store).
    A certificate that does not verify is fatal (never retried): it may be
    an impostor, and the password is not sent to it.
    """

    OPTIONS = FtpConnector.OPTIONS | {"ca_file"}
    SCHEME = "ftps"

    def __init__(self, channel):
        super().__init__(channel)
        where = {"channel": channel.name, "file": channel.conf_file}
        ca_file = self.option("ca_file")
        if ca_file is not None and (not isinstance(ca_file, str) or not os.path.isfile(ca_file)):
            raise ConfigError(f"[download] ca_file {ca_file!r} is not a readable file", **where)
        try:
            # Built once: verification on, hostname checking on, TLS 1.2+ (the defaults of Python's ssl).
            self.context = ssl.create_default_context(cafile=ca_file or None)
        except ssl.SSLError as exc:
            raise ConfigError(f"[download] ca_file {ca_file!r} holds no usable CA certificate: {exc}",
                              **where) from exc

    def _client(self, attempt: Attempt) -> ftplib.FTP:
        ftp = _FTP_TLS(context=self.context, timeout=attempt.connect_timeout)
        ftp.read_timeout = attempt.read_timeout
        return ftp

    def _before_login(self, ftp: ftplib.FTP) -> None:
        ftp.auth()  # AUTH TLS + handshake: the certificate is checked before USER/PASS are sent

    def _after_login(self, ftp: ftplib.FTP) -> None:
        ftp.prot_p()  # PBSZ 0 + PROT P: the statement itself travels encrypted


CONNECTOR = FtpsConnector
