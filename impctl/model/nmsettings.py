"""A NIC, for one NM device, as NetworkManager connection settings (`a{sa{sv}}`).

Pure: plain Python values; `impctl.backends.nm` wraps them in Variants with
the signatures of `SIGNATURES`. The profiles are for AddAndActivateConnection2
with persist=volatile: never autoconnect, never written to disk.

Which kind of profile is made depends on the NM device type, not on the
impctl class: the lab's veths play wifi or cell through a [classes] override
and must get ethernet settings. A wificonfig for a device that is not WiFi
hardware is refused (ValidationError), since NM has nothing to associate.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from impctl.model.errors import ValidationError
from impctl.model.inventory import ETHERNET_TYPES, MODEM_TYPES, WIFI_TYPES
from impctl.model.nic import Nic, Secret
from impctl.model.record import record

Settings = dict[str, dict[str, Any]]

PROFILE_PREFIX = "impctl-"

SIGNATURES: dict[tuple[str, str], str] = {
    ("connection", "id"): "s",
    ("connection", "uuid"): "s",
    ("connection", "type"): "s",
    ("connection", "interface-name"): "s",
    ("connection", "autoconnect"): "b",
    ("802-3-ethernet", "auto-negotiate"): "b",
    ("802-11-wireless", "ssid"): "ay",
    ("802-11-wireless", "mode"): "s",
    ("802-11-wireless", "security"): "s",
    ("802-11-wireless-security", "key-mgmt"): "s",
    ("802-11-wireless-security", "psk"): "s",
    ("gsm", "apn"): "s",
    ("gsm", "username"): "s",
    ("gsm", "password"): "s",
    ("gsm", "auto-config"): "b",
    ("ipv4", "method"): "s",
    ("ipv4", "address-data"): "aa{sv}",
    ("ipv4", "gateway"): "s",
    ("ipv4", "dns"): "au",
    ("ipv4", "ignore-auto-dns"): "b",
    ("ipv4", "route-metric"): "x",
    ("ipv4", "dns-priority"): "i",
    ("ipv4", "may-fail"): "b",
    ("ipv4", "dhcp-timeout"): "i",
    ("ipv6", "method"): "s",
}


# Members of the a{sv} dicts inside list settings.
ITEM_SIGNATURES: dict[tuple[str, str], dict[str, str]] = {
    ("ipv4", "address-data"): {"address": "s", "prefix": "u"},
}


def signature_of(group: str, key: str) -> str:
    try:
        return SIGNATURES[(group, key)]
    except KeyError:
        raise KeyError(f"no D-Bus signature known for NM setting {group}.{key}") from None


@record
class DeviceFacts:
    """What the settings depend on about the target NM device."""

    ifname: str
    nm_type: int


def dns_to_nm(address: str) -> int:
    """NM's ipv4.dns element: in_addr_t (network byte order) as a native uint32."""
    value: int = struct.unpack("=I", socket.inet_aton(address))[0]
    return value


def _plain(secret: Secret | None, path: str) -> str | None:
    if secret is None or secret.is_empty:
        return None
    if secret.plain is None:
        # The use case decrypts with the gateway key before building settings.
        raise ValidationError(path, "is still encrypted; it must be decrypted with the gateway key first")
    return secret.plain


def _ipv4(nic: Nic, route_metric: int | None, dhcp_timeout_s: int | None) -> dict[str, Any]:
    ipv4: dict[str, Any] = {"may-fail": False}  # the cloud is reached over IPv4: it must come up
    if nic.staticconfig is not None:
        s = nic.staticconfig
        ipv4.update(
            {
                "method": "manual",
                "address-data": [{"address": s.ip, "prefix": s.prefix}],
                "gateway": s.gateway,
                "dns": [dns_to_nm(d) for d in s.dns],
                "ignore-auto-dns": True,
            }
        )
    else:
        ipv4["method"] = "auto"
        if dhcp_timeout_s is not None:
            ipv4["dhcp-timeout"] = max(1, int(dhcp_timeout_s))
    if route_metric is not None:
        ipv4["route-metric"] = int(route_metric)
    return ipv4


