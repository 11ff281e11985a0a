"""The FTP and FTPS connectors against real pyftpdlib servers on loopback that misbehave on purpose."""

from __future__ import annotations

import logging

import pytest

from core.errors import FatalError, UnavailableError
from core.settings import ChannelSettings
from tests.connectors.contract import FAST, NAME, STATEMENT, ConnectorContract, FolderContract
from tests.connectors.servers.ftp import PASSWORD, USERNAME, FaultyFtpServer

PASSWORD_ENV = "RECON_TEST_FTP_PASSWORD"
WRONG_PASSWORD_ENV = "RECON_TEST_FTP_WRONG_PASSWORD"
WRONG_PASSWORD = "not-the-password-42"  # noqa: S105 - a throwaway test credential


@pytest.fixture
def passwords(monkeypatch):
    """The right and a wrong password, by reference (environment variables), as the connectors read them."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(WRONG_PASSWORD_ENV, WRONG_PASSWORD)


@pytest.fixture(scope="session")
def server_certfile(ca, tmp_path_factory) -> str:
    """Key and certificate chain for 127.0.0.1/localhost, issued by the CA the client trusts."""
    path = tmp_path_factory.mktemp("ftps") / "server.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def rogue_certfile(rogue_ca, tmp_path_factory) -> str:
    """A certificate for the right names from a CA the client does not trust (an impostor)."""
    path = tmp_path_factory.mktemp("ftps-rogue") / "server.pem"
    rogue_ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


def ftp_options(server) -> dict:
    return {"host": "127.0.0.1", "port": server.port, "username": USERNAME, "password_env": PASSWORD_ENV}


def commands(server, name: str) -> list[str]:
    return [arg for cmd, arg in server.commands if cmd == name]


class FtpExtras:
    """Beyond the contract: resuming a cut transfer, living without REST, the wall clock, the password."""

    def test_a_cut_transfer_resumes_where_it_stopped(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["attempts"] == 2
        assert commands(server, "REST") == [str(len(STATEMENT) // 2)]

    def test_a_server_refusing_rest_is_read_again_from_the_start(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        server.refuse_rest = True
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["attempts"] == 2
        assert commands(server, "REST") == [str(len(STATEMENT) // 2)]  # asked once, refused with 502
        assert len(commands(server, "RETR")) == 2  # the cut transfer, then one from byte 0

    def test_a_transfer_past_the_attempt_wall_clock_is_abandoned(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        # The whole file takes milliseconds; only the check inside the transfer can stop it this early.
        with pytest.raises(UnavailableError, match="wall-clock") as info:
            do_land(self.channel(server, attempt_timeout=0.001, max_attempts=1))
        assert info.value.file == NAME
        self.assert_nothing_landed(raw)

    def test_a_file_replaced_at_the_same_size_after_a_cut_is_fetched_whole_not_spliced(self, server, landing):
        import hashlib

        do_land, raw = landing
        server.publish(NAME, STATEMENT, mtime=1_700_000_000)
        server.fault("half", times=1)
        new = STATEMENT.replace(b"row", b"ROW")  # the channel re-issued the bill: same size, other bytes
        assert len(new) == len(STATEMENT)

        def reissue(_seconds):
            server.publish(NAME, new, mtime=1_700_000_600)

        manifest = do_land(self.channel(server), sleep=reissue)
        assert hashlib.sha256((raw / NAME).read_bytes()).hexdigest() == hashlib.sha256(new).hexdigest()
        assert manifest["attempts"] == 2 and manifest["files"][0]["sha256"] == hashlib.sha256(new).hexdigest()
        assert commands(server, "REST") == []  # not resumed: the MDTM changed

    def test_without_mdtm_a_cut_transfer_starts_over(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        server.refuse_mdtm = True
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT and manifest["attempts"] == 2
        assert commands(server, "REST") == [] and len(commands(server, "RETR")) == 2

    def test_a_login_refusal_slower_than_read_timeout_is_fatal_after_one_attempt(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.auth_failed_delay = 3  # longer than FAST's read_timeout of 1 s
        with pytest.raises(FatalError) as info:
            do_land(self.channel(server, **self.wrong_credentials(server)))
        assert info.value.exit_code == 1 and "login refused" in info.value.message
        assert info.value.channel == "wechatpay" and info.value.file == NAME and "password" in info.value.hint
        assert server.logins == 1
        self.assert_nothing_landed(raw)

    def test_a_login_that_never_gets_an_answer_ends_with_the_attempt(self, server, landing):
        import time

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.auth_failed_delay = 25
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="wall-clock limit of 2 s") as info:
            do_land(self.channel(server, attempt_timeout=2, max_attempts=1, **self.wrong_credentials(server)))
        assert time.monotonic() - started < 10
        assert "login" in info.value.message and info.value.file == NAME
        self.assert_nothing_landed(raw)

    def test_a_server_trickling_a_reply_is_cut_at_the_attempt_wall_clock(self, server, landing):
        import time

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.trickle_size_reply = 0.5  # each byte well within read_timeout; the reply would take 5 s and more
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="wall-clock limit of 2 s") as info:
            do_land(self.channel(server, attempt_timeout=2, read_timeout=5, max_attempts=1))
        assert time.monotonic() - started < 10
        assert "in stage transfer" in info.value.message and info.value.file == NAME
        assert commands(server, "RETR") == []
        self.assert_nothing_landed(raw)

    def test_a_file_larger_than_max_bytes_is_refused_by_its_size_before_the_transfer(self, server, landing):
        from core.errors import IntegrityError

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        with pytest.raises(IntegrityError, match="announces") as info:
            do_land(self.channel(server, max_bytes=len(STATEMENT) - 1))
        assert info.value.exit_code == 4 and info.value.file == NAME
        assert commands(server, "RETR") == []  # one attempt, not retried, nothing transferred
        self.assert_nothing_landed(raw)

    def test_the_password_is_never_logged_nor_shown(self, server, landing, caplog):
        do_land, _ = landing
        caplog.set_level(logging.DEBUG)
        with pytest.raises(FatalError) as info:
            do_land(self.channel(server, **self.wrong_credentials(server)))
        shown = str(info.value) + "".join(repr(e) for e in (info.value.__cause__, info.value.__context__))
        for secret in (PASSWORD, WRONG_PASSWORD):
            assert secret not in shown and secret not in caplog.text
        assert "login refused" in info.value.message and "password" in info.value.hint


class TestFtp(FtpExtras, ConnectorContract, FolderContract):
    connector_type = "ftp"

    @pytest.fixture
    def server(self, passwords):
        with FaultyFtpServer() as server:
            yield server

    def download_options(self, server) -> dict:
        return ftp_options(server)

    def wrong_credentials(self, server) -> dict:
        return {"password_env": WRONG_PASSWORD_ENV}

    def test_active_mode_downloads_the_exact_bytes(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        do_land(self.channel(server, passive=False))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert commands(server, "PORT") or commands(server, "EPRT")
        assert not commands(server, "PASV") and not commands(server, "EPSV")


class TestFtps(FtpExtras, ConnectorContract, FolderContract):
    connector_type = "ftps"

    @pytest.fixture
    def server(self, passwords, server_certfile):
        with FaultyFtpServer(certfile=server_certfile, tls_required=True) as server:
            yield server

    def download_options(self, server) -> dict:
        return {**ftp_options(server), "ca_file": self.ca_file_path}

    def wrong_credentials(self, server) -> dict:
        return {"password_env": WRONG_PASSWORD_ENV}

    @pytest.fixture(autouse=True)
    def _remember_ca_file(self, ca_file):
        # download_options has no fixture arguments; the trusted CA file is a session fixture.
        self.ca_file_path = ca_file

    def test_a_certificate_from_another_ca_is_refused_at_once(self, passwords, rogue_certfile, landing):
        do_land, raw = landing
        with FaultyFtpServer(certfile=rogue_certfile) as rogue:
            rogue.publish(NAME, STATEMENT)
            with pytest.raises(FatalError) as info:
                do_land(self.channel(rogue))
        assert info.value.exit_code == 1 and info.value.channel == "wechatpay"
        assert "certificate" in info.value.message and "not trusted" in info.value.message
        assert commands(rogue, "AUTH") == ["TLS"]  # one connection: not retried
        assert rogue.logins == 0 and not commands(rogue, "USER")  # nothing sent to an impostor
        self.assert_nothing_landed(raw)

    def test_without_ca_file_the_system_trust_store_is_used_and_a_private_ca_refused(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        options = {**FAST, "type": "ftps", "filename": "bill_{date:%Y%m%d}.csv", **ftp_options(server)}
        channel = ChannelSettings(name="wechatpay", normalizer="wechatpay", download=options, conf_file="<test>")
        with pytest.raises(FatalError, match="not trusted"):
            do_land(channel)
        assert server.logins == 0
        self.assert_nothing_landed(raw)

    def test_the_data_channel_is_protected(self, passwords, server_certfile, landing):
        do_land, raw = landing
        # A server that would accept clear data too: protection must be the client's choice.
        with FaultyFtpServer(certfile=server_certfile, tls_required=False) as server:
            server.publish(NAME, STATEMENT)
            manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["files"][0]["source"] == f"ftps://127.0.0.1:{server.port}/{NAME}"
        names = [cmd for cmd, _ in server.commands]
        assert names.index("AUTH") < names.index("USER")
        assert commands(server, "PBSZ") == ["0"] and commands(server, "PROT") == ["P"]
        assert names.index("PROT") < names.index("RETR")
        assert server.data_tls == [True]

    def test_plain_ftp_to_a_tls_only_server_fails_clearly(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        options = {**FAST, "type": "ftp", "filename": "bill_{date:%Y%m%d}.csv", **ftp_options(server)}
        channel = ChannelSettings(name="wechatpay", normalizer="wechatpay", download=options, conf_file="<test>")
        with pytest.raises(FatalError) as info:
            do_land(channel)
        assert "requires TLS" in info.value.message and 'type = "ftps"' in info.value.hint
        assert server.logins == 0 and commands(server, "USER") == [USERNAME]  # refused once, password never sent
        self.assert_nothing_landed(raw)


def test_an_unknown_option_and_a_literal_password_are_configuration_errors():
    from connectors.ftps import FtpsConnector
    from core.errors import ConfigError

    def channel(**extra):
        options = {"type": "ftps", "filename": "x", "host": "h", "username": "u", "password_env": "X", **extra}
        return ChannelSettings(name="c", normalizer="wechatpay", download=options, conf_file="<test>")

    with pytest.raises(ConfigError, match="unknown"):
        FtpsConnector(channel(hostname="h"))
    with pytest.raises(ConfigError, match="port"):
        FtpsConnector(channel(port="21"))
    with pytest.raises(ConfigError, match="ca_file"):
        FtpsConnector(channel(ca_file="/nonexistent/ca.pem"))
    with pytest.raises(ConfigError, match="password_env"):  # a literal password is refused before any socket
        FtpsConnector(channel(password="literal"))
