"""WeChat Pay V2 ``downloadbill``: the day's trade bill over the XML API signed with the API key.

One POST to ``{base_url}/pay/downloadbill`` with appid, mch_id, nonce_str,
sign_type, bill_date (yyyyMMdd), bill_type and sign. The reply is the bill
text itself on success; on failure it is a small XML document (its first byte
is ``<``) with return_code FAIL and a return_msg such as "No Bill Exist"
(error_code 20002: not generated yet). The bill is requested uncompressed
(no tar_type) so the landed bytes are exactly what the normalizer reads.

Options: ``appid``, ``mch_id``, ``api_key_env`` or ``api_key_file``,
``sign_type`` (MD5, default, or HMAC-SHA256), ``bill_type`` (ALL, default;
SUCCESS, REFUND, RECHARGE_REFUND), ``base_url``, ``ca_file``; ``filename``
optionally overrides the landed name ``wechatpay_{bill_type}_{yyyymmdd}.csv``.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import requests

from connectors import httpclient
from connectors.base import Attempt, FetchInfo, PartFile, safe_name
from connectors.signing import CHUNK, SignedApiConnector, nonce, wechat_v2_sign
from core.errors import ConfigError, FatalError, NotPublishedYet, RetriableError

BILL_TYPES = ("ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND")
SIGN_TYPES = ("MD5", "HMAC-SHA256")
# return_msg values meaning "not there (yet)": the bill appears the next morning.
NOT_YET = {"no bill exist", "bill creating"}
NOT_YET_CODES = {"20002"}
# Failures on WeChat's side that go away by themselves.
TRANSIENT = {"system error", "systemerror", "compressgzip error", "uncompressgzip error"}


def parse_error_xml(body: bytes) -> dict[str, str]:
    """The fields of a V2 error reply (``<xml><return_code>…</xml>``); empty if it is not one.

    The body comes from the network: a DOCTYPE (entity tricks) is refused
    outright, and the reply is size-limited before it gets here.
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        return {}
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return {}
    return {child.tag: (child.text or "").strip() for child in root}


class WeChatPayV2Connector(SignedApiConnector):
    """Downloads D's bill from WeChat Pay's V2 ``/pay/downloadbill`` API."""

    DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
    OPTIONS = SignedApiConnector.OPTIONS | {"appid", "mch_id", "api_key_env", "api_key_file", "sign_type",
                                            "bill_type"}

    def __init__(self, channel):
        super().__init__(channel)
        where = dict(channel=channel.name, file=channel.conf_file)
        self.appid = self.text_option("appid")
        self.mch_id = self.text_option("mch_id")
        self.sign_type = self.text_option("sign_type", required=False, default="MD5").upper()
        if self.sign_type not in SIGN_TYPES:
            raise ConfigError(f"[download] sign_type must be one of {', '.join(SIGN_TYPES)}, "
                              f"got {self.sign_type!r}", **where)
        self.bill_type = self.text_option("bill_type", required=False, default="ALL").upper()
        if self.bill_type not in BILL_TYPES:
            raise ConfigError(f"[download] bill_type must be one of {', '.join(BILL_TYPES)}, "
                              f"got {self.bill_type!r}", **where)
        # Resolved now so a missing or world-readable key is a configuration error before any request.
        self._api_key = self.secret("api_key")

    def statement_names(self, day: dt.date) -> list[str]:
        """One bill a day; a fixed name unless ``filename`` is configured."""
        if self.options.get("filename"):
            return super().statement_names(day)
        return [safe_name(f"wechatpay_{self.bill_type.lower()}_{day:%Y%m%d}.csv", channel=self.channel.name)]

    def request_body(self, day: dt.date) -> bytes:
        """The signed XML request for D's bill."""
        params = {"appid": self.appid, "mch_id": self.mch_id, "nonce_str": nonce(), "sign_type": self.sign_type,
                  "bill_date": f"{day:%Y%m%d}", "bill_type": self.bill_type}
        params["sign"] = wechat_v2_sign(params, self._api_key, self.sign_type)
        fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in params.items())
        return f"<xml>{fields}</xml>".encode("utf-8")

    def fetch(self, name: str, day: dt.date, part: PartFile, attempt: Attempt) -> FetchInfo:
        url = f"{self.base_url}/pay/downloadbill"
        what = "WeChat Pay downloadbill"
        with httpclient.bounded_session(attempt) as session, self.http_errors(day, name, what, session=session, attempt=attempt):
            with session.post(url, data=self.request_body(day), timeout=self.timeout(attempt), stream=True,
                              verify=self.verify, allow_redirects=False,
                              headers={"Content-Type": "text/xml; charset=utf-8", "User-Agent": "recon-pipeline",
                                       # identity: the bytes landed are the bytes counted by Content-Length
                                       "Accept-Encoding": "identity"}) as resp:
                if resp.status_code != 200:
                    raise self.http_status_error(resp.status_code, what, resp.reason or "", day, name)
                # The protocol tells a failure from a bill by its first byte; peek without landing it.
                first = b""
                chunks = resp.iter_content(CHUNK)
                for chunk in chunks:
                    first += chunk
                    if first.lstrip():
                        break
                if first.lstrip().startswith(b"<"):
                    body = self.read_small(resp, attempt, first=first, chunks=chunks, limit=64 * 1024)
                    raise self.failure(parse_error_xml(body), day, name)
                if not first:
                    raise RetriableError(f"{what}: the reply is empty", **self.where(day, name))
                part.expect(self.expected_size(resp))
                part.write(first)
                for chunk in chunks:
                    part.write(chunk)
                    attempt.check()
                self.check_expired(session, attempt, what, day, name)
                return FetchInfo(source=url, expected_size=self.expected_size(resp))

    def failure(self, fields: dict[str, str], day: dt.date, name: str) -> Exception:
        """Classify a V2 error reply: not generated yet, transient, or fatal (signature, parameters, rights)."""
        where = self.where(day, name)
        msg, code = fields.get("return_msg", ""), fields.get("error_code", "")
        text = f"WeChat Pay downloadbill failed: {msg or 'no return_msg'}" + (f" (error_code {code})" if code else "")
        if not fields:
            return RetriableError("WeChat Pay downloadbill: the reply starts with '<' but is not the documented "
                                  "error XML", **where)
        if msg.lower() in NOT_YET or code in NOT_YET_CODES:
            return NotPublishedYet(text, **where, hint="WeChat Pay publishes the bill in the morning of D+1 "
                                                       "(no bill at all if there were no trades that day)")
        if msg.lower() in TRANSIENT:
            return RetriableError(text, **where)
        return FatalError(text, **where, hint="check appid, mch_id, the API key and sign_type; a signature "
                                              "error means the API key does not match the merchant's")


CONNECTOR = WeChatPayV2Connector
