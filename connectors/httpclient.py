"""HTTP plumbing the HTTPS-based connectors share: a wall-clock bound on every attempt, redirects checked
before they are followed, and a body that must be exactly as long as announced.

requests' ``timeout=(connect, read)`` bounds each socket read, not the whole
request: a server that trickles one byte per second (in the headers or the
body) keeps every read short and the attempt alive forever, and
``iter_content(64 KiB)`` does not even return to the caller between those
bytes. ``bounded_session`` tracks the sockets its connections open and shuts
them down when the attempt's wall-clock time is up, which ends any read at
once; the caller then reports ``attempt.timeout_error()``.

Redirects are never followed by requests (``allow_redirects=False``):
``get`` checks each ``Location`` first, so a redirect to plain ``http://``
is refused before a single byte goes there, and credentials are not handed
to another host.
"""

from __future__ import annotations

import contextlib
import select
import urllib.parse
from typing import Callable, Iterator

import requests
import requests.adapters
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from connectors.base import Attempt, SocketWatch

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


def _watched_pools(watch: SocketWatch) -> dict:
    """Connection-pool classes whose connections register their sockets (plain TCP, then TLS) with ``watch``."""

    def conn_class(base):
        class Watched(base):
            def _new_conn(self):
                sock = super()._new_conn()
                watch.add(sock)  # covers the TLS handshake
                return sock

            def connect(self):
                super().connect()
                if self.sock is not None:
                    watch.add(self.sock)
                    self.watched_sock = self.sock  # http.client drops self.sock when the reply says "close"

        return Watched

    https_conn, http_conn = conn_class(HTTPSConnection), conn_class(HTTPConnection)
    https_pool = type("WatchedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    http_pool = type("WatchedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    return {"https": https_pool, "http": http_pool}


@contextlib.contextmanager
def bounded_session(attempt: Attempt) -> Iterator[requests.Session]:
    """A requests Session whose connections are cut when ``attempt`` runs out of wall-clock time.

    ``session.attempt_expired()`` says afterwards whether that is why a request failed or a body ended.
    """
    watch = SocketWatch()
    session = requests.Session()
    for prefix in ("https://", "http://"):
        adapter = requests.adapters.HTTPAdapter(max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = _watched_pools(watch)
        session.mount(prefix, adapter)
    session.attempt_expired = watch.expired.is_set
    with watch.until(attempt), session:
        yield session


def request_timeout(attempt: Attempt) -> tuple[float, float]:
    """requests' (connect, read) timeouts, neither longer than what is left of the attempt."""
    left = max(0.001, attempt.remaining())
    return (min(attempt.connect_timeout, left), min(attempt.read_timeout, left))


def get(session: requests.Session, url: str, *, check_location: Callable[[str], None], auth=None,
        headers: dict | None = None, max_redirects: int = MAX_REDIRECTS, **kwargs) -> requests.Response:
    """GET ``url``, following redirects by hand: ``check_location(next_url)`` runs before each is requested
    (it raises to refuse), and credentials are dropped when a redirect leaves the host, as requests does."""
    headers = dict(headers or {})
    origin = urllib.parse.urlsplit(url).netloc.lower()
    for _ in range(max_redirects + 1):
        resp = session.get(url, auth=auth, headers=headers, allow_redirects=False, **kwargs)
        location = resp.headers.get("Location")
        if resp.status_code not in REDIRECTS or not location:
            return resp
        resp.close()
        url = urllib.parse.urljoin(url, location)
        check_location(url)
        if urllib.parse.urlsplit(url).netloc.lower() != origin:
            auth = None
            headers.pop("Authorization", None)
    raise requests.exceptions.TooManyRedirects(f"more than {max_redirects} redirects")


@contextlib.contextmanager
def held_socket(resp: requests.Response):
    """The socket a streamed response is read from (None if unknown), kept open after the body.

    http.client closes the connection as soon as the announced length is read; a file object of our own on
    the socket keeps its descriptor (and TLS state) alive until we have looked past the body.
    """
    sock = getattr(getattr(resp.raw, "connection", None), "watched_sock", None)
    hold = None
    if sock is not None:
        try:
            hold = sock.makefile("rb")
        except (OSError, ValueError):
            sock = None
    try:
        yield sock
    finally:
        if hold is not None:
            hold.close()


def surplus_after_body(sock, wait: float = 1.0) -> bool:
    """True if the server sent bytes after the body it announced (a Content-Length smaller than the file).

    The request asked ``Connection: close``, so an honest server closes after the body: the socket becomes
    readable at end of file at once. Bytes instead mean the announced length was wrong, and the part we
    received is not the whole file. A server that keeps the connection open anyway costs ``wait`` seconds.
    """
    if sock is None:
        return False
    try:
        if sock.fileno() < 0:
            return False
        pending = sock.pending() if hasattr(sock, "pending") else 0
        if not pending and not select.select([sock], [], [], wait)[0]:
            return False
        sock.settimeout(wait)
        return bool(sock.recv(1))
    except (OSError, ValueError):
        return False
