"""WeChat Pay V2 downloadbill and V3 tradebill connectors against a stand-in that checks signatures for real.

Real TLS on loopback (a throwaway CA), real RSA keys and signatures, the
channel's documented error bodies; nothing in ``requests`` is mocked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.landing import land
from core.errors import ConfigError, FatalError, IntegrityError, UnavailableError
from core.settings import ChannelSettings
from core.storage import Storage
from tests.connectors.servers.wechatpay import WeChatPayStandIn

DAY = dt.date(2026, 11, 20)
NAME = "wechatpay_all_20261120.csv"
HEADER = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号\r\n".encode()
BILL = HEADER + b"".join(b"`2026-11-20 10:00:%02d,`wx0001,`1900000109,`0,`,`42%08d,`order-%06d\r\n"
                         % (i % 60, i, i) for i in range(3000))
FAST = {"connect_timeout": 2, "read_timeout": 2, "attempt_timeout": 10, "retry_interval": 0.05, "retry_jitter": 0,
        "max_wait": 5, "deadline": ""}  # no time-of-day deadline (DAY's 12:00 is past); max_wait bounds
API_KEY = "a" * 16 + "0123456789abcdef"  # 32 characters, like the real API key
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


def _write(path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="ascii")
    os.chmod(path, mode)
    return str(path)


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """RSA keys made once: the merchant's, WeChat Pay's (platform) and a stranger's; private ones in 0600 files."""
    folder = tmp_path_factory.mktemp("wechatpay-keys")
    made = {}
    for who in ("merchant", "platform", "stranger"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        made[who] = {"key": key, "file": _write(folder / f"{who}_key.pem", pem),
                     "public_file": _write(folder / f"{who}_public.pem", public, 0o644)}
    made["api_key_file"] = _write(folder / "api_key", API_KEY + "\n")
    made["wrong_api_key_file"] = _write(folder / "wrong_api_key", "b" * 32)
    return made


def _serve(ca, keys):
    return WeChatPayStandIn(ca, appid="wx8888888888888888", mch_id="1900000109", api_key=API_KEY, serial_no=SERIAL,
                            merchant_public_key=keys["merchant"]["key"].public_key(),
                            platform_private_key=keys["platform"]["key"]).start()


@pytest.fixture(scope="module")
def server(ca, keys):
    stand_in = _serve(ca, keys)
    stand_in.publish(DAY.isoformat(), BILL)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def landing(tmp_path):
    """land(channel) into a fresh root; returns (land function, raw folder of DAY)."""
    storage = Storage((tmp_path / "root").as_uri())

    def do_land(channel, **kw):
        return land(storage, channel, DAY, work_dir=str(tmp_path / "work"), **kw)

    return do_land, tmp_path / "root" / "raw" / "wechatpay" / DAY.isoformat()


def v2_channel(server, keys, ca_file, **extra) -> ChannelSettings:
    download = {"type": "wechatpay_v2", "base_url": server.base_url, "ca_file": ca_file,
                "appid": "wx8888888888888888", "mch_id": 1900000109, "api_key_file": keys["api_key_file"], **FAST}
    download.update(extra)
    return ChannelSettings(name="wechatpay", normalizer="wechatpay", download=download, conf_file="<test>")


def v3_channel(server, keys, ca_file, **extra) -> ChannelSettings:
    download = {"type": "wechatpay_v3", "base_url": server.base_url, "ca_file": ca_file, "mch_id": "1900000109",
                "serial_no": SERIAL, "private_key_file": keys["merchant"]["file"],
                "wechatpay_public_key_file": keys["platform"]["public_file"], **FAST}
    download.update(extra)
    return ChannelSettings(name="wechatpay", normalizer="wechatpay", download=download, conf_file="<test>")


def assert_landed(raw, manifest, connector_type):
    assert (raw / NAME).read_bytes() == BILL
    assert sorted(p.name for p in raw.iterdir()) == ["_manifest.json", NAME]
    assert json.loads((raw / "_manifest.json").read_text()) == manifest
    (entry,) = manifest["files"]
    assert entry["size"] == len(BILL) and entry["sha256"] == hashlib.sha256(BILL).hexdigest()
    assert manifest["connector"] == connector_type and entry["source"].startswith("https://127.0.0.1:")
    assert "token" not in entry["source"] and "sign" not in entry["source"]


def assert_nothing_landed(raw):
    assert not raw.exists() or list(raw.iterdir()) == [], sorted(p.name for p in raw.iterdir())


# -- V2 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sign_type", ["MD5", "HMAC-SHA256"])
def test_v2_downloads_the_bill_and_lands_it_with_a_manifest(server, keys, ca_file, landing, sign_type):
    do_land, raw = landing
    failures = server.signature_failures
    manifest = do_land(v2_channel(server, keys, ca_file, sign_type=sign_type))
    assert_landed(raw, manifest, "wechatpay_v2")
    assert manifest["attempts"] == 1 and server.signature_failures == failures


def test_v2_a_wrong_api_key_is_rejected_at_once_without_retrying(server, keys, ca_file, landing):
    do_land, raw = landing
    before = server.count("/pay/downloadbill")
    with pytest.raises(FatalError, match="sign error") as info:
        do_land(v2_channel(server, keys, ca_file, api_key_file=keys["wrong_api_key_file"]))
    assert info.value.exit_code == 1 and info.value.channel == "wechatpay"
    assert server.count("/pay/downloadbill") - before == 1
    assert_nothing_landed(raw)


def test_v2_bill_not_generated_twice_then_served_takes_three_attempts(server, keys, ca_file, landing):
    do_land, raw = landing
    server.fault("missing", times=2)
    manifest = do_land(v2_channel(server, keys, ca_file))
    assert manifest["attempts"] == 3
    assert (raw / NAME).read_bytes() == BILL


# -- V3 ------------------------------------------------------------------------------------------------------------
def test_v3_applies_downloads_verifies_sha1_and_lands_the_bill(server, keys, ca_file, landing):
    do_land, raw = landing
    before = server.count("/v3/billdownload/file")
    manifest = do_land(v3_channel(server, keys, ca_file))
    assert_landed(raw, manifest, "wechatpay_v3")
    assert manifest["attempts"] == 1 and server.count("/v3/billdownload/file") - before == 1


def test_v3_a_wrong_private_key_is_rejected_at_once_without_retrying(server, keys, ca_file, landing):
    do_land, raw = landing
    before, failures = server.count("/v3/bill/tradebill"), server.signature_failures
    with pytest.raises(FatalError, match="401 SIGN_ERROR") as info:
        do_land(v3_channel(server, keys, ca_file, private_key_file=keys["stranger"]["file"]))
    assert info.value.exit_code == 1
    assert server.count("/v3/bill/tradebill") - before == 1 and server.signature_failures - failures == 1
    assert_nothing_landed(raw)


def test_v3_statement_creating_twice_then_served_takes_three_attempts(server, keys, ca_file, landing):
    do_land, raw = landing
    server.fault("missing", times=2)
    manifest = do_land(v3_channel(server, keys, ca_file))
    assert manifest["attempts"] == 3
    assert (raw / NAME).read_bytes() == BILL


def test_v3_a_system_error_is_retried(server, keys, ca_file, landing):
    do_land, raw = landing
    server.fault("error", times=1)
    assert do_land(v3_channel(server, keys, ca_file))["attempts"] == 2


def test_v3_a_hash_mismatch_is_an_integrity_error_and_lands_nothing(server, keys, ca_file, landing, tmp_path):
    do_land, raw = landing
    server.fault("wrong_hash", times=1)
    with pytest.raises(IntegrityError, match="SHA-1") as info:
        do_land(v3_channel(server, keys, ca_file))
    assert info.value.exit_code == 4
    assert_nothing_landed(raw)
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))  # the part file is gone too


