"""Alipay ``alipay.data.dataservice.bill.downloadurl.query``: ask for D's bill link (RSA2-signed), then fetch the zip.

1. ``POST {base_url}/gateway.do`` (form, UTF-8) with app_id, method,
   charset, sign_type RSA2, timestamp (``yyyy-MM-dd HH:mm:ss``, Beijing
   time), version 1.0, biz_content ``{"bill_type":"trade","bill_date":
   "yyyy-MM-dd"}`` and sign = base64(SHA256withRSA(sorted ``k=v&…`` of every
   non-empty parameter but sign)).
2. The JSON reply's ``alipay_data_dataservice_bill_downloadurl_query_response``
   has code "10000" and ``bill_download_url`` (valid about 30 s); a plain GET
   of it returns the zip, which is landed as is.

Failures keep HTTP 200 and say so in the reply: code 40004 with sub_code
``isp.bill_not_exist`` (not generated yet, or no trades), 40002
``isv.invalid-signature`` (our key does not match the app's public key),
20000 ``isp.unknow-error`` (service unavailable, retriable).

Alipay publishes no hash of the file; the zip's own CRCs are checked after the
download instead, and the reply's ``sign`` is verified when
``alipay_public_key_file`` is configured (recommended).

Options: ``app_id``, ``private_key_file`` (mode 0600) or ``private_key_env``
(PEM or the bare base64 Alipay's console shows), ``alipay_public_key_file``,
``bill_type`` (trade, default, or signcustomer), ``allow_http_download``
(default false: Alipay has handed out ``http://`` links; set true to accept
them knowingly), ``base_url``, ``ca_file``; ``filename`` optionally overrides
the landed name ``alipay_{bill_type}_{yyyymmdd}.zip``.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
import zlib
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests

from connectors import httpclient
from connectors.base import Attempt, FetchInfo, PartFile, safe_name
from connectors.signing import CHUNK, SignedApiConnector, rsa_sign, rsa_verify, sorted_params, strip_query
from core.errors import ConfigError, FatalError, NotPublishedYet, RetriableError

METHOD = "alipay.data.dataservice.bill.downloadurl.query"
RESPONSE_KEY = METHOD.replace(".", "_") + "_response"
BILL_TYPES = ("trade", "signcustomer")
BEIJING = ZoneInfo("Asia/Shanghai")  # the gateway checks timestamp against Beijing time
NOT_YET = {"isp.bill_not_exist", "isv.bill_not_exist", "bill_not_exist"}
TRANSIENT_CODES = {"20000"}  # Service Currently Unavailable
TRANSIENT_SUB_CODES = {"isp.unknow-error", "aop.unknow-error", "app-call-limited", "method-call-limited",
                       "isp.system_error", "aop.acq.system_error"}
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def raw_response_node(text: str, key: str) -> str | None:
    """The exact text of the ``key`` object in a gateway reply: the bytes Alipay signed."""
    idx = text.find(f'"{key}"')
    if idx < 0:
        return None
    colon = text.find(":", idx + len(key) + 2)
    start = colon + 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return text[start:end]


class AlipayBillConnector(SignedApiConnector):
    """Downloads D's bill zip through Alipay's open API gateway."""

    DEFAULT_BASE_URL = "https://openapi.alipay.com"
    OPTIONS = SignedApiConnector.OPTIONS | {"app_id", "private_key_file", "private_key_env",
                                            "alipay_public_key_file", "bill_type", "allow_http_download"}

    def __init__(self, channel):
        super().__init__(channel)
        where = dict(channel=channel.name, file=channel.conf_file)
        self.app_id = self.text_option("app_id")
        self.bill_type = self.text_option("bill_type", required=False, default="trade")
        if self.bill_type not in BILL_TYPES:
            raise ConfigError(f"[download] bill_type must be one of {', '.join(BILL_TYPES)}, got "
                              f"{self.bill_type!r}", **where)
        allow_http = self.option("allow_http_download", False)
        if not isinstance(allow_http, bool):
            raise ConfigError(f"[download] allow_http_download must be true or false, got {allow_http!r}", **where)
        self.allow_http = allow_http
        # Loaded now so a missing, unreadable or world-readable key is a configuration error (exit 2).
        self._key = self.private_key()
        self._alipay_key = self.public_key("alipay_public_key_file")

    def statement_names(self, day: dt.date) -> list[str]:
        """One zip a day; a fixed name unless ``filename`` is configured."""
        if self.options.get("filename"):
            return super().statement_names(day)
        return [safe_name(f"alipay_{self.bill_type}_{day:%Y%m%d}.zip", channel=self.channel.name)]

    def request_params(self, day: dt.date) -> dict[str, str]:
        """The signed form parameters asking for D's bill link."""
        params = {
            "app_id": self.app_id, "method": METHOD, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
            "timestamp": dt.datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), "version": "1.0",
            "biz_content": json.dumps({"bill_type": self.bill_type, "bill_date": day.isoformat()},
                                      separators=(",", ":")),
        }
        params["sign"] = rsa_sign(self._key, sorted_params(params).encode("utf-8"))
        return params

    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        gateway = f"{self.base_url}/gateway.do"
        with httpclient.bounded_session(attempt) as session:
            what = "Alipay bill.downloadurl.query"
            with self.http_errors(day, name, what, session=session, attempt=attempt), session.post(
                    gateway, data=self.request_params(day), timeout=self.timeout(attempt), stream=True,
                    verify=self.verify, allow_redirects=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
                             "User-Agent": "recon-pipeline"}) as resp:
                if resp.status_code != 200:
                    raise self.http_status_error(resp.status_code, what, resp.reason or "", day, name)
                body = self.read_small(resp, attempt)
            url = self.bill_url(body, what, day, name)

            what = "Alipay bill download"
            with self.http_errors(day, name, what, session=session, attempt=attempt), httpclient.get(
                    session, url, check_location=lambda target: self.check_redirect(target, what, day, name),
                    timeout=self.timeout(attempt), stream=True, verify=self.verify,
                    headers={"User-Agent": "recon-pipeline", "Accept-Encoding": "identity"}) as resp:
                if resp.status_code != 200:
                    # The link lives ~30 s and is single-use: a rejected link is replaced by the next attempt.
                    if resp.status_code in (403, 404, 410):
                        raise RetriableError(f"{what}: HTTP {resp.status_code} (link expired?)",
                                             **self.where(day, name))
                    raise self.http_status_error(resp.status_code, what, resp.reason or "", day, name)
                size = self.expected_size(resp)
                part.expect(size)
                for chunk in resp.iter_content(CHUNK):
                    part.write(chunk)
                    attempt.check()
                self.check_expired(session, attempt, what, day, name)
        self.check_zip(part, day, name)
        return FetchInfo(source=strip_query(url), expected_size=size)

    def check_redirect(self, target: str, what: str, day: dt.date, name: str) -> None:
        """A redirect of the download link is followed only to https (or http when allowed), and refused
        before any request goes there."""
        scheme = urlsplit(target).scheme
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise FatalError(f"{what}: redirected to a plain-http URL ({strip_query(target)}); not followed",
                             **self.where(day, name),
                             hint="the zip carries no signature or hash; set allow_http_download = true to accept "
                                  "plain-http links knowingly")

    def bill_url(self, body: bytes, what: str, day: dt.date, name: str) -> str:
        """The download link from the gateway's reply, after checking its code and (if configured) its sign."""
        where = self.where(day, name)
        try:
            text = body.decode("utf-8")
            reply = json.loads(text)
            node = reply.get(RESPONSE_KEY) or reply.get("error_response")
            code = str(node["code"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RetriableError(f"{what}: the reply is not the documented JSON ({type(exc).__name__})",
                                 **where) from exc
        sub_code, msg, sub_msg = (str(node.get(k, "")) for k in ("sub_code", "msg", "sub_msg"))
        described = f"{what}: code {code} {msg}" + (f", sub_code {sub_code} {sub_msg}" if sub_code else "")
        if code != "10000":
            if sub_code.lower() in NOT_YET:
                raise NotPublishedYet(described, **where, hint="Alipay publishes D's bill in the morning of D+1 "
                                                               "(none at all if there were no trades that day)")
            if code in TRANSIENT_CODES or sub_code.lower() in TRANSIENT_SUB_CODES:
                raise RetriableError(described, **where)
            hint = ("the app's public key registered with Alipay does not match private_key_file"
                    if "signature" in sub_code else "check app_id, the app's rights and bill_type")
            raise FatalError(described, **where, hint=hint)
        if self._alipay_key is not None:
            signed = raw_response_node(text, RESPONSE_KEY)
            signature = reply.get("sign")
            if not signed or not signature or not rsa_verify(self._alipay_key, signed.encode("utf-8"),
                                                             str(signature)):
                raise FatalError(f"{what}: the reply's sign does not verify with alipay_public_key_file", **where,
                                 hint="check that alipay_public_key_file is Alipay's public key (not the app's); "
                                      "otherwise something between us and Alipay altered the reply")
        url = str(node.get("bill_download_url") or "")
        scheme = urlsplit(url).scheme
        if scheme not in ("https", "http") or not urlsplit(url).netloc:
            raise RetriableError(f"{what}: the reply has no usable bill_download_url", **where)
        if scheme == "http" and not self.allow_http:
            raise FatalError(f"{what}: Alipay returned a plain-http download link ({strip_query(url)})", **where,
                             hint="the zip carries no signature or hash; set allow_http_download = true to "
                                  "accept such links knowingly")
        return url

    def check_zip(self, part: PartFile, day: dt.date, name: str) -> None:
        """Alipay gives no hash: at least the zip must be whole and its CRCs right."""
        where = self.where(day, name)
        part.offset  # flushes what was written, so the file can be read back
        try:
            with open(part.path, "rb") as fh:  # the local part file
                if fh.read(4) not in ZIP_MAGIC:
                    raise RetriableError("Alipay bill download: the file is not a zip (an error page?)", **where)
                fh.seek(0)
                with zipfile.ZipFile(fh) as zf:
                    bad = zf.testzip()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
            raise RetriableError(f"Alipay bill download: the zip is damaged ({type(exc).__name__})",
                                 **where) from exc
        if bad is not None:
            raise RetriableError(f"Alipay bill download: the zip entry {bad!r} fails its CRC check", **where)


CONNECTOR = AlipayBillConnector