def profile_id(ifname: str) -> str:
    return f"{PROFILE_PREFIX}{ifname}"


def nm_settings(
    nic: Nic,
    device: DeviceFacts,
    *,
    uuid: str,
    route_metric: int | None = None,
    dhcp_timeout_s: int | None = None,
) -> Settings:
    """The NM settings that connect `device` as `nic` says.

    Secrets in `nic` must be plain (decrypted). Raises ValidationError when
    the NIC cannot apply to this device (wificonfig on non-WiFi hardware,
    staticconfig on a modem, WiFi without any wificonfig).
    """
    connection: dict[str, Any] = {
        "id": profile_id(device.ifname),
        "uuid": uuid,
        "autoconnect": False,
    }
    settings: Settings = {"connection": connection}
    if device.nm_type in WIFI_TYPES:
        if nic.wificonfig is None:
            raise ValidationError(
                "wificonfig", f"{device.ifname} is a WiFi interface: an SSID is needed (impctl config wifi)"
            )
        w = nic.wificonfig
        connection["type"] = "802-11-wireless"
        connection["interface-name"] = device.ifname
        wireless: dict[str, Any] = {"ssid": w.ssid.encode("utf-8"), "mode": "infrastructure"}
        psk = _plain(w.key, "wificonfig.key")
        if psk is not None:
            settings["802-11-wireless-security"] = {"key-mgmt": "wpa-psk", "psk": psk}
        settings["802-11-wireless"] = wireless
    elif device.nm_type in MODEM_TYPES:
        if nic.wificonfig is not None:
            raise ValidationError("wificonfig", f"{device.ifname} is a modem, not WiFi hardware")
        if nic.staticconfig is not None:
            raise ValidationError("staticconfig", "does not apply to cellular interfaces")
        connection["type"] = "gsm"
        # A modem's NM Interface is its control port; the device path given
        # to AddAndActivate already designates it, so no interface-name.
        gsm: dict[str, Any] = {}
        cell = nic.cellconfig
        if cell is not None and cell.apn:
            gsm["apn"] = cell.apn
        else:
            gsm["auto-config"] = True  # let NM pick the APN from the mobile broadband database
        if cell is not None and cell.username:
            gsm["username"] = cell.username
        password = _plain(cell.password if cell else None, "cellconfig.password")
        if password is not None:
            gsm["password"] = password
        settings["gsm"] = gsm
    elif device.nm_type in ETHERNET_TYPES:
        if nic.wificonfig is not None:
            raise ValidationError(
                "wificonfig",
                f"{device.ifname} is not WiFi hardware (NM device type {device.nm_type});"
                " send a NIC without wificonfig to use it with its own link",
            )
        if nic.cellconfig is not None:
            raise ValidationError("cellconfig", f"{device.ifname} is not a modem")
        connection["type"] = "802-3-ethernet"
        connection["interface-name"] = device.ifname
        settings["802-3-ethernet"] = {}
    else:
        raise ValidationError(
            "interface", f"{device.ifname} has an NM device type impctl cannot configure ({device.nm_type})"
        )
    settings["ipv4"] = _ipv4(nic, route_metric, dhcp_timeout_s)
    settings["ipv6"] = {"method": "ignore"}  # impOS configures IPv4 only; leave IPv6 to the kernel
    return settings


def with_priority(settings: Settings, route_metric: int, dns_priority: int) -> Settings:
    """The settings asking for this IPv4 route metric and DNS priority from activation on.

    For a modem, which must never be Reapplied: in NM 1.42 a Device.Reapply on a
    connected modem removes the bearer's address and default route from its net
    port while NM and ModemManager still say connected (see LAB-NOTES).
    """
    return {**settings, "ipv4": {**settings.get("ipv4", {}), "route-metric": int(route_metric),
                                 "dns-priority": int(dns_priority)}}


def redacted(settings: Settings) -> Settings:
    """The settings with every secret masked, for logs and debug output."""
    out: Settings = {}
    for group, values in settings.items():
        out[group] = {k: ("<hidden>" if k in ("psk", "password") else v) for k, v in values.items()}
    return out
