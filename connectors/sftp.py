"""Statements published on a channel's SFTP server, fetched with paramiko and a pinned host key.

[download] options: ``host``, ``port`` (22), ``username``, ``password_env`` or
``password_file`` and/or ``key_file`` (+ ``key_passphrase_env`` /
``key_passphrase_file``), ``known_hosts`` (required: a known_hosts file
holding the server's pinned key) and ``remote_dir`` (``"."``, the login
folder; may be dated: ``outgoing/{date:%Y-%m-%d}``).

Only the given known_hosts file is trusted: never ``~/.ssh``, never the SSH
agent, and an unknown or changed host key is refused (a security alert, never
retried). Transfers resume from the ``.part`` file's offset after a cut.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import stat
import threading

import paramiko

from connectors.base import Attempt, Connector, FetchInfo, PartFile
from core.errors import ConfigError, FatalError, NotPublishedYet, ReconError, RetriableError

CHUNK = 32768  # paramiko's SFTP request size; a bigger read is split into requests of this size anyway

# paramiko raises AuthenticationException for these although nothing was refused: the server hung or
# dropped the session mid-authentication. Worth another attempt (a wrong password is never retried).
_TRANSIENT_AUTH = ("Authentication timeout", "Authentication failed: transport shut down")


class UnpinnedHostKey(paramiko.SSHException):
    """The server's host key is not in the pinned known_hosts file (for this host and key type)."""

    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"no pinned {key.get_name()} host key for {hostname}")
        self.hostname = hostname
        self.key = key


