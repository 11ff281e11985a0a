"""A WeChat Pay stand-in on loopback HTTPS: V2 ``/pay/downloadbill`` and V3 ``/v3/bill/tradebill`` + download.

It checks what the real API checks, with the documented algorithms:

- V2: appid and mch_id known, nonce_str present and at most 32 characters,
  bill_date yyyyMMdd, bill_type known, and ``sign`` recomputed from the
  other non-empty fields with the API key (MD5 or HMAC-SHA256 per
  sign_type). Failures answer HTTP 200 with the real error XML.
- V3: the ``Authorization`` scheme and fields, mchid and serial_no known,
  timestamp within 5 minutes, and the SHA256withRSA signature of
  ``GET\\n<path?query>\\n<timestamp>\\n<nonce>\\n\\n`` verified with the
  merchant's public key; the bill download is signed-checked the same way.
  Errors answer the real JSON ``{"code", "message"}`` with its status; the
  apply reply is signed with a "platform" key (Wechatpay-* headers).

Faults (``fault(kind, times=None)``; ``None`` = always): ``"missing"`` (bill
not generated yet), ``"error"`` (a system error), ``"wrong_hash"`` (V3: a
hash_value that is not the bill's).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.connectors.conftest import server_context


def _v2_sign(fields: dict, key: str, sign_type: str) -> str:
    """The documented V2 signature, written out here independently of the connector's code."""
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "sign" and fields[k] != "")
    text += f"&key={key}"
    if sign_type == "HMAC-SHA256":
        import hmac

        return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    return hashlib.md5(text.encode()).hexdigest().upper()


def _v2_fail(msg: str, code: str | None = None) -> bytes:
    code_xml = f"<error_code><![CDATA[{code}]]></error_code>" if code else ""
    return (f"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[{msg}]]></return_msg>"
            f"{code_xml}</xml>").encode()


_AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.*)$')
_FIELD = re.compile(r'(\w+)="([^"]*)"')


