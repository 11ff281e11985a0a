"""Statements published over HTTPS: streamed, certificate-verified, resumed with ``Range`` after a cut.

[download] options::

    type = "https"
    url = "https://bills.example.com/v1/{date:%Y%m%d}/{name}"   # {name} and/or {date:...}
    ca_file = "/etc/recon/channel-ca.pem"   # optional: the channel's private CA (else the system trust store)
    token_env = "VAR" | token_file = "/path"                         # bearer token, or
    username = "recon" + password_env = "VAR" | password_file = "/path"   # basic auth

Certificates are always verified: a server the client cannot trust is a
fatal error (an alert, never retried), not something to switch off.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import re
import ssl
import urllib.parse

import requests
import urllib3.exceptions

from connectors import httpclient
from connectors.base import Attempt, Connector, FetchInfo, PartFile
from core.errors import ConfigError, FatalError, NotPublishedYet, RetriableError

log = logging.getLogger(__name__)

# Small enough that attempt.check() (the wall-clock limit) runs often on a slow link.
CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
# Transport failures a later attempt may not meet (urllib3 errors can escape requests while streaming).
_TRANSIENT = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
              requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
              urllib3.exceptions.ProtocolError, urllib3.exceptions.IncompleteRead, urllib3.exceptions.TimeoutError,
              http.client.IncompleteRead, ConnectionError, TimeoutError)


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind ``exc`` (requests wraps it two or three levels deep), if any."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        todo.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        todo.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return None


def _scrub(text: str, url: str) -> str:
    """``text`` (a library's error message) without the URL's query string, which may carry a signature."""
    query = urllib.parse.urlsplit(url).query
    return text.replace(query, "<query hidden>") if query else text


def _public_url(url: str) -> str:
    """``url`` as it may be shown and recorded: no credentials, no query string (it may carry a signature)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class HttpsConnector(Connector):
    """Downloads ``url`` (formatted with the file name and D) over verified TLS, resuming a cut transfer.

    A resumed request carries ``If-Range`` with the validator (strong ETag or
    Last-Modified) of this landing's earlier response, so a file replaced on
    the server between attempts is sent whole (200) instead of being spliced
    onto the old bytes.
    """

    OPTIONS = frozenset({"url", "ca_file", "token_env", "token_file", "username", "password_env",
                         "password_file"})
    RESUMABLE = True

    def __init__(self, channel):
        super().__init__(channel)
        where = {"channel": channel.name, "file": channel.conf_file}
        self.url_pattern = self.option("url", required=True)
        if not isinstance(self.url_pattern, str) or not self.url_pattern.lower().startswith("https://"):
            raise ConfigError(f"[download] url must start with https://, got {self.url_pattern!r}", **where,
                              hint="statements travel only over verified TLS")
        if "@" in urllib.parse.urlsplit(self.url_pattern).netloc:
            raise ConfigError("[download] url must not contain credentials", **where,
                              hint="use token_env/token_file, or username with password_env/password_file")
        ca_file = self.option("ca_file")
        # A private CA replaces the system store; without it the default (verified) trust applies.
        self.verify: str | bool = str(ca_file) if ca_file else True
        # Secrets are resolved now so a missing one is a configuration error before any connection.
        self.auth = self._auth()
        # name -> (validator for If-Range, total size) seen earlier in this landing
        self._seen: dict[str, tuple[str | None, int | None]] = {}

    def _auth(self):
        token = self.secret("token", required=False)
        username = self.option("username")
        if token is not None and username is not None:
            raise ConfigError("[download] give either a token or a username/password, not both",
                              channel=self.channel.name, file=self.channel.conf_file)
        if token is not None:
            return _BearerAuth(token)
        if username is not None:
            return requests.auth.HTTPBasicAuth(str(username), self.secret("password"))
        return None

    def url_for(self, name: str, day: dt.date) -> str:
        """The URL of statement file ``name`` for ``day``."""
        try:
            return self.url_pattern.format(name=urllib.parse.quote(name, safe=""), date=day)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"bad url pattern {self.url_pattern!r}: {exc}", channel=self.channel.name,
                              file=self.channel.conf_file, hint="use {name} and/or {date:%Y%m%d}") from exc

    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        """Stream ``name`` into ``part``, continuing from ``part.offset`` when the server allows it."""
        url = self.url_for(name, day)
        source = _public_url(url)
        where = self.where(day, name)
        validator, _ = self._seen.get(name, (None, None))
        if part.offset and validator is None:
            # A Range without If-Range could splice two versions of a file; without a validator start over.
            part.restart()
        offset = part.offset
        # identity: byte ranges must count the bytes we store; close: the end of the body is the end of the
        # connection, so bytes past an understated Content-Length show (httpclient.surplus_after_body).
        headers = {"Accept-Encoding": "identity", "Connection": "close"}
        if offset:
            headers.update({"Range": f"bytes={offset}-", "If-Range": validator})
            log.info("resuming %s at byte %d", source, offset)
        try:
            # Every socket of the attempt is cut at its wall-clock limit: a trickle in the headers or the body
            # ends there, whatever the per-read timeout.
            with httpclient.bounded_session(attempt) as session:
                try:
                    with httpclient.get(session, url, check_location=lambda target: self._check_redirect(
                                            target, source, where),
                                        headers=headers, auth=self.auth, verify=self.verify,
                                        timeout=httpclient.request_timeout(attempt), stream=True) as resp:
                        total = self._accept(resp, name, source, offset, part, where)
                        part.expect(total)
                        with httpclient.held_socket(resp) as sock:
                            for chunk in resp.iter_content(CHUNK):
                                part.write(chunk)
                                attempt.check()
                            if session.attempt_expired():
                                raise attempt.timeout_error(f"receiving {source}").named(**where)
                            self._check_length(resp, sock, part, total, source, where)
                except (requests.exceptions.RequestException, *_TRANSIENT) as exc:
                    if session.attempt_expired():
                        raise attempt.timeout_error(f"talking to {source}").named(**where) from exc
                    raise
        except requests.exceptions.SSLError as exc:
            cert = _certificate_failure(exc)
            if cert is not None:
                raise FatalError(f"the TLS certificate of {source} is not trusted: "
                                 f"{cert.verify_message or _scrub(str(cert), url)}", **where,
                                 hint="configure [download] ca_file with the channel's CA certificate; if it "
                                      "is already there, the server is not the channel's: report it") from exc
            raise RetriableError(f"TLS error from {source}: {_scrub(str(exc), url)}", **where) from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise ConfigError(f"bad [download] url: {_scrub(str(exc), url)}", channel=self.channel.name,
                              file=self.channel.conf_file) from exc
        except requests.exceptions.TooManyRedirects as exc:
            raise FatalError(f"{source} redirects in a loop", **where) from exc
        except _TRANSIENT as exc:
            raise RetriableError(f"transfer of {source} failed: {type(exc).__name__}: "
                                 f"{_scrub(str(exc), url)}", **where) from exc
        return FetchInfo(source=source, expected_size=total)

    @staticmethod
    def _check_redirect(target: str, source: str, where: dict) -> None:
        """Refuse a redirect to anything but https before it is requested (not after one plain request)."""
        if not target.lower().startswith("https://"):
            raise FatalError(f"{source} redirected to a non-HTTPS address ({_public_url(target)}); it was not "
                             f"followed", **where, hint="statements travel only over verified TLS; ask the channel")

    @staticmethod
    def _check_length(resp: requests.Response, sock, part: PartFile, total: int | None, source: str,
                      where: dict) -> None:
        """A body that disagrees with its Content-Length fails the attempt (retriable, from byte 0).

        Fewer bytes are caught by the landing's size check (and resumed); more bytes than announced are
        visible only as data after the body, which an honest server never sends on a closing connection.
        """
        if total is None or part.offset != total:
            return
        if httpclient.surplus_after_body(sock):
            part.restart()
            raise RetriableError(f"{source} sent more bytes than its Content-Length of "
                                 f"{resp.headers.get('Content-Length')} announced; the file received is not the "
                                 f"whole statement", **where,
                                 hint="the server misreports the file's length; it is retried, and if it persists "
                                      "ask the channel")

    def _accept(self, resp: requests.Response, name: str, source: str, offset: int, part: PartFile,
                where: dict) -> int | None:
        """Check the response status and headers; returns the file's total size (None if not announced)."""
        status = resp.status_code
        if status == 200:
            if offset:
                log.warning("%s: the server sent the whole file instead of resuming at byte %d; starting over",
                            source, offset)
                part.restart()
            if resp.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                # Compressed despite Accept-Encoding: identity. requests stores the decoded bytes, whose size
                # is unknown and which byte ranges would not count: no size check, no resume.
                self._seen[name] = (None, None)
                return None
            total = _int_header(resp, "Content-Length")
            self._seen[name] = (_validator(resp), total)
            return total
        if status == 206:
            match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            _, known_total = self._seen.get(name, (None, None))
            if (not match or int(match.group(1)) != offset or match.group(3) == "*"
                    or int(match.group(2)) != int(match.group(3)) - 1
                    or (known_total is not None and int(match.group(3)) != known_total)):
                part.restart()
                raise RetriableError(f"{source} answered a resume from byte {offset} with Content-Range "
                                     f"{resp.headers.get('Content-Range')!r}; starting over", **where)
            return int(match.group(3))
        if status == 416:  # our Range no longer fits the file: it changed or shrank
            part.restart()
            raise RetriableError(f"{source} cannot resume from byte {offset} (416); starting over", **where)
        detail = f"HTTP {status} {resp.reason or ''}".strip() + _body_excerpt(resp)
        if status == 404:
            raise NotPublishedYet(f"{source} is not published yet ({detail})", **where,
                                  hint="wait for the channel to publish it")
        if status in (408, 429) or 500 <= status <= 599:
            raise RetriableError(f"{source}: {detail}", **where)
        if status in (401, 403):
            raise FatalError(f"{source} refused our credentials ({detail})", **where,
                             hint="check the token or username/password the channel gave us, and that it "
                                  "may read this file")
        raise FatalError(f"{source}: unexpected {detail}", **where)


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; requests drops it when a redirect leaves the host."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:  # never show the token in a traceback or log
        return "_BearerAuth(<hidden>)"


def _int_header(resp: requests.Response, header: str) -> int | None:
    value = resp.headers.get(header)
    return int(value) if value is not None and value.strip().isdigit() else None


def _validator(resp: requests.Response) -> str | None:
    """What If-Range may carry: a strong ETag (a weak one is not allowed there), else Last-Modified."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified")


def _body_excerpt(resp: requests.Response) -> str:
    """The start of an error body (servers explain themselves there), bounded so a huge body costs nothing."""
    try:
        data = next(resp.iter_content(300), b"")
    except Exception:  # noqa: BLE001 - only decoration for a message about a failure already known
        return ""
    text = " ".join(data.decode("utf-8", "replace").split())
    return f": {text}" if text else ""


CONNECTOR = HttpsConnector
