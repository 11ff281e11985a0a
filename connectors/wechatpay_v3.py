"""WeChat Pay V3 ``tradebill``: apply for D's bill, then download it, both signed with the merchant's RSA key.

1. ``GET {base_url}/v3/bill/tradebill?bill_date=yyyy-MM-dd&bill_type=ALL``
   with ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
   signature="…",timestamp="…",serial_no="…"``, where signature is
   base64(SHA256withRSA("GET\\n<path?query>\\n<timestamp>\\n<nonce>\\n\\n")).
   The JSON reply gives hash_type "SHA1", hash_value and download_url.
2. A GET of download_url signed the same way (its path and query are what is
   signed) streams the bill. No tar_type is requested, so hash_value is the
   SHA-1 of exactly the bytes landed; landing checks it (``expected_sha1``).

Errors are JSON ``{"code": …, "message": …}``: 400 NO_STATEMENT_EXIST or
STATEMENT_CREATING (not generated yet), 401 SIGN_ERROR, 403 NO_AUTH,
429 FREQUENCY_LIMITED, 500 SYSTEM_ERROR.

Options: ``mch_id``, ``serial_no`` (of the merchant API certificate),
``private_key_file`` (mode 0600) or ``private_key_env``, ``bill_type`` (ALL,
default; SUCCESS, REFUND), ``wechatpay_public_key_file`` (optional: the
WeChat Pay public key or platform certificate; when given, the signature of
the apply reply is checked), ``base_url``, ``ca_file``; ``filename``
optionally overrides the landed name ``wechatpay_{bill_type}_{yyyymmdd}.csv``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from urllib.parse import urlencode, urlsplit

import requests

from connectors import httpclient
from connectors.base import Attempt, FetchInfo, PartFile, safe_name
from connectors.signing import CHUNK, SignedApiConnector, nonce, rsa_sign, rsa_verify
from core.errors import ConfigError, FatalError, NotPublishedYet, RetriableError

BILL_TYPES = ("ALL", "SUCCESS", "REFUND")
SCHEME = "WECHATPAY2-SHA256-RSA2048"
NOT_YET = {"NO_STATEMENT_EXIST", "STATEMENT_CREATING"}
TRANSIENT = {"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED"}


def signed_path(url: str) -> str:
    """The part of a URL V3 signs: the absolute path plus ``?query`` when there is one."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def authorization(method: str, url: str, body: str, *, mch_id: str, serial_no: str, key) -> str:
    """The V3 ``Authorization`` header value for one request."""
    timestamp, nonce_str = str(int(time.time())), nonce()
    message = f"{method}\n{signed_path(url)}\n{timestamp}\n{nonce_str}\n{body}\n".encode("utf-8")
    signature = rsa_sign(key, message)
    return (f'{SCHEME} mchid="{mch_id}",nonce_str="{nonce_str}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


class WeChatPayV3Connector(SignedApiConnector):
    """Downloads D's trade bill from WeChat Pay's V3 API (apply, then signed download, SHA-1 checked)."""

    DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
    OPTIONS = SignedApiConnector.OPTIONS | {"mch_id", "serial_no", "private_key_file", "private_key_env",
                                            "bill_type", "wechatpay_public_key_file"}

    def __init__(self, channel):
        super().__init__(channel)
        self.mch_id = self.text_option("mch_id")
        self.serial_no = self.text_option("serial_no")
        self.bill_type = self.text_option("bill_type", required=False, default="ALL").upper()
        if self.bill_type not in BILL_TYPES:
            raise ConfigError(f"[download] bill_type must be one of {', '.join(BILL_TYPES)}, got "
                              f"{self.bill_type!r}", channel=channel.name, file=channel.conf_file)
        # Loaded now so a missing, unreadable or world-readable key is a configuration error (exit 2).
        self._key = self.private_key()
        self._wechatpay_key = self.public_key("wechatpay_public_key_file")

    def statement_names(self, day: dt.date) -> list[str]:
        """One bill a day; a fixed name unless ``filename`` is configured."""
        if self.options.get("filename"):
            return super().statement_names(day)
        return [safe_name(f"wechatpay_{self.bill_type.lower()}_{day:%Y%m%d}.csv", channel=self.channel.name)]

    def _get(self, session: requests.Session, url: str, attempt: Attempt, *, accept: str) -> requests.Response:
        auth = authorization("GET", url, "", mch_id=self.mch_id, serial_no=self.serial_no, key=self._key)
        # No redirects: a signature is valid for one URL only, and must not be handed to another host.
        return session.get(url, timeout=self.timeout(attempt), stream=True, verify=self.verify,
                           allow_redirects=False,
                           headers={"Authorization": auth, "Accept": accept, "User-Agent": "recon-pipeline",
                                    "Accept-Encoding": "identity"})

    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        where = self.where(day, name)
        apply_url = (f"{self.base_url}/v3/bill/tradebill?"
                     + urlencode({"bill_date": day.isoformat(), "bill_type": self.bill_type}))
        with httpclient.bounded_session(attempt) as session:
            what = "WeChat Pay V3 tradebill"
            with self.http_errors(day, name, what, session=session, attempt=attempt), self._get(session, apply_url, attempt,
                                                              accept="application/json") as resp:
                body = self.read_small(resp, attempt)
                if resp.status_code != 200:
                    raise self.failure(resp.status_code, body, what, day, name)
                self.verify_reply(resp, body, day, name)
            try:
                reply = json.loads(body)
                download_url, hash_type, hash_value = reply["download_url"], reply["hash_type"], reply["hash_value"]
            except (ValueError, KeyError, TypeError) as exc:
                raise RetriableError(f"{what}: the reply is not the documented JSON ({type(exc).__name__})",
                                     **where) from exc
            if str(hash_type).upper() != "SHA1":
                raise FatalError(f"{what}: unsupported hash_type {hash_type!r} (expected SHA1)", **where)
            self.check_download_url(download_url, day, name)

            what = "WeChat Pay V3 bill download"
            with self.http_errors(day, name, what, session=session, attempt=attempt), self._get(session, download_url, attempt,
                                                              accept="*/*") as resp:
                if resp.status_code != 200:
                    raise self.failure(resp.status_code, self.read_small(resp, attempt), what, day, name)
                size = self.expected_size(resp)
                part.expect(size)
                for chunk in resp.iter_content(CHUNK):
                    part.write(chunk)
                    attempt.check()
                self.check_expired(session, attempt, what, day, name)
        return FetchInfo(source=apply_url, expected_size=size, expected_sha1=str(hash_value).lower())

    def check_download_url(self, url: str, day: dt.date, name: str) -> None:
        """The signed download must go to the API host itself, over https."""
        parts, base = urlsplit(str(url)), urlsplit(self.base_url)
        if parts.scheme != "https" or parts.netloc.lower() != base.netloc.lower():
            raise FatalError(f"WeChat Pay V3 gave a download_url on another host or scheme ({parts.scheme}://"
                             f"{parts.netloc}); refusing to send a signed request there", **self.where(day, name))

    def verify_reply(self, resp: requests.Response, body: bytes, day: dt.date, name: str) -> None:
        """Check the apply reply's Wechatpay-Signature when a WeChat Pay public key is configured."""
        if self._wechatpay_key is None:
            return
        h = resp.headers
        timestamp, nonce_str, signature = (h.get("Wechatpay-Timestamp"), h.get("Wechatpay-Nonce"),
                                           h.get("Wechatpay-Signature"))
        message = f"{timestamp}\n{nonce_str}\n".encode("utf-8") + body + b"\n"
        if not (timestamp and nonce_str and signature) or not rsa_verify(self._wechatpay_key, message, signature):
            raise FatalError("WeChat Pay V3 tradebill: the reply's signature does not verify with "
                             "wechatpay_public_key_file", **self.where(day, name),
                             hint="check the configured WeChat Pay public key or platform certificate; "
                                  "otherwise something between us and WeChat Pay altered the reply")

    def failure(self, status: int, body: bytes, what: str, day: dt.date, name: str) -> Exception:
        """Classify a V3 error reply by its ``code`` (and the HTTP status when the body is not JSON)."""
        where = self.where(day, name)
        try:
            detail = json.loads(body)
            code, message = str(detail.get("code", "")), str(detail.get("message", ""))
        except (ValueError, AttributeError):
            code, message = "", ""
        text = f"{what}: HTTP {status} {code} {message}".rstrip()
        if code in NOT_YET:
            return NotPublishedYet(text, **where, hint="WeChat Pay publishes the bill in the morning of D+1 "
                                                       "(none at all if there were no trades that day)")
        if code in TRANSIENT or status == 429 or status >= 500:
            return RetriableError(text, **where)
        hint = ("check mch_id, serial_no and that private_key_file is the key of that API certificate"
                if status == 401 else None)
        return FatalError(text, **where, hint=hint)


CONNECTOR = WeChatPayV3Connector
