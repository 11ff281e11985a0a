"""The SFTP connector against a real paramiko SFTP server on loopback: the contract, host-key pinning, key auth."""

from __future__ import annotations

import io
import time

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from core.errors import ConfigError, FatalError
from tests.connectors.contract import NAME, STATEMENT, ConnectorContract, FolderContract
from tests.connectors.servers.sftp import FaultySftpServer

USER = "recon"
PASSWORD = "correct horse battery staple"
PASSWORD_ENV = "RECON_TEST_SFTP_PASSWORD"
WRONG_PASSWORD_ENV = "RECON_TEST_SFTP_WRONG_PASSWORD"
PASSPHRASE_ENV = "RECON_TEST_SFTP_KEY_PASSPHRASE"


def ed25519_key(passphrase: bytes | None = None) -> tuple[paramiko.Ed25519Key, bytes]:
    """A fresh Ed25519 key (fast to make, unlike RSA) and its OpenSSH private key file text."""
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()), password=passphrase), pem


@pytest.fixture(scope="session")
def rsa_keys():
    """Two RSA host keys, made once per session (RSA generation is slow): the server's, and an impostor's."""
    return paramiko.RSAKey.generate(2048), paramiko.RSAKey.generate(2048)


@pytest.fixture(scope="session")
def client_key():
    """The channel-side account's authorized key (encrypted OpenSSH private key file text, its passphrase)."""
    passphrase = b"key passphrase"
    key, pem = ed25519_key(passphrase)
    return key, pem, passphrase.decode()


def write_known_hosts(path, host: str, key: paramiko.PKey) -> str:
    """A known_hosts file pinning ``key`` for ``host`` (``[127.0.0.1]:PORT`` for a non-22 port)."""
    keys = paramiko.HostKeys()
    keys.add(host, key.get_name(), key)
    keys.save(str(path))
    return str(path)


