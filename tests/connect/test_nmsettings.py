"""NIC → NetworkManager settings, without a bus."""

from __future__ import annotations

import socket
import sys

import pytest

from impctl.model.errors import ValidationError
from impctl.model.inventory import NMDeviceType
from impctl.model.nic import Secret, parse_nic
from impctl.model.nmsettings import (
    SIGNATURES,
    DeviceFacts,
    dns_to_nm,
    nm_settings,
    redacted,
    signature_of,
    with_priority,
)

UUID = "0b4c3a36-8a5e-4a57-9a35-3f3f6c3c9d10"
VETH = DeviceFacts("eth0", int(NMDeviceType.VETH))
ETH = DeviceFacts("enp3s0", int(NMDeviceType.ETHERNET))
WIFI = DeviceFacts("wlan0", int(NMDeviceType.WIFI))
MODEM = DeviceFacts("ttyUSB2", int(NMDeviceType.MODEM))


def settings_for(nic: dict[str, object], device: DeviceFacts, **kw: object) -> dict[str, dict[str, object]]:
    return nm_settings(parse_nic(nic), device, uuid=UUID, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", [VETH, ETH, DeviceFacts("mv0", int(NMDeviceType.MACVLAN))])
def test_ethernet_and_veth_get_a_dhcp_ethernet_profile(device: DeviceFacts) -> None:
    s = settings_for({"interface": device.ifname}, device, route_metric=20000, dhcp_timeout_s=60)
    assert s["connection"] == {
        "id": f"impctl-{device.ifname}", "uuid": UUID, "autoconnect": False,
        "type": "802-3-ethernet", "interface-name": device.ifname,
    }
    assert s["802-3-ethernet"] == {}
    assert s["ipv4"] == {"method": "auto", "may-fail": False, "route-metric": 20000, "dhcp-timeout": 60}
    assert s["ipv6"] == {"method": "ignore"}
    assert "802-11-wireless" not in s


def test_static_ipv4_has_address_gateway_dns_and_ignores_dhcp_dns() -> None:
    nic = {"interface": "eth0", "staticconfig": {
        "ip": "192.168.10.20", "netmask": "255.255.255.0", "gateway": "192.168.10.1",
        "dns": ["192.168.10.1", "9.9.9.9"]}}
    ipv4 = settings_for(nic, VETH)["ipv4"]
    assert ipv4["method"] == "manual"
    assert ipv4["address-data"] == [{"address": "192.168.10.20", "prefix": 24}]
    assert ipv4["gateway"] == "192.168.10.1"
    assert ipv4["ignore-auto-dns"] is True
    # NM's ipv4.dns is in_addr_t (network byte order) in a native uint32.
    decoded = [socket.inet_ntoa(v.to_bytes(4, sys.byteorder)) for v in ipv4["dns"]]
    assert decoded == ["192.168.10.1", "9.9.9.9"]
    assert "dhcp-timeout" not in ipv4


def test_dns_to_nm_is_network_order_in_native_int() -> None:
    # In memory (native order) the uint32 holds the address bytes in network order.
    assert dns_to_nm("10.0.0.1").to_bytes(4, sys.byteorder) == bytes([10, 0, 0, 1])


def test_wifi_with_key_is_wpa_psk() -> None:
    nic = {"interface": "wl0", "wificonfig": {"ssid": "fintlewoodlewix", "key": "verybadpassw0rd!"}}
    s = settings_for(nic, WIFI)
    assert s["connection"]["type"] == "802-11-wireless"
    assert s["802-11-wireless"] == {"ssid": b"fintlewoodlewix", "mode": "infrastructure"}
    assert s["802-11-wireless-security"] == {"key-mgmt": "wpa-psk", "psk": "verybadpassw0rd!"}
    assert redacted(s)["802-11-wireless-security"]["psk"] == "<hidden>"


@pytest.mark.parametrize("key", [None, ""])
def test_open_wifi_has_no_security_section(key: str | None) -> None:
    s = settings_for({"interface": "wl0", "wificonfig": {"ssid": "café", "key": key}}, WIFI)
    assert s["802-11-wireless"]["ssid"] == "café".encode()
    assert "802-11-wireless-security" not in s


def test_wifi_hardware_without_wificonfig_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        settings_for({"interface": "wl0"}, WIFI)
    assert exc.value.path == "wificonfig"


def test_wificonfig_on_hardware_that_is_not_wifi_is_refused() -> None:
    # The lab's veth plays wifi through a class override: an SSID means nothing to it.
    with pytest.raises(ValidationError) as exc:
        settings_for({"interface": "wlan0", "wificonfig": {"ssid": "x", "key": None}}, DeviceFacts("wlan0", 20))
    assert exc.value.path == "wificonfig"


def test_encrypted_secret_must_be_decrypted_first() -> None:
    nic = parse_nic({"interface": "wl0", "wificonfig": {"ssid": "s", "key": {"encrypted": "gAAAA-token"}}})
    with pytest.raises(ValidationError):
        nm_settings(nic, WIFI, uuid=UUID)


def test_cellular_apn_and_credentials() -> None:
    nic = parse_nic({"interface": "cell0", "cellconfig": {"apn": "iot.example", "username": "u", "password": "p"}})
    s = nm_settings(nic, MODEM, uuid=UUID, route_metric=20000)
    assert s["connection"]["type"] == "gsm"
    assert "interface-name" not in s["connection"]  # the device path designates the modem
    assert s["gsm"] == {"apn": "iot.example", "username": "u", "password": "p"}
    assert s["ipv4"]["method"] == "auto"
    assert redacted(s)["gsm"]["password"] == "<hidden>"


def test_cellular_without_apn_lets_nm_pick_one() -> None:
    s = settings_for({"interface": "cell0"}, MODEM)
    assert s["gsm"] == {"auto-config": True}


def test_static_on_a_modem_is_refused() -> None:
    from impctl.model.nic import Nic, StaticConfig

    nic = Nic("ttyUSB2", staticconfig=StaticConfig("10.0.0.2", "255.255.255.0", "10.0.0.1", ("10.0.0.1",)))
    with pytest.raises(ValidationError):
        nm_settings(nic, MODEM, uuid=UUID)


def test_unknown_device_type_is_refused_not_crashing() -> None:
    with pytest.raises(ValidationError):
        settings_for({"interface": "br0"}, DeviceFacts("br0", 999))


def test_every_generated_key_has_a_signature() -> None:
    nics = [
        ({"interface": "eth0", "staticconfig": {"ip": "10.1.1.2", "netmask": "255.255.255.0",
                                                "gateway": "10.1.1.1", "dns": ["10.1.1.1"]}}, VETH),
        ({"interface": "wl0", "wificonfig": {"ssid": "s", "key": "12345678"}}, WIFI),
        ({"interface": "cell0", "cellconfig": {"apn": "a", "username": "u", "password": "p"}}, MODEM),
        ({"interface": "cell0"}, MODEM),
    ]
    for nic, device in nics:
        s = settings_for(nic, device, route_metric=5, dhcp_timeout_s=9)
        for group, values in s.items():
            for key in values:
                assert signature_of(group, key) == SIGNATURES[(group, key)]


def test_plain_secret_object_is_accepted() -> None:
    from impctl.model.nic import Nic, WifiConfig

    s = nm_settings(Nic("wl0", wificonfig=WifiConfig("s", Secret(plain="abcdefgh"))), WIFI, uuid=UUID)
    assert s["802-11-wireless-security"]["psk"] == "abcdefgh"


def test_with_priority_sets_metric_and_dns_priority_without_touching_the_rest() -> None:
    modem = nm_settings(parse_nic({"interface": "cell1", "cellconfig": {"apn": "internet"}}),
                        DeviceFacts("ttyUSB0", NMDeviceType.MODEM), uuid="u", route_metric=20000)
    primary = with_priority(modem, 50, 90)
    assert primary["ipv4"]["route-metric"] == 50 and primary["ipv4"]["dns-priority"] == 90
    assert primary["ipv4"]["method"] == "auto" and primary["gsm"] == {"apn": "internet"}
    assert modem["ipv4"]["route-metric"] == 20000  # a copy
    assert signature_of("ipv4", "dns-priority") == "i"
