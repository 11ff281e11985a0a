"""Connectors and normalizers by name: an unknown short name is exit 2 and lists the names that exist."""

from __future__ import annotations

import pytest

from core import registry
from core.errors import ConfigError


def test_the_short_names_are_the_modules_that_register_an_entry_point():
    assert registry.available("normalizers", "NORMALIZER") == ["alipay", "bankspec", "paypal", "unionpay",
                                                                "wechatpay"]
    assert {"localdir", "ftp", "ftps", "sftp", "https", "wechatpay_v2", "wechatpay_v3", "alipay_api"} == \
        set(registry.available("connectors", "CONNECTOR"))


@pytest.mark.parametrize("name", ["wechat", "base", "publish"])
def test_an_unknown_normalizer_lists_the_known_ones(name):
    with pytest.raises(ConfigError) as info:
        registry.load(name, package="normalizers", attribute="NORMALIZER", conf_file="channels/x.toml")
    err = info.value
    assert err.exit_code == 2 and err.file == "channels/x.toml"
    assert "known normalizers: alipay, bankspec, paypal, unionpay, wechatpay" in err.message
    assert "module:Class" in err.hint


def test_an_unknown_download_type_lists_the_connectors():
    with pytest.raises(ConfigError, match="no connector named 'ftpx'.*known connectors: alipay_api, ftp, ftps") as info:
        registry.load("ftpx", package="connectors", attribute="CONNECTOR")
    assert info.value.exit_code == 2


def test_a_missing_class_name_does_not_pretend_to_list_classes():
    with pytest.raises(ConfigError, match="has no Nope") as info:
        registry.load("normalizers.wechatpay:Nope", package="normalizers", attribute="NORMALIZER")
    assert "known" not in info.value.message
