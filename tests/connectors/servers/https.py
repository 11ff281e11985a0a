"""A real HTTPS server on 127.0.0.1 that serves statements at /bills/<name> and misbehaves on request.

It implements the ``FaultyServer`` protocol of ``tests.connectors.contract``:
``publish``, ``fault`` and ``logins``, plus what HTTPS tests look at
(``ranges``: the Range header of every file request, ``responses``: status
and body bytes sent, ``connections``: TCP connections accepted).

Faults (``fault(kind, times=None)``; queued, the first one with turns left
applies to each file request):

- ``"hang"``: read the request, never answer (until the server stops);
- ``"half"``: announce the full Content-Length, send half the body, close (FIN);
- ``"reset"``: send half the body, then reset the connection (SO_LINGER 0);
- ``"missing"``: 404 with a JSON error body;
- ``"norange"``: ignore Range and send the whole file with 200;
- ``"503"``, ``"403"``… (three digits): that status with a JSON error body;
- ``"trickle"``: headers at once, then the body one byte every ``trickle_interval`` s;
- ``"trickle_headers"``: the status line, then the headers one byte every ``trickle_interval`` s;
- ``"shortlength"``: announce half the real Content-Length, send the whole file, close;
- ``"nolength"``: no Content-Length: the body ends when the connection closes;
- ``"redirect"``: 302 to ``redirect_location`` (e.g. a plain-http listener).

``validators = False`` leaves out ETag and Last-Modified; ``publish(…, mtime=…)``
sets Last-Modified (If-Range may carry either validator). ``if_ranges``
records the If-Range header of every file request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

HOST = "127.0.0.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a fault never blocks teardown
    block_on_close = False

    def __init__(self, owner: "HttpsServer", context):
        self.owner = owner
        self.context = context
        super().__init__((HOST, 0), _Handler)

    def finish_request(self, request, client_address):
        # TLS handshake here, in the handler's thread: a client that never completes it cannot block accept().
        self.owner._count("connections")
        request.settimeout(5)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError:  # the client refused our certificate, or went away
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection does not hold a thread for long

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def finish(self):
        try:
            super().finish()
        except OSError:  # the socket was reset on purpose
            pass

    def do_GET(self):
        owner: HttpsServer = self.server.owner
        if self.headers.get("Authorization") is not None:
            owner._count("logins")
        if not owner.authorized(self.headers.get("Authorization")):
            return self._error(401, "unauthorized", extra={"WWW-Authenticate": 'Bearer realm="bills"'})
        if not self.path.startswith("/bills/"):
            return self._error(404, "no such endpoint")
        name = unquote(self.path[len("/bills/"):].split("?")[0])
        rng = self.headers.get("Range")
        with owner.lock:
            owner.ranges.append(rng)
            owner.if_ranges.append(self.headers.get("If-Range"))
        kind = owner._take_fault()
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", owner.redirect_location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "trickle_headers":
            self.close_connection = True
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                for byte in b"X-Slow: " + b"a" * 10000 + b"\r\n":
                    if owner.release.wait(owner.trickle_interval):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:
                pass
            return
        if kind == "hang":
            owner.release.wait(60)  # bounded, so even a forgotten server ends
            self.close_connection = True
            return
        if kind == "missing" or name not in owner.files:
            return self._error(404, "NO_STATEMENT", message="statement not yet generated")
        if kind is not None and kind.isdigit():
            return self._error(int(kind), "FAULT", message=f"injected {kind}")
        data = owner.files[name]
        etag = '"%s"' % hashlib.sha256(data).hexdigest()[:32]
        last_modified = formatdate(owner.mtimes.get(name, 0), usegmt=True)
        start = _range_start(rng) if kind != "norange" else None
        current = (etag, last_modified) if owner.validators else ()
        if start is not None and self.headers.get("If-Range") is not None \
                and self.headers.get("If-Range") not in current:
            start = None  # the client holds another version: send it all
        if start is not None and start >= len(data):
            return self._error(416, "RANGE", extra={"Content-Range": f"bytes */{len(data)}"})
        status, body = (206, data[start:]) if start is not None else (200, data)
        self.send_response(status)
        self.send_header("Content-Type", "text/csv")
        if kind == "shortlength":
            self.send_header("Content-Length", str(len(body) // 2))
        elif kind != "nolength":
            self.send_header("Content-Length", str(len(body)))
        if kind in ("shortlength", "nolength", "trickle"):
            self.send_header("Connection", "close")
            self.close_connection = True
        if owner.validators:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if kind in ("half", "reset"):
            body = body[:len(body) // 2]
        if kind == "trickle":
            try:
                for i in range(len(body)):
                    if owner.release.wait(owner.trickle_interval):
                        return
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
            except OSError:
                return
        else:
            self.wfile.write(body)
        with owner.lock:
            owner.responses.append((status, len(body)))
        if kind == "half":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # a clean FIN, short of the announced length
            self.close_connection = True
        elif kind == "reset":
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the last reference to the socket, so close() really closes it: RST
            self.connection.close()
            self.close_connection = True

    def _error(self, status: int, code: str, message: str | None = None, extra: dict | None = None):
        body = json.dumps({"code": code, "message": message or code}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        with self.server.owner.lock:
            self.server.owner.responses.append((status, len(body)))


def _range_start(header: str | None) -> int | None:
    """N of ``bytes=N-`` (the only form the connector sends); anything else is ignored, as servers may."""
    if header and header.startswith("bytes=") and header.endswith("-") and header[6:-1].isdigit():
        return int(header[6:-1])
    return None


class HttpsServer:
    """A TLS HTTP server on 127.0.0.1 with a certificate from ``context``, on a background thread.

    Auth: ``Authorization: Bearer <token>`` or basic ``username``/``password``;
    anything else gets 401.
    """

    def __init__(self, context, *, token: str = "tok-3f9a1c", username: str = "recon",
                 password: str = "pw-77e2b0"):
        self.token, self.username, self.password = token, username, password
        self.files: dict[str, bytes] = {}
        self.logins = 0
        self.connections = 0
        self.ranges: list[str | None] = []
        self.responses: list[tuple[int, int]] = []
        self.if_ranges: list[str | None] = []
        self.mtimes: dict[str, float] = {}
        self.validators = True
        self.trickle_interval = 0.5
        self.redirect_location = ""
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._faults: list[list] = []
        self._httpd = _Server(self, context)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"https-server-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def start(self) -> "HttpsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # free handlers stuck in "hang"
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> "HttpsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the FaultyServer protocol --------------------------------------------------------------------------
    def publish(self, name: str, data: bytes, mtime: float | None = None) -> None:
        self.files[name] = bytes(data)
        self.mtimes[name] = time.time() if mtime is None else mtime

    def fault(self, kind: str, times: int | None = None) -> None:
        if kind not in ("hang", "half", "reset", "missing", "norange", "trickle", "trickle_headers", "shortlength",
                        "nolength", "redirect") and not (kind.isdigit() and len(kind) == 3):
            raise ValueError(f"unknown fault {kind!r}")
        with self.lock:
            self._faults.append([kind, times])

    # -- internals -------------------------------------------------------------------------------------------
    def _take_fault(self) -> str | None:
        with self.lock:
            for rule in self._faults:
                if rule[1] is None:
                    return rule[0]
                if rule[1] > 0:
                    rule[1] -= 1
                    return rule[0]
        return None

    def _count(self, attr: str) -> None:
        with self.lock:
            setattr(self, attr, getattr(self, attr) + 1)

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        if header == f"Bearer {self.token}":
            return True
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and password == self.password
        return False
