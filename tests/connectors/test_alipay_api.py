"""Alipay bill-download-url connector against a gateway stand-in that checks RSA2 signatures for real.

Real TLS on loopback (a throwaway CA), real RSA keys and signatures, the
gateway's documented reply shapes; nothing in ``requests`` is mocked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import zipfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.landing import land
from core.errors import FatalError
from core.settings import ChannelSettings
from core.storage import Storage
from tests.connectors.servers.alipay import AlipayStandIn

DAY = dt.date(2026, 11, 20)
NAME = "alipay_trade_20261120.zip"
APP_ID = "2021000000000001"
FAST = {"connect_timeout": 2, "read_timeout": 2, "attempt_timeout": 10, "retry_interval": 0.05, "retry_jitter": 0,
        "max_wait": 5, "deadline": ""}  # no time-of-day deadline (DAY's 12:00 is past); max_wait bounds


def _bill_zip() -> bytes:
    """A zip like Alipay's: GBK entry names and contents, deflated."""
    rows = "".join(f"2026112022001458{i:012d}\t,order-{i:06d}\t,交易\t,商品{i % 97},"
                   f"2026-11-20 10:{i % 60:02d}:00,2026-11-20 10:{i % 60:02d}:05,,,,,"
                   f"*明(1{i % 7}***@qq.com)\t,{i % 500}.{i % 100:02d}\r\n" for i in range(2000))
    header = "#支付宝业务明细查询\r\n支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间\r\n"
    detail = (header + rows).encode("gbk")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, data in (("20880000000000000156_20261120_业务明细.csv", detail),
                            ("20880000000000000156_20261120_业务明细(汇总).csv", "#汇总\r\n".encode("gbk"))):
            info = zipfile.ZipInfo(entry.encode("gbk").decode("cp437"), (2026, 11, 21, 5, 46, 49))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


BILL = _bill_zip()


