"""An Alipay open-API gateway stand-in on loopback HTTPS: ``/gateway.do`` for the bill link, then the zip.

It checks what the gateway checks: the common parameters (app_id known,
method, charset utf-8, sign_type RSA2, version 1.0, a ``yyyy-MM-dd
HH:mm:ss`` timestamp within 15 minutes of Beijing time), biz_content, and the
RSA2 ``sign`` verified with the app's public key over the sorted ``k=v&…`` of
every non-empty parameter but sign. It answers HTTP 200 with the real reply
shapes, each signed with an "Alipay" key over the response node's exact text:

- success: code 10000 and ``bill_download_url`` (single use);
- bad signature: code 40002 "Invalid Arguments", sub_code ``isv.invalid-signature``;
- not generated: code 40004 "Business Failed", sub_code ``isp.bill_not_exist``;
- fault "error": code 20000 "Service Currently Unavailable", sub_code ``isp.unknow-error``.

Faults: ``"missing"``, ``"error"``, ``"bad_zip"`` (serve a corrupted zip),
``"http_link"`` (hand out a plain-http link).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.connectors.servers.wechatpay import HttpsStandIn

METHOD = "alipay.data.dataservice.bill.downloadurl.query"
RESPONSE_KEY = METHOD.replace(".", "_") + "_response"


class AlipayStandIn(HttpsStandIn):
    """Serves published bill zips through the bill-download-url API, checking every signature."""

    def __init__(self, ca, *, app_id: str, app_public_key, alipay_private_key):
        super().__init__(ca)
        self.app_id, self.app_public_key, self.alipay_private_key = app_id, app_public_key, alipay_private_key
        self.bills: dict[tuple[str, str], bytes] = {}   # (yyyy-mm-dd, bill_type) -> zip bytes
        self.tokens: dict[str, bytes] = {}
        self.signature_failures = 0
        self.redirect_location = ""

    def publish(self, day: str, data: bytes, bill_type: str = "trade") -> None:
        self.bills[(day, bill_type)] = data

    def gateway_reply(self, handler, node: dict) -> None:
        """HTTP 200 with ``{"<method>_response": node, "sign": …}``, signed over node's exact text."""
        node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        sign = base64.b64encode(self.alipay_private_key.sign(node_text.encode(), padding.PKCS1v15(),
                                                             hashes.SHA256())).decode()
        body = f'{{"{RESPONSE_KEY}":{node_text},"sign":"{sign}"}}'.encode()
        self.reply(handler, 200, body, "text/html;charset=utf-8")  # the gateway really says text/html

    @staticmethod
    def error(code: str, msg: str, sub_code: str, sub_msg: str) -> dict:
        return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}

    def signature_ok(self, params: dict) -> bool:
        content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
        try:
            self.app_public_key.verify(base64.b64decode(params.get("sign", ""), validate=True), content.encode(),
                                       padding.PKCS1v15(), hashes.SHA256())
            return True
        except (ValueError, InvalidSignature):
            return False

    def handle_post(self, handler):
        if urlsplit(handler.path).path != "/gateway.do":
            return self.reply(handler, 404, b"", "text/plain")
        # Common parameters may come in the query string or the form; the gateway takes both.
        raw = urlsplit(handler.path).query + "&" + self.body(handler).decode("utf-8")
        params = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        reply = lambda node: self.gateway_reply(handler, node)  # noqa: E731
        missing = [k for k in ("app_id", "method", "charset", "sign_type", "sign", "timestamp", "version")
                   if not params.get(k)]
        if missing:
            sub_code = "isv.missing-" + missing[0].replace("_", "-")
            return reply(self.error("40001", "Missing Required Arguments", sub_code, f"缺少{missing[0]}参数"))
        if params["app_id"] != self.app_id:
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数"))
        if params["method"] != METHOD:
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名"))
        if params["charset"].lower() != "utf-8" or params["sign_type"] != "RSA2" or params["version"] != "1.0":
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-parameter", "参数无效"))
        try:
            sent = dt.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=ZoneInfo("Asia/Shanghai"))
        except ValueError:
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数"))
        if abs((dt.datetime.now(dt.timezone.utc) - sent).total_seconds()) > 900:
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数"))
        if not self.signature_ok(params):
            self.signature_failures += 1
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-signature",
                                    "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配"))
        try:
            biz = json.loads(params.get("biz_content", ""))
            day, bill_type = biz["bill_date"], biz["bill_type"]
            dt.date.fromisoformat(day)
        except (ValueError, KeyError, TypeError):
            return reply(self.error("40002", "Invalid Arguments", "isv.invalid-arguments", "参数不合法"))
        if self.take_fault("error"):
            return reply(self.error("20000", "Service Currently Unavailable", "isp.unknow-error", "系统繁忙"))
        data = self.bills.get((day, bill_type))
        if data is None or self.take_fault("missing"):
            return reply(self.error("40004", "Business Failed", "isp.bill_not_exist", "账单不存在"))
        token = secrets.token_urlsafe(24)
        self.tokens[token] = data
        scheme_host = self.base_url.replace("https://", "http://") if self.take_fault("http_link") else self.base_url
        url = (f"{scheme_host}/downloadBillFile.resource?bizType={bill_type}&userId=20880000000000000156"
               f"&fileType=csv.zip&bizDates={day.replace('-', '')}&token={token}")
        return reply({"code": "10000", "msg": "Success", "bill_download_url": url})

    def handle_get(self, handler):
        parts = urlsplit(handler.path)
        if parts.path != "/downloadBillFile.resource":
            return self.reply(handler, 404, b"", "text/plain")
        token = parse_qs(parts.query).get("token", [""])[0]
        data = self.tokens.pop(token, None)  # single use, like the real link
        if data is None:
            return self.reply(handler, 404, "链接已失效".encode(), "text/plain;charset=utf-8")
        if self.take_fault("redirect"):  # the link moved: 302 to redirect_location (e.g. a plain-http listener)
            return self.reply(handler, 302, b"", "text/plain", headers={"Location": self.redirect_location})
        if self.take_fault("bad_zip"):
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF   # one flipped byte inside an entry: its CRC no longer matches
            data = bytes(data)
        return self.reply(handler, 200, data, "application/oct-stream")