class RejectUnpinnedHost(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, raising an exception of its own so it is told apart from a dropped session."""

    def missing_host_key(self, client, hostname, key):
        raise UnpinnedHostKey(hostname, key)


class SftpConnector(Connector):
    """Fetches ``{remote_dir}/{filename}`` over SFTP, resuming a cut transfer; see the module docstring."""

    OPTIONS = frozenset({"host", "port", "username", "password_env", "password_file", "key_file",
                         "key_passphrase_env", "key_passphrase_file", "known_hosts", "remote_dir"})
    FOLDER_OPTION = "remote_dir"
    RESUMABLE = True

    def __init__(self, channel):
        super().__init__(channel)
        where = {"channel": channel.name, "file": channel.conf_file}
        self.host = str(self.option("host", required=True))
        port = self.option("port", 22)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"[download] port must be a TCP port number, got {port!r}", **where)
        self.port = port
        self.username = str(self.option("username", required=True))
        self.known_hosts = os.path.expanduser(str(self.option("known_hosts", required=True)))
        if not os.path.isfile(self.known_hosts):
            raise ConfigError(f"[download] known_hosts file {self.known_hosts} does not exist", **where,
                              hint="put the channel's host key there, checked with the channel out of band "
                                   "(ssh-keyscan output is only as good as the network it ran on)")
        self._password = self.secret("password", required=False)
        self._pkey = self._load_key(where)
        if self._password is None and self._pkey is None:
            raise ConfigError("[download] needs password_env, password_file or key_file", **where)
        # (size, mtime) of the remote file when the bytes in a .part file were read, per file name: a resumed
        # transfer must continue the same file, not a new version published in between.
        self._seen: dict[str, tuple[int, int | None]] = {}

    def _load_key(self, where: dict) -> paramiko.PKey | None:
        path = self.option("key_file")
        if path is None:
            return None
        path = os.path.expanduser(str(path))
        passphrase = self.secret("key_passphrase", required=False)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                # as ssh itself does: a private key others can read is as good as leaked
                raise ConfigError(f"key file {path} is readable by others (mode {mode:04o}); chmod 600 it", **where)
            # cryptography wants the passphrase as bytes for OpenSSH-format keys
            return paramiko.PKey.from_path(path, passphrase.encode() if passphrase is not None else None)
        except paramiko.PasswordRequiredException as exc:
            raise ConfigError(f"key file {path} is encrypted; set key_passphrase_env or key_passphrase_file",
                              **where) from exc
        except (OSError, paramiko.SSHException, ValueError) as exc:
            # the message never includes the passphrase, only what is wrong with the file
            raise ConfigError(f"cannot load key file {path}: {exc}", **where) from exc

    def remote_path(self, name: str, day: dt.date) -> str:
        """The path of D's statement file ``name`` on the server (relative paths start at the login folder)."""
        return posixpath.normpath(posixpath.join(self.folder(day, "."), name))

    def source(self, path: str) -> str:
        """The file's address for the manifest; ``/~/`` marks a path relative to the login folder, as curl does."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{host}:{self.port}" + (path if path.startswith("/") else f"/~/{path}")

    # -- one attempt ---------------------------------------------------------------------------------------------
    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        """Download ``name`` into ``part`` (from ``part.offset`` when resuming) within ``attempt``'s limits."""
        where = self.where(day, name)
        address = f"{self.host}:{self.port}"
        client = paramiko.SSHClient()
        # Only the pinned file: no load_system_host_keys(), and unknown hosts are refused, never added.
        client.set_missing_host_key_policy(RejectUnpinnedHost())
        try:
            client.load_host_keys(self.known_hosts)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise ConfigError(f"cannot read known_hosts file {self.known_hosts}: {exc}", **where) from exc

        # Some paramiko waits have no timeout at all (the answer to the "sftp" subsystem request): closing the
        # connection when the attempt's wall-clock time is up turns any such hang into a retriable EOF.
        expired = threading.Event()

        def expire():
            expired.set()
            transport = client.get_transport()
            if transport is not None:
                transport.close()  # not client.close(): the attempt's thread may still be using the client

        watchdog = threading.Timer(attempt.remaining(), expire)
        watchdog.daemon = True
        watchdog.start()
        sftp = None
        try:
            client.connect(self.host, port=self.port, username=self.username, password=self._password,
                           pkey=self._pkey, timeout=attempt.connect_timeout, banner_timeout=attempt.connect_timeout,
                           auth_timeout=attempt.read_timeout, channel_timeout=attempt.read_timeout,
                           allow_agent=False, look_for_keys=False)
            # open_sftp() would wait for the server's SFTP version without a timeout: set it on the channel first.
            channel = client.get_transport().open_session(timeout=attempt.read_timeout)
            channel.settimeout(attempt.read_timeout)
            channel.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(channel)
            return self._download(sftp, name, day, part, attempt, where)
        except ReconError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise FatalError(
                f"SECURITY ALERT: the SSH host key of {address} is not the pinned one in {self.known_hosts} "
                f"(server sent {exc.key.get_name()} {exc.key.fingerprint}, pinned {exc.expected_key.fingerprint}); "
                f"someone may be intercepting the connection; not retried", **where,
                hint="do not update known_hosts until the channel confirms its new key out of band") from exc
        except UnpinnedHostKey as exc:
            raise FatalError(
                f"SECURITY ALERT: the SSH host key of {address} ({exc.key.get_name()} {exc.key.fingerprint}) is not "
                f"the pinned one: {self.known_hosts} has no {exc.key.get_name()} key for {exc.hostname}; not retried",
                **where, hint="add the channel's host key to known_hosts only after checking it with the channel "
                              "out of band") from exc
        except paramiko.AuthenticationException as exc:
            if str(exc).startswith(_TRANSIENT_AUTH) and not isinstance(exc, paramiko.BadAuthenticationType):
                raise RetriableError(f"SFTP session to {address} dropped during authentication: {exc}",
                                     **where) from exc
            # the exception text names the allowed methods at most, never the secret
            raise FatalError(f"SFTP server {address} refused the login of user {self.username!r}: {exc}", **where,
                             hint="check username, password_env/password_file or key_file; not retried, so the "
                                  "account is not locked by repeated failures") from exc
        except FileNotFoundError as exc:
            raise NotPublishedYet(f"{self.remote_path(name, day)} is not on {address} yet", **where,
                                  hint="the channel has not published it; it is tried again later") from exc
        except PermissionError as exc:
            raise FatalError(f"SFTP server {address} denies reading {self.remote_path(name, day)}: {exc}", **where,
                             hint="ask the channel to grant the account read access") from exc
        except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
            # timeouts, refused/reset connections, sessions the server dropped, a garbled SFTP stream
            if expired.is_set():
                raise RetriableError(f"attempt {attempt.number} exceeded its wall-clock limit of "
                                     f"{attempt.wall_clock:g} s talking to {address}", **where) from exc
            text = str(exc) or "connection closed"
            raise RetriableError(f"SFTP transfer from {address} failed: {type(exc).__name__}: {text}",
                                 **where) from exc
        finally:
            watchdog.cancel()
            # After a failure the remote file is not closed: that waits for an answer a hung server never sends.
            # Dropping the session closes it on the server.
            if sftp is not None:
                sftp.close()
            client.close()

    def _download(self, sftp: paramiko.SFTPClient, name: str, day: dt.date, part: PartFile, attempt: Attempt,
                  where: dict) -> FetchInfo:
        path = self.remote_path(name, day)
        before = sftp.stat(path)
        size, version = before.st_size, (before.st_size, before.st_mtime)
        offset = part.offset
        if offset and (offset > size or self._seen.get(name) != version):
            part.restart()  # the remote file is not the one the partial bytes came from: start over
            offset = 0
        self._seen[name] = version
        part.expect(size)
        remote = sftp.open(path, "rb")
        remote.seek(offset)
        while offset < size:
            attempt.check()
            data = remote.read(min(CHUNK, size - offset))
            if not data:
                raise RetriableError(f"{path} ended at byte {offset} of {size} (the server cut the transfer or the "
                                     f"file shrank)", **where)
            part.write(data)
            offset += len(data)
        after = remote.stat()
        if (after.st_size, after.st_mtime) != version:
            # A channel still uploading the file: its size at the start was not the final one.
            part.restart()
            raise RetriableError(f"{path} changed while it was downloaded (was {size} bytes, now {after.st_size}); "
                                 f"the channel may still be writing it", **where)
        remote.close()
        return FetchInfo(source=self.source(path), expected_size=size)


CONNECTOR = SftpConnector
