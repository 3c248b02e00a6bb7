"""NIC validation: the rules of the impOS pages, errors naming the JSON path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impctl.model.errors import ValidationError
from impctl.model.nic import Secret, check_nic_for_class, nic_summary, nic_to_json, parse_nic

WIFI = {"interface": "wl0", "wificonfig": {"ssid": "fintlewoodlewix", "key": "verybadpassw0rd!"}}
STATIC = {"ip": "192.0.2.10", "netmask": "255.255.255.0", "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}
PROXY = {"type": "http", "address": "proxy.example", "port": 8080, "username": "u", "password": "p"}


def err_path(doc: Any) -> str:
    with pytest.raises(ValidationError) as err:
        parse_nic(doc)
    return err.value.path


def test_page_example_parses() -> None:
    nic = parse_nic(WIFI)
    assert nic.interface == "wl0" and nic.iface_class == "wifi"
    assert nic.wificonfig is not None and nic.wificonfig.ssid == "fintlewoodlewix"
    assert nic.wificonfig.key == Secret(plain="verybadpassw0rd!")
    assert not nic.is_bare


def test_bare_nic() -> None:
    assert parse_nic({"interface": "eth0"}).is_bare


@pytest.mark.parametrize("key", [None, ""])
def test_open_network(key: str | None) -> None:
    nic = parse_nic({"interface": "wifi", "wificonfig": {"ssid": "cafe", "key": key}})
    assert nic.wificonfig is not None and nic.wificonfig.is_open


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({}, "interface"),
        ([], ""),
        ({"interface": 7}, "interface"),
        ({"interface": "nope nope"}, "interface"),
        ({"interface": "eth0", "wifconfig": {}}, "wifconfig"),
        ({"interface": "eth0", "wificonfig": {"ssid": "a", "key": ""}}, "wificonfig"),
        ({"interface": "cell0", "wificonfig": {"ssid": "a", "key": ""}}, "wificonfig"),
        ({"interface": "cell", "staticconfig": STATIC}, "staticconfig"),
        ({"interface": "cell0", "proxyconfig": PROXY}, "proxyconfig"),
        ({"interface": "wifi", "cellconfig": {"apn": "internet"}}, "cellconfig"),
        ({"interface": "wifi", "wificonfig": {"key": "12345678"}}, "wificonfig.ssid"),
        ({"interface": "wifi", "wificonfig": {"ssid": "x"}}, "wificonfig.key"),
        ({"interface": "wifi", "wificonfig": {"ssid": "", "key": None}}, "wificonfig.ssid"),
        ({"interface": "wifi", "wificonfig": {"ssid": "é" * 17, "key": None}}, "wificonfig.ssid"),
        ({"interface": "wifi", "wificonfig": {"ssid": "x", "key": "short"}}, "wificonfig.key"),
        ({"interface": "wifi", "wificonfig": {"ssid": "x", "key": "k" * 64}}, "wificonfig.key"),
        ({"interface": "wifi", "wificonfig": {"ssid": "x", "key": 12345678}}, "wificonfig.key"),
        ({"interface": "wifi", "wificonfig": {"ssid": "x", "key": {"encrypted": ""}}}, "wificonfig.key.encrypted"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "ip": "192.0.2"}}, "staticconfig.ip"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "ip": "192.0.2.256"}}, "staticconfig.ip"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "ip": "192.0.2.0"}}, "staticconfig.ip"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "netmask": "255.0.255.0"}}, "staticconfig.netmask"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "gateway": "198.51.100.1"}}, "staticconfig.gateway"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "dns": []}}, "staticconfig.dns"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "dns": ["1.1.1.1"] * 3}}, "staticconfig.dns"),
        ({"interface": "eth0", "staticconfig": {**STATIC, "dns": ["x"]}}, "staticconfig.dns[0]"),
        ({"interface": "eth0", "staticconfig": {k: v for k, v in STATIC.items() if k != "gateway"}},
         "staticconfig.gateway"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "type": "socks"}}, "proxyconfig.type"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "port": 65536}}, "proxyconfig.port"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "port": -1}}, "proxyconfig.port"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "port": True}}, "proxyconfig.port"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "port": "80"}}, "proxyconfig.port"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "address": "a" * 65}}, "proxyconfig.address"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "address": "bad host"}}, "proxyconfig.address"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "username": "u" * 33}}, "proxyconfig.username"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "password": "p" * 33}}, "proxyconfig.password"),
        ({"interface": "cell0", "cellconfig": {"apn": "has space"}}, "cellconfig.apn"),
    ],
)
def test_invalid_nics_name_the_field(doc: Any, path: str) -> None:
    assert err_path(doc) == path


@pytest.mark.parametrize("key", ["12345678", "x" * 63, "0123456789abcdef" * 4])
def test_valid_wpa_keys(key: str) -> None:
    nic = parse_nic({"interface": "wifi", "wificonfig": {"ssid": "x" * 32, "key": key}})
    assert nic.wificonfig is not None and nic.wificonfig.key == Secret(plain=key)


def test_proxy_port_bounds_and_static_fields() -> None:
    for port in (0, 65535):
        nic = parse_nic({"interface": "eth0", "proxyconfig": {**PROXY, "port": port}, "staticconfig": STATIC})
        assert nic.proxyconfig is not None and nic.proxyconfig.port == port
        assert nic.staticconfig is not None and nic.staticconfig.prefix == 24


def test_plain_ifname_defers_class_checks() -> None:
    nic = parse_nic({"interface": "wlp2s0", "wificonfig": {"ssid": "x", "key": None}})
    check_nic_for_class(nic, "wifi")
    with pytest.raises(ValidationError) as err:
        check_nic_for_class(nic, "ethernet")
    assert err.value.path == "wificonfig"


def test_secrets_never_print_and_serialise_only_encrypted() -> None:
    nic = parse_nic({"interface": "eth0", "proxyconfig": PROXY, "staticconfig": STATIC})
    assert "'p'" not in repr(nic)
    summary = nic_summary(parse_nic(WIFI))
    assert "verybadpassw0rd!" not in repr(summary)
    assert summary["wificonfig"]["key"] == "set (hidden)"
    with pytest.raises(ValueError):
        nic_to_json(nic)
    enc = parse_nic({"interface": "wl0", "wificonfig": {"ssid": "s", "key": {"encrypted": "gAAAA-token"}}})
    assert nic_to_json(enc)["wificonfig"]["key"] == {"encrypted": "gAAAA-token"}
    assert parse_nic(nic_to_json(enc)) == enc  # round trip


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
nic_like = st.fixed_dictionaries(
    {},
    optional={
        "interface": st.sampled_from(["wifi", "eth0", "cell0", "wlan0", "", "x" * 20]) | json_values,
        "wificonfig": st.fixed_dictionaries({}, optional={"ssid": json_values | st.text(), "key": json_values})
        | json_values,
        "staticconfig": st.fixed_dictionaries(
            {}, optional={k: json_values | st.just(v) for k, v in STATIC.items()}
        ) | json_values,
        "proxyconfig": st.fixed_dictionaries({}, optional={k: json_values | st.just(v) for k, v in PROXY.items()})
        | json_values,
        "cellconfig": json_values,
    },
)


@settings(max_examples=400)
@given(json_values | nic_like)
def test_parser_raises_only_validation_errors(doc: Any) -> None:
    try:
        nic = parse_nic(doc)
    except ValidationError as err:
        assert err.message  # every refusal says why
    else:
        assert nic.interface


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"interface": "wl0", "wificonfig": {"ssid": "\ud800", "key": None}}, "wificonfig.ssid"),
        ({"interface": "wl0", "wificonfig": {"ssid": "a\udfffb", "key": None}}, "wificonfig.ssid"),
        ({"interface": "wl0", "wificonfig": {"ssid": "x" * 33, "key": None}}, "wificonfig.ssid"),
        ({"interface": "wl0", "wificonfig": {"ssid": "x", "key": "\ud800" * 8}}, "wificonfig.key"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "username": "\udc80"}}, "proxyconfig.username"),
        ({"interface": "eth0", "proxyconfig": {**PROXY, "password": "p\ud800"}}, "proxyconfig.password"),
        ({"interface": "cell0", "cellconfig": {"username": "\ud800"}}, "cellconfig.username"),
    ],
)
def test_strings_that_can_never_be_valid_are_refused(doc: Any, path: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_nic(doc)
    assert err.value.path == path
    assert "\ud800" not in err.value.message and "\udfff" not in err.value.message  # printable


def test_an_unknown_key_with_controls_is_named_in_one_printable_line() -> None:
    with pytest.raises(ValidationError) as err:
        parse_nic({"interface": "eth0", "a\n\x1b[2Jb": 1})
    assert err.value.path == "['a\\n\\x1b[2Jb']"
    assert "\n" not in err.value.message and "\x1b" not in err.value.message
    with pytest.raises(ValidationError) as err:
        parse_nic({"interface": "wl0", "wificonfig": {"ssid": "x", "key": None, "\ud800": 1}})
    assert err.value.path == "wificonfig['\\ud800']"


@pytest.mark.parametrize(
    "doc",
    [
        {"interface": "wl0", "wificonfig": {"ssid": "x", "key": "hunter22\udcff"}},
        {"interface": "eth0", "proxyconfig": {**PROXY, "password": "hunter22\ud800"}},
        {"interface": "cell0", "cellconfig": {"username": "u", "password": "hunter22\x00"}},
    ],
)
def test_a_bad_secret_is_never_echoed(doc: Any) -> None:
    with pytest.raises(ValidationError) as err:
        parse_nic(doc)
    assert "hunter22" not in err.value.message
