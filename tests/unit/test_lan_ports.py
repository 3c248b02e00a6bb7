"""A LAN port is not an uplink: recognised by its IP method, left out of identifiers and listings."""

from __future__ import annotations

import pytest

from impctl.model.config import parse_config
from impctl.model.errors import ConfigError
from impctl.model.inventory import (
    DeviceInfo,
    NMDeviceState,
    NMDeviceType,
    build_interfaces,
    build_inventory,
    is_lan_port,
)
from impctl.model.state import State
from impctl.usecases.status import StatusReport


def dev(ifname: str, *, lan: bool = False, nm_type: NMDeviceType = NMDeviceType.VETH) -> DeviceInfo:
    return DeviceInfo(ifname=ifname, nm_type=nm_type, nm_state=NMDeviceState.ACTIVATED,
                      iface_class="", lan=lan)


@pytest.mark.parametrize(("ipv4", "ipv6", "lan"), [
    ("shared", "disabled", True),
    ("shared", None, True),
    ("disabled", "shared", True),
    ("auto", "auto", False),
    ("manual", "ignore", False),
    ("link-local", None, False),
    (None, None, False),
])
def test_a_port_is_lan_when_nm_shares_on_it(ipv4: str | None, ipv6: str | None, lan: bool) -> None:
    assert is_lan_port(ipv4, ipv6) is lan


def test_a_lan_port_takes_no_identifier_from_the_uplinks() -> None:
    config = parse_config({"classes": {"wlan0": "wifi"}})
    found = build_interfaces([dev("lan0", lan=True), dev("eth0"), dev("wlan0"), dev("eth2")], config)
    assert [(d.ifname, d.identifier) for d in found.uplinks] == [
        ("eth0", "eth0"), ("eth2", "eth1"), ("wlan0", "wl0")]
    assert [(d.ifname, d.identifier, d.iface_class, d.lan) for d in found.lan] == [
        ("lan0", "", "ethernet", True)]
    # What probe, connect and the daemon work with: the uplinks only.
    assert build_inventory([dev("lan0", lan=True), dev("eth0")], config) == found.uplinks[:1]


def test_an_unmanaged_lan_port_is_listed_nowhere() -> None:
    lan0 = DeviceInfo(ifname="lan0", nm_type=NMDeviceType.VETH, nm_state=NMDeviceState.UNMANAGED,
                      iface_class="", managed=False, lan=True)
    found = build_interfaces([lan0], parse_config({}))
    assert (found.uplinks, found.lan) == ([], [])


def test_status_json_names_each_interfaces_role() -> None:
    found = build_interfaces([dev("eth0"), dev("lan0", lan=True)], parse_config({}))
    doc = StatusReport(found.uplinks, "eth0", "eth0", State(), lan=found.lan).to_json()
    assert [(d["ifname"], d["role"], d["identifier"]) for d in doc["interfaces"]] == [
        ("eth0", "uplink", "eth0")]
    assert [(d["ifname"], d["role"], d["active"]) for d in doc["lan"]] == [("lan0", "lan", False)]


def test_a_port_the_config_names_lan_stays_lan_while_unplugged_and_its_shared_profile_down() -> None:
    # NM deactivates the shared profile after the carrier-wait: nothing applied says "shared" any more.
    unplugged = DeviceInfo(ifname="lan0", nm_type=NMDeviceType.ETHERNET, nm_state=NMDeviceState.UNAVAILABLE,
                           iface_class="", carrier=False)
    found = build_interfaces([unplugged, dev("eth0")], parse_config({"classes": {"lan0": "lan"}}))
    assert [d.ifname for d in found.uplinks] == ["eth0"]
    assert [(d.ifname, d.iface_class, d.lan, d.identifier) for d in found.lan] == [("lan0", "ethernet", True, "")]
    # Without the config it would be an uplink again, as NM now sees it.
    assert [d.ifname for d in build_interfaces([unplugged], parse_config({})).uplinks] == ["lan0"]


def test_the_lan_class_is_only_for_classes_not_for_failback_lists() -> None:
    with pytest.raises(ConfigError):
        parse_config({"daemon": {"end_sessions_on_failback": ["lan"]}})
    with pytest.raises(ConfigError):
        parse_config({"classes": {"lan0": "bridge"}})
