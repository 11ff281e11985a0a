"""Fixtures for connector tests: throwaway certificate authorities for real TLS servers on loopback."""

from __future__ import annotations

import ssl

import pytest


@pytest.fixture(scope="session")
def ca():
    """The CA the channel's server certificate comes from (the client is told to trust it)."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def rogue_ca():
    """A CA the client does not trust: a server with its certificate must be refused."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "channel-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for 127.0.0.1 and localhost, issued by ``ca``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx
