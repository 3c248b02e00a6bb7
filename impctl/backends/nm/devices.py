"""Reading NetworkManager's devices and ModemManager's modems into `impctl.model.inventory`.

Raw property ints become the model's tolerant enums here, so a state a newer
NM or MM adds reads as `UNKNOWN_<n>` instead of failing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from impctl.backends.nm.bus import DBusCallError, SystemBus, unwrap
from impctl.backends.nm.defs import (
    MM,
    MM_3GPP,
    MM_BEARER,
    MM_LOCK_NONE,
    MM_LOCK_UNKNOWN,
    MM_MODEM,
    MM_PATH,
    NM,
    NM_ACTIVE,
    NM_AP,
    NM_DEVICE,
    NM_IP4,
    NM_IP6,
    NM_PATH,
    NM_WIRED,
    NM_WIRELESS,
    OBJMGR,
    AccessPointProps,
    ActiveConnectionProps,
    BearerProps,
    DeviceProps,
    IP4ConfigProps,
    IP6ConfigProps,
    Modem3gppProps,
    ModemProps,
    WiredProps,
    WirelessProps,
    is_path,
)
from impctl.model.errors import NoSuchInterface, PermissionDenied, ServiceUnavailable
from impctl.model.inventory import (
    DEFAULT_CLASS_OF_TYPE,
    ETHERNET_TYPES,
    WIFI_TYPES,
    DeviceInfo,
    Interfaces,
    MMModemState,
    MMRegistrationState,
    ModemInfo,
    NMDeviceState,
    NMDeviceType,
    access_technology_names,
    build_interfaces,
    is_lan_port,
)

if TYPE_CHECKING:
    from impctl.model.config import Config

# ---------------------------------------------------------------------------
# NetworkManager


def _ip4_from_nameservers(values: list[int]) -> list[str]:
    # Legacy 'Nameservers' (au): in_addr_t in network byte order, marshalled natively.
    return [socket.inet_ntoa(struct.pack("=I", v)) for v in values]


def _ipv4_facts(ip4: IP4ConfigProps) -> tuple[tuple[str, ...], str | None, tuple[str, ...], int | None]:
    addresses = tuple(
        f"{a['address']}/{a['prefix']}" for a in ip4.get("AddressData", []) if "address" in a and "prefix" in a
    )
    gateway = ip4.get("Gateway") or None
    dns_data = ip4.get("NameserverData")
    if dns_data:
        dns = tuple(d["address"] for d in dns_data if "address" in d)
    else:
        dns = tuple(_ip4_from_nameservers(ip4.get("Nameservers", [])))
    metric: int | None = None
    for route in ip4.get("RouteData", []):
        if route.get("dest") == "0.0.0.0" and route.get("prefix") == 0 and "metric" in route:
            metric = int(route["metric"])
            break
    return addresses, gateway, dns, metric


def _ipv6_facts(ip6: IP6ConfigProps) -> tuple[tuple[str, ...], str | None, tuple[str, ...]]:
    """Global addresses, default gateway and DNS servers of NM's IP6Config (link-local
    addresses left out: every IPv6-enabled link has one, and none reaches the cloud)."""
    addresses = tuple(
        f"{a['address']}/{a['prefix']}" for a in ip6.get("AddressData", [])
        if "address" in a and "prefix" in a and not str(a["address"]).lower().startswith("fe80:")
    )
    dns = tuple(socket.inet_ntop(socket.AF_INET6, bytes(raw)) for raw in ip6.get("Nameservers", [])
                if len(bytes(raw)) == 16)
    return addresses, ip6.get("Gateway") or None, dns


async def _wifi_facts(bus: SystemBus, wireless: WirelessProps) -> tuple[str | None, int | None]:
    ap_path = wireless.get("ActiveAccessPoint")
    if not is_path(ap_path):
        return None, None
    ap = cast(AccessPointProps, await bus.get_all_or_empty(NM, ap_path, NM_AP))
    raw_ssid = ap.get("Ssid")
    ssid = bytes(raw_ssid).decode("utf-8", "replace") if raw_ssid is not None else None
    return ssid, int(ap["Strength"]) if "Strength" in ap else None


def _extra(props: DeviceProps, active: ActiveConnectionProps) -> dict[str, str]:
    extra: dict[str, str] = {}
    for key, value in (("udi", props.get("Udi")), ("ip_ifname", props.get("IpInterface")),
                       ("driver", props.get("Driver")), ("profile_path", active.get("Connection")),
                       ("profile_uuid", active.get("Uuid"))):
        if value:
            extra[key] = str(value)
    if "State" in active:
        extra["active_state"] = str(int(active["State"]))
    return extra


async def read_device(bus: SystemBus, path: str, classes: Mapping[str, str] | None = None) -> DeviceInfo | None:
    """One NM device with its IPv4 config, active connection and WiFi facts; None if it vanished.

    With `classes` (the config's [classes]), a device impctl will not use (unmanaged, or of
    a type without a class, such as `lo`) is read no further than its own properties.
    """
    props = cast(DeviceProps, await bus.get_all_or_empty(NM, path, NM_DEVICE))
    if not props:
        return None  # vanished between GetDevices and now
    nm_type = int(props.get("DeviceType", 0))
    ifname = str(props.get("Interface", ""))
    used = classes is None or (bool(props.get("Managed")) and (ifname in classes or _has_class(nm_type)))
    active_path = props.get("ActiveConnection") if used else None
    # Only the interface the device type has: asking a WiFi device for its Wired
    # properties costs an error reply, and every message costs `status` start-up time.
    ip4, ip6, active, wired, wireless = await asyncio.gather(
        bus.get_all_or_empty(NM, props.get("Ip4Config") if used else None, NM_IP4),
        bus.get_all_or_empty(NM, props.get("Ip6Config") if used else None, NM_IP6),
        bus.get_all_or_empty(NM, active_path, NM_ACTIVE),
        bus.get_all_or_empty(NM, path if used and nm_type in ETHERNET_TYPES else None, NM_WIRED),
        bus.get_all_or_empty(NM, path if used and nm_type in WIFI_TYPES else None, NM_WIRELESS),
    )
    active_props = cast(ActiveConnectionProps, active)
    addresses, gateway, dns, metric = _ipv4_facts(cast(IP4ConfigProps, ip4))
    addresses6, gateway6, dns6 = _ipv6_facts(cast(IP6ConfigProps, ip6))
    # A device with a default route is a way out whatever its profile says; only the
    # others (a LAN port has none) cost the extra read of their IP methods.
    lan = is_path(active_path) and gateway is None and is_lan_port(*await _applied_methods(bus, path))
    ssid, signal = await _wifi_facts(bus, cast(WirelessProps, wireless))
    carrier = cast(WiredProps, wired).get("Carrier")
    return DeviceInfo(
        ifname=ifname,
        nm_type=NMDeviceType(nm_type),
        nm_state=NMDeviceState(int(props.get("State", 0))),
        iface_class="",
        nm_path=path,
        managed=bool(props.get("Managed", False)),
        carrier=bool(carrier) if carrier is not None else None,
        addresses=addresses,
        gateway=gateway,
        dns=dns,
        addresses6=addresses6,
        gateway6=gateway6,
        dns6=dns6,
        active_profile=active_props.get("Id") or None,
        active_path=active_path if is_path(active_path) else None,
        route_metric=metric,
        ssid=ssid,
        signal=signal,
        extra=_extra(props, active_props),
        lan=lan,
    )


async def _applied_methods(bus: SystemBus, path: str) -> tuple[str | None, str | None]:
    """ipv4.method and ipv6.method of what NM has applied on the device (None: unknown)."""
    try:
        (applied, _version) = await bus.call(NM, path, NM_DEVICE, "GetAppliedConnection", "u", [0],
                                             what="reading the applied connection")
    except (NoSuchInterface, DBusCallError, PermissionDenied):
        # Deactivated (or gone) since its properties were read, or not ours to see.
        return None, None
    settings = unwrap(applied)
    return settings.get("ipv4", {}).get("method"), settings.get("ipv6", {}).get("method")


def _has_class(nm_type: int) -> bool:
    return NMDeviceType(nm_type) in DEFAULT_CLASS_OF_TYPE


async def with_ipv6_methods(bus: SystemBus, found: list[DeviceInfo]) -> list[DeviceInfo]:
    """The devices, each active one with its applied ipv6.method in extra["ipv6_method"],
    but those where NM already shows IPv6 in use (a global address or a default route):
    there the probe counts IPv6 as configured whatever the method, and the read (a
    whole applied connection to unmarshal, ~1 ms of CPU each) would be the dual-stack
    probe's only extra D-Bus work."""

    async def one(dev: DeviceInfo) -> DeviceInfo:
        if not dev.active_path or not dev.nm_path or dev.addresses6 or dev.gateway6:
            return dev
        _v4, v6 = await _applied_methods(bus, dev.nm_path)
        return dataclasses.replace(dev, extra={**dev.extra, "ipv6_method": v6}) if v6 else dev

    return list(await asyncio.gather(*(one(d) for d in found)))


async def _read_nm_devices(bus: SystemBus, classes: Mapping[str, str]) -> list[DeviceInfo]:
    (paths,) = await bus.call(NM, NM_PATH, NM, "GetDevices", what="listing NetworkManager's devices")
    devices = await asyncio.gather(*(read_device(bus, p, classes) for p in paths))
    return [d for d in devices if d is not None]


async def primary_device_path(bus: SystemBus) -> str | None:
    """The NM device of the primary connection (the one holding the default route)."""
    primary = await bus.get_or_none(NM, NM_PATH, NM, "PrimaryConnection")
    devices = await bus.get_or_none(NM, primary, NM_ACTIVE, "Devices")
    return str(devices[0]) if devices else None


async def device_ifname(bus: SystemBus, path: str) -> str | None:
    name = await bus.get_or_none(NM, path, NM_DEVICE, "Interface")
    return str(name) if name else None


async def device_state(bus: SystemBus, path: str) -> NMDeviceState:
    """The device's state now (DISCONNECTED if it is gone)."""
    state = await bus.get_or_none(NM, path, NM_DEVICE, "State")
    return NMDeviceState(int(state) if state is not None else NMDeviceState.DISCONNECTED)


# ---------------------------------------------------------------------------
# ModemManager


async def _read_modems(bus: SystemBus) -> dict[str, ModemInfo]:
    """modem object path -> ModemInfo; {} when ModemManager is not running."""
    try:
        (objects,) = await bus.call(MM, MM_PATH, OBJMGR, "GetManagedObjects", what="listing ModemManager's modems")
    except ServiceUnavailable:
        return {}
    modems: dict[str, ModemInfo] = {}
    for path, ifaces in unwrap(objects).items():
        modem = ifaces.get(MM_MODEM)
        if modem is None:
            continue
        modems[path] = await _modem_info(bus, path, cast(ModemProps, modem),
                                         cast(Modem3gppProps, ifaces.get(MM_3GPP, {})))
    return modems