@pytest.fixture
def server(tmp_path, rsa_keys, client_key, monkeypatch):
    """A running SFTP server with one account (password or key) and a known_hosts file pinning its key."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(WRONG_PASSWORD_ENV, PASSWORD + "!")
    root = tmp_path / "sftp-root"
    root.mkdir()
    with FaultySftpServer(str(root), rsa_keys[0], username=USER, password=PASSWORD,
                          authorized_key=client_key[0]) as srv:
        srv.known_hosts = write_known_hosts(tmp_path / "known_hosts", f"[127.0.0.1]:{srv.port}", rsa_keys[0])
        yield srv


class TestSftp(ConnectorContract, FolderContract):
    connector_type = "sftp"

    def download_options(self, server) -> dict:
        return {"host": "127.0.0.1", "port": server.port, "username": USER, "password_env": PASSWORD_ENV,
                "known_hosts": server.known_hosts}

    def wrong_credentials(self, server) -> dict:
        return {"password_env": WRONG_PASSWORD_ENV}

    def test_a_file_larger_than_max_bytes_is_refused_by_its_size_before_the_transfer(self, server, landing):
        from core.errors import IntegrityError

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        with pytest.raises(IntegrityError, match="announces") as info:
            do_land(self.channel(server, max_bytes=len(STATEMENT) - 1))
        assert info.value.exit_code == 4 and info.value.file == NAME and server.logins == 1
        self.assert_nothing_landed(raw)

    def test_a_file_replaced_at_the_same_size_after_a_cut_is_fetched_whole_not_spliced(self, server, landing):
        import hashlib
        import os

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        os.utime(os.path.join(server.root, NAME), (1_700_000_000, 1_700_000_000))
        server.fault("half", times=1)
        new = STATEMENT.replace(b"row", b"ROW")

        def reissue(_seconds):
            server.publish(NAME, new)
            os.utime(os.path.join(server.root, NAME), (1_700_000_600, 1_700_000_600))

        do_land(self.channel(server), sleep=reissue)
        assert hashlib.sha256((raw / NAME).read_bytes()).hexdigest() == hashlib.sha256(new).hexdigest()

    # -- host-key pinning --------------------------------------------------------------------------------------
    def test_a_host_key_other_than_the_pinned_one_is_a_security_alert_not_retried(self, server, landing, rsa_keys,
                                                                                   tmp_path):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        pinned = write_known_hosts(tmp_path / "pinned", f"[127.0.0.1]:{server.port}", rsa_keys[1])
        with pytest.raises(FatalError, match="not the pinned one") as info:
            do_land(self.channel(server, known_hosts=pinned))
        assert info.value.exit_code == 1 and isinstance(info.value.__cause__, paramiko.BadHostKeyException)
        assert "SECURITY ALERT" in info.value.message and rsa_keys[0].fingerprint in info.value.message
        assert server.connections == 1 and server.logins == 0  # one attempt, and no password sent to it
        self.assert_nothing_landed(raw)

    def test_a_host_missing_from_known_hosts_is_refused_not_added(self, server, landing, rsa_keys, tmp_path):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        # the right key, but for the default port: [127.0.0.1]:PORT is another host as far as SSH is concerned
        other = write_known_hosts(tmp_path / "other", "127.0.0.1", rsa_keys[0])
        before = open(other).read()
        with pytest.raises(FatalError, match="not the pinned one"):
            do_land(self.channel(server, known_hosts=other))
        assert server.connections == 1 and server.logins == 0
        assert open(other).read() == before  # nothing was added to the file
        self.assert_nothing_landed(raw)

    def test_known_hosts_is_required(self, server, landing):
        do_land, _ = landing
        channel = self.channel(server)
        del channel.download["known_hosts"]
        with pytest.raises(ConfigError, match="known_hosts"):
            do_land(channel)
        assert server.connections == 0

    # -- key-based login ----------------------------------------------------------------------------------------
    def test_an_encrypted_key_file_logs_in_and_lands_from_remote_dir(self, server, landing, client_key, tmp_path,
                                                                     monkeypatch):
        do_land, raw = landing
        _, pem, passphrase = client_key
        key_file = tmp_path / "id_ed25519"
        key_file.write_bytes(pem)
        key_file.chmod(0o600)
        monkeypatch.setenv(PASSPHRASE_ENV, passphrase)
        server.password = None  # the server only accepts the key now
        server.publish("outgoing/" + NAME, STATEMENT)
        channel = self.channel(server, key_file=str(key_file), key_passphrase_env=PASSPHRASE_ENV,
                               remote_dir="/outgoing")
        del channel.download["password_env"]
        manifest = do_land(channel)
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["files"][0]["source"] == f"sftp://127.0.0.1:{server.port}/outgoing/{NAME}"
        assert server.logins == 1

    def test_a_key_file_readable_by_others_is_refused(self, server, landing, client_key, tmp_path):
        do_land, _ = landing
        key_file = tmp_path / "id_ed25519"
        key_file.write_bytes(client_key[1])
        key_file.chmod(0o644)
        with pytest.raises(ConfigError, match="readable by others"):
            do_land(self.channel(server, key_file=str(key_file)))
        assert server.connections == 0

    # -- resuming -----------------------------------------------------------------------------------------------
    def test_a_cut_transfer_resumes_where_it_stopped(self, server, landing, monkeypatch):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        offsets = []
        from connectors import sftp as sftp_module

        original = sftp_module.SftpConnector._download

        def spy(self, sftp, name, day, part, attempt, where):
            offsets.append(part.offset)
            return original(self, sftp, name, day, part, attempt, where)

        monkeypatch.setattr(sftp_module.SftpConnector, "_download", spy)
        manifest = do_land(self.channel(server))
        # the second attempt starts from the bytes kept, not from 0 (paramiko may hold back one short last read)
        assert manifest["attempts"] == 2 and offsets[0] == 0 and 0 < offsets[1] <= len(STATEMENT) // 2
        assert (raw / NAME).read_bytes() == STATEMENT

    def test_a_hung_read_ends_at_the_read_timeout_not_the_attempt_limit(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("hang", times=1)
        started = time.monotonic()
        manifest = do_land(self.channel(server, attempt_timeout=30, max_wait=60))
        assert manifest["attempts"] == 2 and time.monotonic() - started < 10  # read_timeout is 1 s
        assert (raw / NAME).read_bytes() == STATEMENT
