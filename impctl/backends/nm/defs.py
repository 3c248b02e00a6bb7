"""NetworkManager and ModemManager on D-Bus: names, paths, interfaces, flags, and the
properties impctl reads, one TypedDict per interface (the shape `GetAll` returns
after the Variants are unwrapped).

Every TypedDict is total=False: an older daemon may lack a property, a newer
one may add some, and a vanishing object reads as {}. Enum-valued properties
arrive as raw ints; the readers convert them to the tolerant enums of
`impctl.model.inventory` at the edge.
"""

from __future__ import annotations

from enum import IntFlag
from typing import Any, TypedDict, TypeGuard

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
NM_DEVICE = f"{NM}.Device"
NM_WIRED = f"{NM}.Device.Wired"
NM_WIRELESS = f"{NM}.Device.Wireless"
NM_AP = f"{NM}.AccessPoint"
NM_ACTIVE = f"{NM}.Connection.Active"
NM_IP4 = f"{NM}.IP4Config"
NM_IP6 = f"{NM}.IP6Config"
NM_SETTINGS = f"{NM}.Settings"
NM_SETTINGS_PATH = f"{NM_PATH}/Settings"
NM_SETTINGS_CONN = f"{NM}.Settings.Connection"
NM_CHECKPOINT = f"{NM}.Checkpoint"
MM = "org.freedesktop.ModemManager1"
MM_PATH = "/org/freedesktop/ModemManager1"
MM_MODEM = f"{MM}.Modem"
MM_3GPP = f"{MM}.Modem.Modem3gpp"
MM_BEARER = f"{MM}.Bearer"
PROPS = "org.freedesktop.DBus.Properties"
OBJMGR = "org.freedesktop.DBus.ObjectManager"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"

SERVICE_NAMES = {NM: "NetworkManager", MM: "ModemManager"}

NO_PATH = "/"  # D-Bus's "no object" for an 'o' property

# MMModemLock: NONE means no PIN/PUK is needed; UNKNOWN: MM has not asked the SIM yet.
MM_LOCK_UNKNOWN, MM_LOCK_NONE = 0, 1


class CheckpointFlags(IntFlag):
    """NMCheckpointCreateFlags."""

    NONE = 0
    DESTROY_ALL = 0x01
    DELETE_NEW_CONNECTIONS = 0x02
    DISCONNECT_NEW_DEVICES = 0x04
    ALLOW_OVERLAPPING = 0x08


class SettingsUpdate2Flags(IntFlag):
    """NMSettingsUpdate2Flags (Settings.Connection.Update2)."""

    NONE = 0
    TO_DISK = 0x01
    IN_MEMORY = 0x02
    IN_MEMORY_DETACHED = 0x04
    IN_MEMORY_ONLY = 0x08
    VOLATILE = 0x10
    BLOCK_AUTOCONNECT = 0x20
    NO_REAPPLY = 0x40


class NMProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager"""

    PrimaryConnection: str
    Checkpoints: list[str]


class CheckpointProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.Checkpoint"""

    Devices: list[str]
    Created: int  # CLOCK_BOOTTIME, ms
    RollbackTimeout: int  # s; 0: never by itself


class DeviceProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.Device"""

    Interface: str
    IpInterface: str
    Driver: str
    Udi: str
    DeviceType: int  # NMDeviceType
    State: int  # NMDeviceState
    StateReason: list[int]  # (NMDeviceState, NMDeviceStateReason)
    Managed: bool
    Ip4Config: str
    Ip6Config: str
    ActiveConnection: str


class WiredProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.Device.Wired"""

    Carrier: bool


class WirelessProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.Device.Wireless"""

    ActiveAccessPoint: str


class AccessPointProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.AccessPoint"""

    Ssid: bytes | list[int]
    Strength: int


class ActiveConnectionProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.Connection.Active"""

    Id: str
    Uuid: str
    State: int  # NMActiveConnectionState
    Connection: str
    Devices: list[str]


class IP4ConfigProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.IP4Config"""

    AddressData: list[dict[str, Any]]  # {"address": str, "prefix": int}
    Gateway: str
    NameserverData: list[dict[str, Any]]  # {"address": str}
    Nameservers: list[int]  # legacy: in_addr_t, network byte order
    RouteData: list[dict[str, Any]]  # {"dest", "prefix", "metric", ...}


class IP6ConfigProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.IP6Config"""

    AddressData: list[dict[str, Any]]  # {"address": str, "prefix": int}
    Gateway: str
    Nameservers: list[bytes]  # 16 bytes each


class SettingsConnectionProps(TypedDict, total=False):
    """org.freedesktop.NetworkManager.Settings.Connection"""

    Unsaved: bool
    Filename: str


class ModemProps(TypedDict, total=False):
    """org.freedesktop.ModemManager1.Modem"""

    State: int  # MMModemState
    StateFailedReason: int  # MMModemStateFailedReason
    Sim: str
    Bearers: list[str]
    SignalQuality: list[Any]  # (percent, recent)
    UnlockRequired: int  # MMModemLock
    PrimaryPort: str
    AccessTechnologies: int  # MMModemAccessTechnology bits


class Modem3gppProps(TypedDict, total=False):
    """org.freedesktop.ModemManager1.Modem.Modem3gpp"""

    RegistrationState: int  # MMModem3gppRegistrationState
    OperatorName: str
    OperatorCode: str


class BearerProps(TypedDict, total=False):
    """org.freedesktop.ModemManager1.Bearer"""

    Connected: bool
    Interface: str  # the IP interface (a net port such as usb0, or ppp0)
    Ip4Config: dict[str, Any]  # {"method": u, "address": s, "prefix": u, "gateway": s, "dns1": s}
    ConnectionError: list[str] | tuple[str, str]  # (D-Bus error name, message); ("", "") when none
    Stats: dict[str, Any]  # {"attempts": u, "failed-attempts": u, "duration": u, ...}


def is_path(value: str | None) -> TypeGuard[str]:
    """An object path that names an object (not empty, not "/")."""
    return bool(value) and value != NO_PATH
