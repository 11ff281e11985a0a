"""Signing and HTTPS plumbing shared by the connectors of the channels' signed bill APIs.

WeChat Pay V2 signs with a shared API key (MD5 or HMAC-SHA256 over the
sorted parameters), WeChat Pay V3 and Alipay with the merchant's RSA key
(SHA256withRSA). ``SignedApiConnector`` holds what the three connectors
share: the ``base_url``/``ca_file`` options, key loading (keys by reference
only, never in conf), one place that turns ``requests`` errors into the
pipeline's retriable/fatal errors, and streaming a bill body into the part
file within the attempt's limits.

Nothing here logs a key, a secret or a signature.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import ssl
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors import httpclient
from connectors.base import Attempt, Connector, PartFile
from core.errors import ConfigError, FatalError, RetriableError

CHUNK = 1 << 16
# Error bodies and JSON replies are small; a larger one is not the protocol we speak.
SMALL_BODY_LIMIT = 1 << 20
USER_AGENT = "recon-pipeline/0.1 (python-requests)"


# -- signatures ------------------------------------------------------------------------------------------------
def nonce() -> str:
    """A fresh 32-character random string (the channels' nonce_str limit is 32)."""
    return secrets.token_hex(16)


def sorted_params(params: dict, *, exclude: tuple[str, ...] = ("sign",)) -> str:
    """``k=v&…`` over the non-empty parameters sorted by name, values raw (not URL-encoded).

    This is the string both WeChat Pay V2 and Alipay sign; empty values and
    the signature itself are left out, as both channels document.
    """
    return "&".join(f"{k}={params[k]}" for k in sorted(params)
                    if k not in exclude and params[k] is not None and str(params[k]) != "")


def wechat_v2_sign(params: dict, api_key: str, sign_type: str = "MD5") -> str:
    """The WeChat Pay V2 ``sign``: MD5 or HMAC-SHA256(key) of ``sorted&key=API_KEY``, upper-case hex."""
    text = f"{sorted_params(params)}&key={api_key}".encode("utf-8")
    if sign_type == "MD5":
        return hashlib.md5(text).hexdigest().upper()  # noqa: S324 - the channel's documented algorithm
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode("utf-8"), text, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unknown WeChat Pay V2 sign_type {sign_type!r}")


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """base64(SHA256withRSA(message)), PKCS#1 v1.5 as both WeChat Pay V3 and Alipay RSA2 specify."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is a valid SHA256withRSA signature of ``message`` by ``key``."""
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, binascii.Error, ValueError):
        return False


def _pem(text: str, label: str) -> bytes:
    """PEM bytes; Alipay's console hands out keys as bare base64, so wrap those."""
    text = text.strip()
    if "-----BEGIN" in text:
        return text.encode("ascii")
    body = "".join(text.split())
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode("ascii")


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1) or bare base64 PKCS#8/PKCS#1; ValueError otherwise."""
    last: Exception | None = None
    for label in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        try:
            key = serialization.load_pem_private_key(_pem(text, label), password=None)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            last = exc
            continue
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the key is not an RSA key")
        return key
    raise ValueError(f"not an unencrypted RSA private key ({type(last).__name__})")


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM public key, a PEM certificate or bare base64 (SubjectPublicKeyInfo)."""
    try:
        if "BEGIN CERTIFICATE" in text:
            key = x509.load_pem_x509_certificate(text.strip().encode("ascii")).public_key()
        else:
            key = serialization.load_pem_public_key(_pem(text, "PUBLIC KEY"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"not an RSA public key or certificate ({type(exc).__name__})") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the key is not an RSA key")
    return key


def _is_certificate_error(exc: BaseException) -> bool:
    """Whether a TLS failure is about trust (fatal) rather than a broken handshake (retriable)."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return True
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if x is not None)
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "doesn't match" in text


