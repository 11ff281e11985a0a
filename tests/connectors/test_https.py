"""The HTTPS connector against a real TLS server on loopback: the contract, resume, certificates, statuses."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigError, FatalError, UnavailableError
from core.settings import ChannelSettings
from tests.connectors.conftest import server_context
from tests.connectors.contract import NAME, STATEMENT, ConnectorContract
from tests.connectors.servers.https import HttpsServer

TOKEN_VAR = "RECON_TEST_HTTPS_TOKEN"
WRONG_TOKEN_VAR = "RECON_TEST_HTTPS_WRONG_TOKEN"


class TestHttps(ConnectorContract):
    connector_type = "https"

    @pytest.fixture
    def server(self, ca, ca_file, monkeypatch):
        """A fresh server per test (faults and counters start clean), with the token in the environment."""
        with HttpsServer(server_context(ca)) as srv:
            srv.ca_file = ca_file
            monkeypatch.setenv(TOKEN_VAR, srv.token)
            monkeypatch.setenv(WRONG_TOKEN_VAR, srv.token + "-wrong")
            yield srv

    def download_options(self, server) -> dict:
        return {"url": server.base_url + "/bills/{name}", "ca_file": server.ca_file, "token_env": TOKEN_VAR}

    def wrong_credentials(self, server) -> dict:
        return {"token_env": WRONG_TOKEN_VAR}

    # -- HTTPS only ------------------------------------------------------------------------------------------
    def test_a_cut_transfer_resumes_with_range_and_lands_exactly(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["attempts"] == 2
        first, second = server.ranges
        assert first is None and second.startswith("bytes=") and second.endswith("-")
        resumed_at = int(second[len("bytes="):-1])
        assert 0 < resumed_at <= len(STATEMENT) // 2
        # the second answer carried only the rest, not the whole file again
        assert server.responses == [(200, len(STATEMENT) // 2), (206, len(STATEMENT) - resumed_at)]

    def test_a_server_that_ignores_range_makes_the_client_start_over(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        server.fault("norange")
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT
        assert manifest["attempts"] == 2 and manifest["files"][0]["size"] == len(STATEMENT)
        assert server.ranges[1] is not None and server.responses[1] == (200, len(STATEMENT))

    def test_a_certificate_from_another_ca_is_fatal_at_once(self, rogue_ca, ca_file, monkeypatch, landing):
        do_land, raw = landing
        with HttpsServer(server_context(rogue_ca)) as rogue:
            rogue.ca_file = ca_file
            rogue.publish(NAME, STATEMENT)
            monkeypatch.setenv(TOKEN_VAR, rogue.token)
            with pytest.raises(FatalError, match="not trusted") as info:
                do_land(self.channel(rogue))
            assert "ca_file" in info.value.hint
            assert rogue.connections == 1 and rogue.logins == 0  # no retry, and the token never left
        self.assert_nothing_landed(raw)

    def test_server_errors_are_retried_until_served(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("503", times=2)
        manifest = do_land(self.channel(server))
        assert manifest["attempts"] == 3
        assert (raw / NAME).read_bytes() == STATEMENT

    def test_forbidden_is_fatal_at_once(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("403")
        with pytest.raises(FatalError, match="403"):
            do_land(self.channel(server))
        assert len(server.ranges) == 1
        self.assert_nothing_landed(raw)

    def test_basic_auth_with_a_password_file(self, server, landing, tmp_path):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        secret = tmp_path / "password"
        secret.write_text(server.password + "\n")
        os.chmod(secret, 0o600)
        options = {k: v for k, v in self.channel(server).download.items() if k != "token_env"}
        options.update(username=server.username, password_file=str(secret),
                       url=server.base_url + "/bills/{name}?sig=s{date:%Y%m%d}")
        manifest = do_land(ChannelSettings(name="wechatpay", normalizer="wechatpay", download=options,
                                           conf_file="<test>"))
        assert (raw / NAME).read_bytes() == STATEMENT
        # the recorded source keeps no query string (it may carry a signature)
        assert manifest["files"][0]["source"] == f"{server.base_url}/bills/{NAME}"
        assert server.logins == 1

    @pytest.mark.parametrize("url", ["http://127.0.0.1/bills/{name}", "https://user:pw@127.0.0.1/{name}"])
    def test_urls_that_would_leak_are_configuration_errors(self, server, landing, url):
        do_land, _ = landing
        with pytest.raises(ConfigError):
            do_land(self.channel(server, url=url))
        assert server.connections == 0

    def test_a_refused_connection_is_retried_and_messages_hide_the_url_signature(self, server, landing, caplog,
                                                                                  ca):
        do_land, raw = landing
        with HttpsServer(server_context(ca)) as gone:
            port = gone.port  # stopped on leaving: connections to it are refused
        url = f"https://127.0.0.1:{port}/bills/{{name}}?sig=SIG9d81e"
        with caplog.at_level("INFO"), pytest.raises(UnavailableError) as info:  # urllib3 logs URLs only at DEBUG
            do_land(self.channel(server, url=url, max_attempts=2))
        assert "attempt 1 failed" in caplog.text and "Max retries exceeded" in info.value.message
        assert "SIG9d81e" not in caplog.text + str(info.value) and server.token not in caplog.text
        self.assert_nothing_landed(raw)

    # -- resume only the same version --------------------------------------------------------------------------
    def test_a_file_replaced_at_the_same_size_after_a_cut_lands_whole_and_new(self, server, landing):
        import hashlib

        do_land, raw = landing
        server.publish(NAME, STATEMENT, mtime=1_700_000_000)
        server.fault("half", times=1)
        new = STATEMENT.replace(b"row", b"ROW")
        assert len(new) == len(STATEMENT)
        manifest = do_land(self.channel(server), sleep=lambda _: server.publish(NAME, new, mtime=1_700_000_600))
        assert hashlib.sha256((raw / NAME).read_bytes()).hexdigest() == hashlib.sha256(new).hexdigest()
        assert manifest["attempts"] == 2
        first_etag = '"%s"' % hashlib.sha256(STATEMENT).hexdigest()[:32]
        assert server.if_ranges == [None, first_etag]  # the resume asked "only if it is still that version"
        assert server.responses[1] == (200, len(new))  # and got the whole new file, which restarted the part

    def test_without_a_validator_a_cut_transfer_starts_over_without_range(self, server, landing):
        do_land, raw = landing
        server.validators = False
        server.publish(NAME, STATEMENT)
        server.fault("half", times=1)
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT and manifest["attempts"] == 2
        assert server.ranges == [None, None]

    # -- redirects -------------------------------------------------------------------------------------------
    def test_a_redirect_to_plain_http_is_refused_before_any_request_goes_there(self, server, landing):
        do_land, raw = landing
        with PlainHttpListener() as plain:
            server.publish(NAME, STATEMENT)
            server.redirect_location = f"http://127.0.0.1:{plain.port}/bills/{NAME}"
            server.fault("redirect")
            with pytest.raises(FatalError, match="non-HTTPS") as info:
                do_land(self.channel(server))
            assert plain.requests == 0 and plain.connections == 0
        assert info.value.exit_code == 1 and info.value.file == NAME and info.value.hint
        assert len(server.ranges) == 1  # not retried
        self.assert_nothing_landed(raw)

    def test_a_redirect_to_https_on_the_same_host_is_followed(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.publish("moved.csv", STATEMENT)
        server.redirect_location = "/bills/moved.csv"
        server.fault("redirect", times=1)
        do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT and len(server.ranges) == 2

    # -- the attempt's wall clock ------------------------------------------------------------------------------
    @pytest.mark.parametrize("kind", ["trickle", "trickle_headers"])
    def test_a_trickling_server_is_abandoned_at_attempt_timeout(self, server, landing, kind):
        import time

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.trickle_interval = 0.5  # each byte well inside read_timeout
        server.fault(kind)
        started = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            do_land(self.channel(server, attempt_timeout=2, read_timeout=5, max_attempts=1))
        assert time.monotonic() - started < 15
        assert "wall-clock limit of 2 s" in info.value.message and info.value.file == NAME
        self.assert_nothing_landed(raw)

    # -- sizes -------------------------------------------------------------------------------------------------
    def test_an_understated_content_length_fails_the_attempt(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("shortlength", times=1)
        manifest = do_land(self.channel(server))
        assert (raw / NAME).read_bytes() == STATEMENT and manifest["attempts"] == 2

    def test_an_always_understated_content_length_lands_nothing(self, server, landing):
        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("shortlength")
        with pytest.raises(UnavailableError, match="more bytes than its Content-Length"):
            do_land(self.channel(server))
        self.assert_nothing_landed(raw)

    def test_a_content_length_over_max_bytes_is_refused_before_the_body(self, server, landing):
        from core.errors import IntegrityError

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        with pytest.raises(IntegrityError, match="announces") as info:
            do_land(self.channel(server, max_bytes=1000))
        assert info.value.exit_code == 4 and info.value.file == NAME and len(server.ranges) == 1
        self.assert_nothing_landed(raw)

    def test_a_body_without_length_is_stopped_at_max_bytes(self, server, landing, tmp_path):
        from core.errors import IntegrityError

        do_land, raw = landing
        server.publish(NAME, STATEMENT)
        server.fault("nolength")
        with pytest.raises(IntegrityError, match="larger than max_bytes = 100000") as info:
            do_land(self.channel(server, max_bytes=100_000))
        assert info.value.exit_code == 4 and len(server.ranges) == 1
        self.assert_nothing_landed(raw)
        assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


class PlainHttpListener:
    """A plain-http server that counts what reaches it (a redirect target that must never be used)."""

    def __init__(self):
        import socketserver

        owner = self
        self.requests = 0
        self.connections = 0

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                owner.connections += 1
                if self.request.recv(65536):
                    owner.requests += 1
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]

    def __enter__(self):
        import threading

        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