async def _modem_info(bus: SystemBus, path: str, modem: ModemProps, gpp: Modem3gppProps) -> ModemInfo:
    bearer_props = await asyncio.gather(
        *(bus.get_all_or_empty(MM, b, MM_BEARER) for b in modem.get("Bearers", []))
    )
    quality: Any = modem.get("SignalQuality")
    unlock = int(modem.get("UnlockRequired", MM_LOCK_UNKNOWN))
    operator = gpp.get("OperatorName") or gpp.get("OperatorCode") or None
    return ModemInfo(
        path=path,
        state=MMModemState(int(modem.get("State", 0))),
        failed_reason=int(modem["StateFailedReason"]) if "StateFailedReason" in modem else None,
        sim_present=is_path(modem.get("Sim")),
        # UNKNOWN (0) is not a lock: MM reports it before it has asked the SIM.
        sim_locked=unlock not in (MM_LOCK_UNKNOWN, MM_LOCK_NONE),
        registration=(MMRegistrationState(int(gpp["RegistrationState"])) if "RegistrationState" in gpp
                      else None),
        operator=str(operator) if operator else None,
        signal_quality=int(quality[0]) if isinstance(quality, list | tuple) and quality else None,
        bearer_connected=any(bool(cast(BearerProps, b).get("Connected")) for b in bearer_props),
        primary_port=modem.get("PrimaryPort") or None,
        access_technologies=access_technology_names(int(modem.get("AccessTechnologies", 0))),
        **_bearer_facts([cast(BearerProps, b) for b in bearer_props]),
    )


def _bearer_facts(bearers: list[BearerProps]) -> dict[str, Any]:
    """The IP interface, address and connection error of the bearer that matters: the
    connected one, else the first with a connection error (why the last attempt failed)."""
    connected = [b for b in bearers if b.get("Connected")]
    failed = [b for b in bearers if _connection_error(b)[0]]
    chosen = (connected or failed or bearers or [cast(BearerProps, {})])[0]
    ip4 = chosen.get("Ip4Config") or {}
    address = str(ip4["address"]) if ip4.get("address") else None
    if address and "prefix" in ip4:
        address = f"{address}/{int(ip4['prefix'])}"
    error, text = _connection_error(chosen)
    return {
        "bearer_attempts": sum(int((b.get("Stats") or {}).get("attempts", 0)) for b in bearers),
        "bearer_interface": (str(chosen["Interface"]) or None) if chosen.get("Interface") else None,
        "bearer_address": address if chosen.get("Connected") else None,
        "bearer_error": error or None,
        "bearer_error_text": text or None,
    }


def _connection_error(bearer: BearerProps) -> tuple[str, str]:
    value = bearer.get("ConnectionError")
    if isinstance(value, list | tuple) and len(value) == 2:
        return str(value[0]), str(value[1])
    return "", ""


def _attach_modems(devices: list[DeviceInfo], modems: Mapping[str, ModemInfo]) -> list[DeviceInfo]:
    # NM's modem devices carry the MM modem object path as their Udi.
    out = []
    for dev in devices:
        modem = modems.get(dev.extra.get("udi", ""))
        out.append(dataclasses.replace(dev, modem=modem) if modem else dev)
    return out


async def read_devices(bus: SystemBus, config: Config) -> list[DeviceInfo]:
    """Every managed ethernet/wifi/cell uplink with its facts, classes and identifiers."""
    return (await read_interfaces(bus, config)).uplinks


async def read_interfaces(bus: SystemBus, config: Config) -> Interfaces:
    """Uplinks as `read_devices` has them, and the LAN ports NM shares on."""
    nm_devices, modems = await asyncio.gather(_read_nm_devices(bus, config.classes), _read_modems(bus))
    return build_interfaces(_attach_modems(nm_devices, modems), config)