def strip_query(url: str) -> str:
    """A URL without query or fragment: download links carry one-time tokens we keep out of manifests."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# -- the shared connector base ---------------------------------------------------------------------------------
class SignedApiConnector(Connector):
    """Base of the connectors that call a channel's signed HTTPS bill API.

    Options: ``base_url`` (default the channel's real host; must be https),
    ``ca_file`` (a PEM bundle to trust instead of the system's; TLS is always
    verified). Subclasses set ``DEFAULT_BASE_URL`` and extend ``OPTIONS``.
    """

    DEFAULT_BASE_URL = ""
    OPTIONS = frozenset({"base_url", "ca_file"})

    def __init__(self, channel):
        super().__init__(channel)
        where = dict(channel=channel.name, file=channel.conf_file)
        self.base_url = str(self.option("base_url", self.DEFAULT_BASE_URL)).rstrip("/")
        parts = urlsplit(self.base_url)
        # Bills and signed requests never travel in clear text.
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"[download] base_url must be an https:// URL, got {self.base_url!r}", **where)
        ca_file = self.option("ca_file")
        if ca_file is not None and not os.path.isfile(str(ca_file)):
            raise ConfigError(f"[download] ca_file {ca_file} does not exist", **where)
        # requests' verify: a CA bundle path, or True for the system store. Never False.
        self.verify: str | bool = str(ca_file) if ca_file is not None else True

    # -- configuration helpers -------------------------------------------------------------------------------
    def text_option(self, key: str, *, required: bool = True, default: str | None = None) -> str | None:
        """A string option; TOML may give ids such as mch_id as integers."""
        value = self.option(key, default, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise ConfigError(f"[download] {key} must be a non-empty string, got {value!r}",
                              channel=self.channel.name, file=self.channel.conf_file)
        return str(value).strip()

    def private_key(self, key: str = "private_key") -> rsa.RSAPrivateKey:
        """The merchant's RSA private key from ``<key>_file`` (mode 0600) or ``<key>_env`` (PEM text)."""
        text = self.secret(key)
        try:
            return load_private_key(text)
        except ValueError as exc:
            raise ConfigError(f"[download] {key}: {exc}", channel=self.channel.name,
                              file=self.channel.conf_file) from None

    def public_key(self, key: str) -> rsa.RSAPublicKey | None:
        """A channel's RSA public key (or certificate) from the file named by option ``key``, if configured."""
        path = self.option(key)
        if path is None:
            return None
        where = dict(channel=self.channel.name, file=self.channel.conf_file)
        try:
            with open(path, encoding="ascii") as fh:  # a local key file, never on HDFS
                return load_public_key(fh.read())
        except OSError as exc:
            raise ConfigError(f"[download] {key}: cannot read {path}: {exc.strerror}", **where) from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[download] {key}: {path}: {exc}", **where) from None

    # -- HTTP helpers ----------------------------------------------------------------------------------------
    @staticmethod
    def timeout(attempt: Attempt) -> tuple[float, float]:
        return httpclient.request_timeout(attempt)

    def check_expired(self, session, attempt: Attempt, what: str, day: dt.date, name: str) -> None:
        """Raise the attempt's timeout if its wall clock cut the connection (a body may then look complete)."""
        if session is not None and session.attempt_expired():
            raise attempt.timeout_error(f"during {what}").named(**self.where(day, name))

    @contextlib.contextmanager
    def http_errors(self, day: dt.date, name: str, what: str, *, session=None, attempt: Attempt | None = None):
        """Turn ``requests`` failures during ``what`` into RetriableError / FatalError (a connection the
        attempt's wall clock cut, in a ``httpclient.bounded_session``, into the attempt's timeout)."""
        where = self.where(day, name)
        try:
            try:
                yield
            except (requests.exceptions.RequestException, OSError) as exc:
                if attempt is not None:
                    self.check_expired(session, attempt, what, day, name)
                raise
        except requests.exceptions.SSLError as exc:
            if _is_certificate_error(exc):
                raise FatalError(f"{what}: the server's TLS certificate is not trusted", **where,
                                 hint="check base_url and ca_file; the certificate must chain to a trusted CA "
                                      "and name the host") from exc
            raise RetriableError(f"{what}: TLS handshake failed ({type(exc).__name__})", **where) from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.TooManyRedirects) as exc:
            raise FatalError(f"{what}: {type(exc).__name__}: {exc}", **where) from exc
        except requests.exceptions.Timeout as exc:
            raise RetriableError(f"{what}: timed out ({type(exc).__name__})", **where) from exc
        except requests.exceptions.RequestException as exc:
            # connection refused/reset, a body cut short, a bad chunk: another attempt may succeed
            raise RetriableError(f"{what}: {type(exc).__name__}", **where) from exc

    @staticmethod
    def read_small(resp: requests.Response, attempt: Attempt, *, first: bytes = b"", chunks=None,
                   limit: int = SMALL_BODY_LIMIT) -> bytes:
        """A whole (small) reply body, refusing one larger than ``limit``.

        ``first`` and ``chunks`` continue a body whose start was already read from ``chunks``.
        """
        body = bytearray(first)
        for chunk in chunks if chunks is not None else resp.iter_content(CHUNK):
            body += chunk
            attempt.check()
            if len(body) > limit:
                raise FatalError(f"the reply is larger than {limit} bytes; this is not the documented protocol")
        return bytes(body)

    @staticmethod
    def expected_size(resp: requests.Response) -> int | None:
        """Content-Length, when it counts the bytes we write (no content coding applied)."""
        if resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
            return None
        value = resp.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @staticmethod
    def stream_body(resp: requests.Response, part: PartFile, attempt: Attempt, *, first: bytes = b"") -> None:
        """Write the reply body (after the already-read ``first`` bytes) into ``part``, checking the clock."""
        if first:
            part.write(first)
        for chunk in resp.iter_content(CHUNK):
            part.write(chunk)
            attempt.check()

    def http_status_error(self, status: int, what: str, detail: str, day: dt.date, name: str) -> Exception:
        """The generic classification: 429 and 5xx are worth another attempt, other statuses are not."""
        where = self.where(day, name)
        if status == 429 or status >= 500:
            return RetriableError(f"{what}: HTTP {status} {detail}".rstrip(), **where)
        return FatalError(f"{what}: HTTP {status} {detail}".rstrip(), **where)
