"""What impctl knows about the gateway's interfaces, as read from NM, MM and netlink.

Pure data: backends fill these in; use cases and the CLI read them. Enum
values from a newer NetworkManager/ModemManager must never crash impctl: the
NM/MM enums are `TolerantIntEnum`s, where a value impctl does not know
becomes a pseudo-member named `UNKNOWN_<n>` (still equal to the int, still
JSON-encoded as the int) instead of raising ValueError. Backends convert the
raw ints they read at their edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field, replace
from enum import IntEnum
from typing import Any

from impctl.model.config import LAN_CLASS, Config
from impctl.model.identifiers import assign_identifiers
from impctl.model.record import record


class TolerantIntEnum(IntEnum):
    """An IntEnum where an unknown value gives a pseudo-member `UNKNOWN_<n>` instead of raising.

    The pseudo-member is made once per value and kept in the value map, so
    `E(999) is E(999)`; it compares, hashes and JSON-encodes as the int.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)


class NMDeviceType(TolerantIntEnum):
    UNKNOWN = 0
    ETHERNET = 1
    WIFI = 2
    BT = 5
    OLPC_MESH = 6
    WIMAX = 7
    MODEM = 8
    INFINIBAND = 9
    BOND = 10
    VLAN = 11
    ADSL = 12
    BRIDGE = 13
    GENERIC = 14
    TEAM = 15
    TUN = 16
    IP_TUNNEL = 17
    MACVLAN = 18
    VXLAN = 19
    VETH = 20
    MACSEC = 21
    DUMMY = 22
    PPP = 23
    OVS_INTERFACE = 24
    OVS_PORT = 25
    OVS_BRIDGE = 26
    WPAN = 27
    LOWPAN6 = 28
    WIREGUARD = 29
    WIFI_P2P = 30
    VRF = 31
    LOOPBACK = 32
    HSR = 33


# NM device types that take an 802-3-ethernet profile (the lab's veths play wifi or cell).
ETHERNET_TYPES = frozenset({int(NMDeviceType.ETHERNET), int(NMDeviceType.VETH), int(NMDeviceType.MACVLAN)})
WIFI_TYPES = frozenset({int(NMDeviceType.WIFI)})
MODEM_TYPES = frozenset({int(NMDeviceType.MODEM)})


class NMDeviceState(TolerantIntEnum):
    UNKNOWN = 0
    UNMANAGED = 10
    UNAVAILABLE = 20
    DISCONNECTED = 30
    PREPARE = 40
    CONFIG = 50
    NEED_AUTH = 60
    IP_CONFIG = 70
    IP_CHECK = 80
    SECONDARIES = 90
    ACTIVATED = 100
    DEACTIVATING = 110
    FAILED = 120


class MMModemState(TolerantIntEnum):
    FAILED = -1
    UNKNOWN = 0
    INITIALIZING = 1
    LOCKED = 2
    DISABLED = 3
    DISABLING = 4
    ENABLING = 5
    ENABLED = 6
    SEARCHING = 7
    REGISTERED = 8
    DISCONNECTING = 9
    CONNECTING = 10
    CONNECTED = 11


class NMActiveConnectionState(TolerantIntEnum):
    UNKNOWN = 0
    ACTIVATING = 1
    ACTIVATED = 2
    DEACTIVATING = 3
    DEACTIVATED = 4


class MMRegistrationState(TolerantIntEnum):
    """MMModem3gppRegistrationState."""

    IDLE = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5
    HOME_SMS_ONLY = 6
    ROAMING_SMS_ONLY = 7
    EMERGENCY_ONLY = 8
    HOME_CSFB_NOT_PREFERRED = 9
    ROAMING_CSFB_NOT_PREFERRED = 10
    ATTACHED_RLOS = 11


def name_of(enum: type[IntEnum], value: int) -> str:
    """The member name of `value`; `UNKNOWN_<n>` also for an enum that is not tolerant."""
    try:
        return enum(value).name
    except ValueError:
        return f"UNKNOWN_{value}"


# NM device types that impctl treats as each class by default; lab veths play ethernet.
DEFAULT_CLASS_OF_TYPE = {
    NMDeviceType.ETHERNET: "ethernet",
    NMDeviceType.VETH: "ethernet",
    NMDeviceType.MACVLAN: "ethernet",
    NMDeviceType.WIFI: "wifi",
    NMDeviceType.MODEM: "cell",
}


# MMModemStateFailedReason (ModemManager 1.20) as mmcli names them.
_FAILED_REASONS = {0: "none", 1: "unknown", 2: "sim-missing", 3: "sim-error", 4: "unknown-capabilities",
                   5: "esim-without-profiles"}
# MMModemAccessTechnology bits as mmcli names them.
_ACCESS_TECHNOLOGIES = ("pots", "gsm", "gsm-compact", "gprs", "edge", "umts", "hsdpa", "hsupa", "hspa",
                        "hspa-plus", "1xrtt", "evdo0", "evdoa", "evdob", "lte", "5gnr", "lte-cat-m",
                        "lte-nb-iot")


def failed_reason_name(value: int) -> str:
    return _FAILED_REASONS.get(value, f"unknown-{value}")


def access_technology_names(mask: int) -> tuple[str, ...]:
    """The names of the bits set in an MMModemAccessTechnology mask; unknown bits as `bit<n>`."""
    return tuple(_ACCESS_TECHNOLOGIES[i] if i < len(_ACCESS_TECHNOLOGIES) else f"bit{i}"
                 for i in range(mask.bit_length()) if mask >> i & 1)


@record
class ModemInfo:
    path: str
    state: MMModemState
    failed_reason: int | None = None  # MMModemStateFailedReason
    sim_present: bool = False
    sim_locked: bool = False  # unlock required (PIN/PUK)
    registration: MMRegistrationState | None = None
    operator: str | None = None
    signal_quality: int | None = None  # percent
    bearer_connected: bool = False
    primary_port: str | None = None
    access_technologies: tuple[str, ...] = ()  # names, see access_technology_names
    # The modem's bearer (the connected one, else the last with a connection error):
    bearer_interface: str | None = None  # its IP interface, e.g. the net port usb0
    bearer_address: str | None = None  # "198.18.64.2/24", from MM's Ip4Config
    # MM's Bearer.ConnectionError (MM >= 1.18): a D-Bus error name and its message, e.g.
    # org.freedesktop.ModemManager1.Error.MobileEquipment.GprsUnknown for +CME ERROR: 148.
    bearer_error: str | None = None
    bearer_error_text: str | None = None
    bearer_attempts: int = 0  # connection attempts of its bearers (MM's Bearer.Stats), to date an error

    @property
    def failed_reason_name(self) -> str | None:
        return failed_reason_name(self.failed_reason) if self.failed_reason is not None else None

    @property
    def bearer_error_short(self) -> str | None:
        """The connection error's name without ModemManager's D-Bus prefix."""
        if not self.bearer_error:
            return None
        return self.bearer_error.removeprefix("org.freedesktop.ModemManager1.Error.")

    @property
    def bearer_error_description(self) -> str | None:
        """The connection error as reasons show it: its short name, then MM's message."""
        short = self.bearer_error_short
        if short is None:
            return None
        return short + (f" ({self.bearer_error_text})" if self.bearer_error_text else "")

    @property
    def bearer_place(self) -> str:
        """Where the bearer's IP goes, as reasons show it: " on usb0 (198.18.64.2/24)", or ""."""
        where = f" on {self.bearer_interface}" if self.bearer_interface else ""
        return where + (f" ({self.bearer_address})" if self.bearer_address else "")


