"""Which device an identifier names, which uplink is current, what a bare NIC
completes to: the pure rules connect, status and the daemon share.
"""

from __future__ import annotations

from dataclasses import replace

from impctl.model.identifiers import resolve
from impctl.model.inventory import WIFI_TYPES, DeviceInfo
from impctl.model.nic import Nic
from impctl.model.state import StoredSettings

PRIMARY_ROUTE_METRIC = 50  # below NM's defaults (ethernet 100, wifi 600, modem 700)


def find_devices(identifier: str, devices: list[DeviceInfo]) -> list[DeviceInfo]:
    """The devices an identifier (generic, specific or ifname) designates, preferred first."""
    assignment = {d.ifname: d.identifier for d in devices}
    classes = {d.ifname: d.iface_class for d in devices}
    by_name = {d.ifname: d for d in devices}
    return [by_name[n] for n in resolve(identifier, assignment, classes)]


def stored_applies(interface: str | None, device: DeviceInfo) -> bool:
    """Stored settings for `interface` (None: any) apply to `device`."""
    return interface is None or interface in (device.identifier, device.ifname, device.iface_class)


def complete_nic(nic: Nic, device: DeviceInfo, stored: StoredSettings) -> Nic:
    """A NIC naming only an interface takes the stored settings that apply to the device.

    Stored WiFi settings apply to WiFi hardware only (an SSID means nothing
    to the lab's veth playing wifi); static and proxy settings to ethernet
    and wifi interfaces, or to the one named with `config static --interface`.
    """
    if not nic.is_bare:
        return nic
    wifi = static = proxy = None
    if device.nm_type in WIFI_TYPES and stored.wifi and stored_applies(stored.wifi.interface, device):
        wifi = stored.wifi.config
    if device.iface_class in ("ethernet", "wifi"):
        if stored.static and stored_applies(stored.static.interface, device):
            static = stored.static.config
        if stored.proxy and stored_applies(stored.proxy.interface, device):
            proxy = stored.proxy.config
    return replace(nic, wificonfig=wifi, staticconfig=static, proxyconfig=proxy)


def primary_metric(devices: list[DeviceInfo], target: DeviceInfo, leaving: DeviceInfo | None) -> int:
    """A route metric below every other uplink that stays up."""
    others = [
        d.route_metric
        for d in devices
        if d.ifname != target.ifname
        and (leaving is None or d.ifname != leaving.ifname)
        and d.connected
        and d.route_metric is not None
    ]
    return max(0, min([PRIMARY_ROUTE_METRIC, *[m - 1 for m in others]]))


def current_device(current_ifname: str | None, devices: list[DeviceInfo], primary: str | None) -> DeviceInfo | None:
    """The current uplink: the one impctl connected, else NM's primary connection's device."""
    names = []
    if current_ifname:
        names.append(current_ifname)
    if primary:
        names.append(primary)
    for name in names:
        dev = next((d for d in devices if d.ifname == name), None)
        if dev is not None and dev.connected:
            return dev
    return None