def test_v3_a_reply_signed_by_another_key_is_refused(server, keys, ca_file, landing):
    do_land, raw = landing
    with pytest.raises(FatalError, match="signature does not verify"):
        do_land(v3_channel(server, keys, ca_file, wechatpay_public_key_file=keys["stranger"]["public_file"]))
    assert_nothing_landed(raw)


def test_v3_a_private_key_readable_by_others_is_a_configuration_error(server, keys, ca_file, landing, tmp_path):
    do_land, _ = landing
    loose = tmp_path / "loose_key.pem"
    loose.write_bytes(open(keys["merchant"]["file"], "rb").read())
    os.chmod(loose, 0o644)
    before = len(server.requests)
    with pytest.raises(ConfigError, match="readable by others"):
        do_land(v3_channel(server, keys, ca_file, private_key_file=str(loose)))
    assert len(server.requests) == before


# -- TLS -----------------------------------------------------------------------------------------------------------
def test_a_server_certificate_from_an_untrusted_ca_fails_at_once(rogue_ca, keys, ca_file, landing):
    do_land, raw = landing
    rogue = _serve(rogue_ca, keys)
    rogue.publish(DAY.isoformat(), BILL)
    try:
        for channel in (v3_channel(rogue, keys, ca_file), v2_channel(rogue, keys, ca_file)):
            with pytest.raises(FatalError, match="not trusted") as info:
                do_land(channel, policy=None)
            assert info.value.exit_code == 1
        assert rogue.requests == []  # no request got past the handshake
    finally:
        rogue.stop()
    assert_nothing_landed(raw)


def test_a_refused_connection_is_retried_then_unavailable_exit_3(keys, ca_file, landing):
    do_land, raw = landing
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Nowhere:
        base_url = f"https://127.0.0.1:{port}"

    with pytest.raises(UnavailableError, match="after 2 attempt") as info:
        do_land(v3_channel(Nowhere, keys, ca_file, max_attempts=2))
    assert info.value.exit_code == 3
    assert_nothing_landed(raw)