@record
class DeviceInfo:
    ifname: str  # for a modem: its data/control port as NM names it
    nm_type: NMDeviceType
    nm_state: NMDeviceState
    iface_class: str  # ethernet | wifi | cell, after config overrides
    identifier: str = ""  # eth0 / wl0 / cell0 ... filled by assign_identifiers
    nm_path: str = ""
    managed: bool = True
    carrier: bool | None = None
    addresses: tuple[str, ...] = ()  # "198.18.1.50/24"
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    # NM's IP6Config: global addresses ("2001:db8:1::50/64"), default gateway, DNS servers.
    addresses6: tuple[str, ...] = ()
    gateway6: str | None = None
    dns6: tuple[str, ...] = ()
    active_profile: str | None = None  # NM connection id of the active connection
    active_path: str | None = None  # NM active connection object path
    route_metric: int | None = None
    ssid: str | None = None
    signal: int | None = None  # WiFi strength, percent
    modem: ModemInfo | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Serves a LAN (see `is_lan_port`): never an uplink, so no identifier, no probe, no failover.
    lan: bool = False

    @property
    def nm_state_name(self) -> str:
        return NMDeviceState(self.nm_state).name

    @property
    def nm_type_name(self) -> str:
        return NMDeviceType(self.nm_type).name

    @property
    def connected(self) -> bool:
        return self.nm_state == NMDeviceState.ACTIVATED


# Order of classes in listings: the impOS default order.
_CLASS_ORDER = ("ethernet", "wifi", "cell")


def class_of_device(dev: DeviceInfo, overrides: dict[str, str]) -> str | None:
    """The impctl class of an NM device: the config's [classes] override, else its NM type's."""
    if dev.ifname in overrides:
        return overrides[dev.ifname]
    # A device type from a newer NM (UNKNOWN_<n>) is not an uplink impctl knows.
    return DEFAULT_CLASS_OF_TYPE.get(NMDeviceType(dev.nm_type))


# The IP method of a profile by which NM serves a LAN: its own DHCP/DNS (dnsmasq) and NAT.
LAN_METHOD = "shared"


def is_lan_port(ipv4_method: str | None, ipv6_method: str | None) -> bool:
    """Whether a device whose applied connection has these IP methods serves a LAN.

    A port NM shares the gateway's connectivity on (`ipv4.method` or
    `ipv6.method` `shared`) hands out addresses and NATs; it is where the
    gateway's clients are, never a way out, whatever its device type.
    """
    return LAN_METHOD in (ipv4_method, ipv6_method)


@record
class Interfaces:
    """The gateway's interfaces: uplinks (with identifiers, in listing order) and LAN ports."""

    uplinks: list[DeviceInfo]
    lan: list[DeviceInfo]


def build_interfaces(devices: Iterable[DeviceInfo], config: Config) -> Interfaces:
    """Managed ethernet/wifi/cell devices with their class, split into uplinks and LAN ports.

    `devices` come from the backend with any `iface_class`/`identifier`;
    the class comes from the config's [classes] (else the NM device type),
    the identifier from `assign_identifiers` with the config's pins, for
    uplinks only: a LAN port must not take `eth1` from the next real uplink.
    """
    classed: list[DeviceInfo] = []
    lan: list[DeviceInfo] = []
    for dev in devices:
        cls = class_of_device(dev, config.classes)
        if cls is None or not dev.managed or not dev.ifname:
            continue
        if cls == LAN_CLASS:
            # Named a LAN port in the config: one even while unplugged and its shared profile down.
            own = DEFAULT_CLASS_OF_TYPE.get(NMDeviceType(dev.nm_type)) or "ethernet"
            lan.append(replace(dev, iface_class=own, identifier="", lan=True))
            continue
        (lan if dev.lan else classed).append(replace(dev, iface_class=cls, identifier=""))
    idents = assign_identifiers(((d.ifname, d.iface_class) for d in classed), config.identifiers)
    out = [replace(d, identifier=idents.get(d.ifname, "")) for d in classed]
    uplinks = sorted(out, key=lambda d: (_CLASS_ORDER.index(d.iface_class), _ident_index(d.identifier), d.ifname))
    return Interfaces(uplinks, sorted(lan, key=lambda d: d.ifname))


def build_inventory(devices: Iterable[DeviceInfo], config: Config) -> list[DeviceInfo]:
    """The uplinks of `build_interfaces`: what probe, connect and the daemon work with."""
    return build_interfaces(devices, config).uplinks


def _ident_index(identifier: str) -> int:
    digits = "".join(ch for ch in identifier if ch.isdigit())
    return int(digits) if digits else 0