class HttpsStandIn:
    """A ThreadingHTTPServer with TLS from ``ca`` on 127.0.0.1, port 0, in a background thread."""

    def __init__(self, ca):
        self._lock = threading.Lock()
        self._faults: dict[str, int | None] = {}
        self.requests: list[tuple[str, str]] = []   # (method, path) of every request that got an answer
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                stand_in._record(self)
                stand_in.handle_get(self)

            def do_POST(self):
                stand_in._record(self)
                stand_in.handle_post(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = server_context(ca).wrap_socket(self.httpd.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, handler):
        with self._lock:
            self.requests.append((handler.command, urlsplit(handler.path).path))

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p in self.requests if p == path)

    def fault(self, kind: str, times: int | None = None) -> None:
        with self._lock:
            self._faults[kind] = times

    def take_fault(self, kind: str) -> bool:
        """Whether fault ``kind`` applies to this request (and count it down)."""
        with self._lock:
            if kind not in self._faults:
                return False
            left = self._faults[kind]
            if left is not None:
                if left <= 1:
                    del self._faults[kind]
                else:
                    self._faults[kind] = left - 1
            return True

    @staticmethod
    def body(handler) -> bytes:
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    @staticmethod
    def reply(handler, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(body)

    def handle_get(self, handler):  # pragma: no cover - subclasses
        self.reply(handler, 404, b"", "text/plain")

    def handle_post(self, handler):  # pragma: no cover - subclasses
        self.reply(handler, 404, b"", "text/plain")


class WeChatPayStandIn(HttpsStandIn):
    """Serves published bills through the V2 and V3 bill APIs, checking every signature."""

    def __init__(self, ca, *, appid: str, mch_id: str, api_key: str, serial_no: str, merchant_public_key,
                 platform_private_key, platform_serial: str = "PLATFORM-SERIAL"):
        super().__init__(ca)
        self.appid, self.mch_id, self.api_key, self.serial_no = appid, mch_id, api_key, serial_no
        self.merchant_public_key = merchant_public_key
        self.platform_private_key, self.platform_serial = platform_private_key, platform_serial
        self.bills: dict[tuple[str, str], bytes] = {}    # (yyyy-mm-dd, bill_type) -> bytes
        self.tokens: dict[str, bytes] = {}
        self.signature_failures = 0

    def publish(self, day: str, data: bytes, bill_type: str = "ALL") -> None:
        self.bills[(day, bill_type)] = data

    # -- V2 ------------------------------------------------------------------------------------------------
    def handle_post(self, handler):
        if urlsplit(handler.path).path != "/pay/downloadbill":
            return self.reply(handler, 404, b"", "text/plain")
        xml = lambda body: self.reply(handler, 200, body, "text/plain")  # noqa: E731 - WeChat sends XML as text/plain
        try:
            root = ET.fromstring(self.body(handler))
            fields = {child.tag: (child.text or "") for child in root}
        except ET.ParseError:
            return xml(_v2_fail("data format error"))
        if any(not fields.get(k) for k in ("appid", "mch_id", "nonce_str", "sign", "bill_date")):
            return xml(_v2_fail("missing parameter"))
        if fields["appid"] != self.appid or fields["mch_id"] != self.mch_id:
            return xml(_v2_fail("invalid appid"))
        if len(fields["nonce_str"]) > 32:
            return xml(_v2_fail("invalid parameter"))
        sign_type = fields.get("sign_type") or "MD5"
        if sign_type not in ("MD5", "HMAC-SHA256") or \
                not secrets.compare_digest(_v2_sign(fields, self.api_key, sign_type), fields["sign"]):
            self.signature_failures += 1
            return xml(_v2_fail("sign error", "20001"))
        bill_type = fields.get("bill_type") or "ALL"
        if bill_type not in ("ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND"):
            return xml(_v2_fail("invalid bill_type"))
        if not re.fullmatch(r"\d{8}", fields["bill_date"]):
            return xml(_v2_fail("invalid bill_date"))
        if self.take_fault("error"):
            return xml(_v2_fail("system error"))
        day = f"{fields['bill_date'][:4]}-{fields['bill_date'][4:6]}-{fields['bill_date'][6:]}"
        data = self.bills.get((day, bill_type))
        if data is None or self.take_fault("missing"):
            return xml(_v2_fail("No Bill Exist", "20002"))
        # The bill itself, uncompressed (no tar_type): text with a BOM-less CSV-like layout.
        return self.reply(handler, 200, data, "text/plain;charset=utf-8")

    # -- V3 ------------------------------------------------------------------------------------------------
    def v3_authorized(self, handler, body: bytes = b"") -> bool:
        """Verify the request's Authorization as WeChat Pay does; answer 401 SIGN_ERROR if it fails."""
        match = _AUTH.match(handler.headers.get("Authorization", ""))
        fields = dict(_FIELD.findall(match.group(1))) if match else {}
        ok = bool(fields) and fields.get("mchid") == self.mch_id and fields.get("serial_no") == self.serial_no
        if ok:
            try:
                ok = abs(time.time() - int(fields["timestamp"])) <= 300 and bool(fields.get("nonce_str"))
                message = (f"{handler.command}\n{handler.path}\n{fields['timestamp']}\n{fields['nonce_str']}\n"
                           ).encode() + body + b"\n"
                self.merchant_public_key.verify(base64.b64decode(fields["signature"], validate=True), message,
                                                padding.PKCS1v15(), hashes.SHA256())
            except (KeyError, ValueError, InvalidSignature):
                ok = False
        if not ok:
            self.signature_failures += 1
            self.v3_json(handler, 401, {"code": "SIGN_ERROR", "message": "签名错误"})
        return ok

    def v3_json(self, handler, status: int, obj: dict) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode()
        ts, nonce_str = str(int(time.time())), secrets.token_hex(16)
        signature = base64.b64encode(self.platform_private_key.sign(
            f"{ts}\n{nonce_str}\n".encode() + body + b"\n", padding.PKCS1v15(), hashes.SHA256())).decode()
        self.reply(handler, status, body, "application/json; charset=utf-8",
                   {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce_str, "Wechatpay-Signature": signature,
                    "Wechatpay-Serial": self.platform_serial, "Request-ID": secrets.token_hex(8)})

    def handle_get(self, handler):
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path == "/v3/bill/tradebill":
            if not self.v3_authorized(handler):
                return
            day, bill_type = query.get("bill_date", ""), query.get("bill_type", "ALL")
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) or bill_type not in ("ALL", "SUCCESS", "REFUND"):
                return self.v3_json(handler, 400, {"code": "PARAM_ERROR", "message": "参数错误"})
            if self.take_fault("error"):
                return self.v3_json(handler, 500, {"code": "SYSTEM_ERROR", "message": "系统错误"})
            data = self.bills.get((day, bill_type))
            if data is None:
                return self.v3_json(handler, 400, {"code": "NO_STATEMENT_EXIST", "message": "账单文件不存在"})
            if self.take_fault("missing"):
                return self.v3_json(handler, 400, {"code": "STATEMENT_CREATING", "message": "账单生成中"})
            token = secrets.token_urlsafe(24)
            self.tokens[token] = data
            digest = hashlib.sha1(data + (b"x" if self.take_fault("wrong_hash") else b"")).hexdigest()
            return self.v3_json(handler, 200, {"download_url": f"{self.base_url}/v3/billdownload/file?token={token}",
                                               "hash_type": "SHA1", "hash_value": digest})
        if parts.path == "/v3/billdownload/file":
            if not self.v3_authorized(handler):
                return
            data = self.tokens.pop(query.get("token", ""), None)  # single use, like the real link
            if data is None:
                return self.v3_json(handler, 400, {"code": "INVALID_REQUEST", "message": "token无效或已过期"})
            return self.reply(handler, 200, data, "application/octet-stream")
        return self.v3_json(handler, 404, {"code": "NOT_FOUND", "message": "Not Found"})