def _write(path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="ascii")
    os.chmod(path, mode)
    return str(path)


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """RSA keys made once: the app's, Alipay's and a stranger's; formats as Alipay's console hands them out."""
    folder = tmp_path_factory.mktemp("alipay-keys")
    made = {}
    for who in ("app", "alipay", "stranger"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        made[who] = {"key": key, "file": _write(folder / f"{who}_private_key.pem", pem),
                     # the console shows the public key as one line of base64, no PEM armour
                     "public_file": _write(folder / f"{who}_public_key.txt", base64.b64encode(der).decode(), 0o644)}
    return made


def _serve(ca, keys):
    return AlipayStandIn(ca, app_id=APP_ID, app_public_key=keys["app"]["key"].public_key(),
                         alipay_private_key=keys["alipay"]["key"]).start()


@pytest.fixture(scope="module")
def server(ca, keys):
    stand_in = _serve(ca, keys)
    stand_in.publish(DAY.isoformat(), BILL)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def landing(tmp_path):
    storage = Storage((tmp_path / "root").as_uri())

    def do_land(channel, **kw):
        return land(storage, channel, DAY, work_dir=str(tmp_path / "work"), **kw)

    return do_land, tmp_path / "root" / "raw" / "alipay" / DAY.isoformat()


def channel(server, keys, ca_file, **extra) -> ChannelSettings:
    download = {"type": "alipay_api", "base_url": server.base_url, "ca_file": ca_file, "app_id": APP_ID,
                "private_key_file": keys["app"]["file"], "alipay_public_key_file": keys["alipay"]["public_file"],
                **FAST}
    download.update(extra)
    return ChannelSettings(name="alipay", normalizer="alipay", download=download, conf_file="<test>")


def assert_nothing_landed(raw):
    assert not raw.exists() or list(raw.iterdir()) == [], sorted(p.name for p in raw.iterdir())


def test_downloads_the_bill_zip_and_lands_it_with_a_manifest(server, keys, ca_file, landing):
    do_land, raw = landing
    failures = server.signature_failures
    manifest = do_land(channel(server, keys, ca_file))
    assert (raw / NAME).read_bytes() == BILL
    assert sorted(p.name for p in raw.iterdir()) == ["_manifest.json", NAME]
    assert json.loads((raw / "_manifest.json").read_text()) == manifest
    (entry,) = manifest["files"]
    assert entry["size"] == len(BILL) and entry["sha256"] == hashlib.sha256(BILL).hexdigest()
    assert entry["source"] == f"{server.base_url}/downloadBillFile.resource"  # no one-time token kept
    assert manifest["connector"] == "alipay_api" and manifest["attempts"] == 1
    assert server.signature_failures == failures


def test_a_wrong_private_key_is_rejected_at_once_without_retrying(server, keys, ca_file, landing):
    do_land, raw = landing
    before, failures = server.count("/gateway.do"), server.signature_failures
    with pytest.raises(FatalError, match="isv.invalid-signature") as info:
        do_land(channel(server, keys, ca_file, private_key_file=keys["stranger"]["file"]))
    assert info.value.exit_code == 1 and info.value.channel == "alipay"
    assert server.count("/gateway.do") - before == 1 and server.signature_failures - failures == 1
    assert_nothing_landed(raw)


def test_bill_not_exist_twice_then_served_takes_three_attempts(server, keys, ca_file, landing):
    do_land, raw = landing
    server.fault("missing", times=2)
    manifest = do_land(channel(server, keys, ca_file))
    assert manifest["attempts"] == 3
    assert (raw / NAME).read_bytes() == BILL


@pytest.mark.parametrize("fault", ["error", "bad_zip"])
def test_service_unavailable_or_a_damaged_zip_is_retried(server, keys, ca_file, landing, fault):
    do_land, raw = landing
    server.fault(fault, times=1)
    assert do_land(channel(server, keys, ca_file))["attempts"] == 2
    assert (raw / NAME).read_bytes() == BILL


def test_a_reply_signed_by_another_key_is_refused(server, keys, ca_file, landing):
    do_land, raw = landing
    with pytest.raises(FatalError, match="sign does not verify"):
        do_land(channel(server, keys, ca_file, alipay_public_key_file=keys["stranger"]["public_file"]))
    assert_nothing_landed(raw)


def test_a_plain_http_download_link_is_refused_unless_allowed(server, keys, ca_file, landing):
    do_land, raw = landing
    server.fault("http_link", times=1)
    before = server.count("/downloadBillFile.resource")
    with pytest.raises(FatalError, match="plain-http"):
        do_land(channel(server, keys, ca_file))
    assert server.count("/downloadBillFile.resource") == before
    assert_nothing_landed(raw)


@pytest.mark.parametrize("allow_http", [False, True])
def test_a_redirect_of_the_download_to_plain_http_is_refused_before_any_request_goes_there(
        server, keys, ca_file, landing, allow_http):
    from tests.connectors.test_https import PlainHttpListener

    do_land, raw = landing
    with PlainHttpListener() as plain:
        server.redirect_location = f"http://127.0.0.1:{plain.port}/downloadBillFile.resource?token=x"
        server.fault("redirect", times=1)
        if allow_http:  # allowed knowingly: the redirect is followed (and the listener's "no" is not a zip)
            with pytest.raises(Exception):
                do_land(channel(server, keys, ca_file, allow_http_download=True, max_attempts=1))
            assert plain.requests == 1
        else:
            with pytest.raises(FatalError, match="redirected to a plain-http URL") as info:
                do_land(channel(server, keys, ca_file))
            assert plain.requests == 0 and plain.connections == 0 and info.value.file == NAME
    assert_nothing_landed(raw)


def test_a_trickling_download_ends_at_attempt_timeout(ca, keys, ca_file, landing):
    import socketserver
    import threading
    import time

    from core.errors import UnavailableError

    stop = threading.Event()

    class Trickle(socketserver.BaseRequestHandler):  # a plain listener the (allowed) http link points at
        def handle(self):
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.3):
                try:
                    self.request.sendall(b"P")
                except OSError:
                    return

    slow = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    slow.daemon_threads = True
    threading.Thread(target=slow.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    do_land, raw = landing
    stand_in = _serve(ca, keys)
    stand_in.publish(DAY.isoformat(), BILL)
    stand_in.redirect_location = f"http://127.0.0.1:{slow.server_address[1]}/bill.zip"
    stand_in.fault("redirect")
    started = time.monotonic()
    try:
        with pytest.raises(UnavailableError, match="wall-clock limit of 2 s"):
            do_land(channel(stand_in, keys, ca_file, allow_http_download=True, attempt_timeout=2, read_timeout=5,
                            max_attempts=1))
        assert time.monotonic() - started < 15
    finally:
        stop.set()
        stand_in.stop()
        slow.shutdown()
        slow.server_close()
    assert_nothing_landed(raw)


def test_a_server_certificate_from_an_untrusted_ca_fails_at_once(rogue_ca, keys, ca_file, landing):
    do_land, raw = landing
    rogue = _serve(rogue_ca, keys)
    rogue.publish(DAY.isoformat(), BILL)
    try:
        with pytest.raises(FatalError, match="not trusted") as info:
            do_land(channel(rogue, keys, ca_file))
        assert info.value.exit_code == 1 and rogue.requests == []
    finally:
        rogue.stop()
    assert_nothing_landed(raw)
