"""NetworkManager and ModemManager over the D-Bus system bus, with dbus-next.

The only module of impctl that imports dbus_next. It reads devices, IPv4
configs, active connections and ModemManager modems into the pure
`impctl.model.inventory` objects, activates volatile NM profiles and waits for
their outcome. Every D-Bus error is converted to a project error in
`_map_error`, here and nowhere else.

The bus honours DBUS_SYSTEM_BUS_ADDRESS (the lab runs a private system bus).
Raw message calls are used instead of introspected proxies: one round trip
per call, no Introspect, and the signatures are spelled out where they matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import BusType, MessageType
from dbus_next.errors import DBusError
from dbus_next.message import Message
from dbus_next.signature import Variant

from impctl.model import nmsettings
from impctl.model.attempt import Activation
from impctl.model.config import Config
from impctl.model.errors import (
    ImpctlError,
    NoSuchInterface,
    OperationTimeout,
    PermissionDenied,
    ServiceUnavailable,
)
from impctl.model.events import NMSignal
from impctl.model.inventory import (
    DeviceInfo,
    ModemInfo,
    NMDeviceState,
    build_inventory,
)

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
NM_DEVICE = f"{NM}.Device"
NM_WIRED = f"{NM}.Device.Wired"
NM_WIRELESS = f"{NM}.Device.Wireless"
NM_AP = f"{NM}.AccessPoint"
NM_ACTIVE = f"{NM}.Connection.Active"
NM_IP4 = f"{NM}.IP4Config"
NM_SETTINGS_CONN = f"{NM}.Settings.Connection"
MM = "org.freedesktop.ModemManager1"
MM_PATH = "/org/freedesktop/ModemManager1"
MM_MODEM = f"{MM}.Modem"
MM_3GPP = f"{MM}.Modem.Modem3gpp"
MM_SIM = f"{MM}.Sim"
MM_BEARER = f"{MM}.Bearer"
PROPS = "org.freedesktop.DBus.Properties"
OBJMGR = "org.freedesktop.DBus.ObjectManager"

DEFAULT_CALL_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3.0

# NMActiveConnectionState
AC_ACTIVATING, AC_ACTIVATED, AC_DEACTIVATING, AC_DEACTIVATED = 1, 2, 3, 4
# MMModemLock: NONE means no PIN/PUK is needed
MM_LOCK_UNKNOWN, MM_LOCK_NONE = 0, 1

_SERVICE_NAMES = {NM: "NetworkManager", MM: "ModemManager"}


# ---------------------------------------------------------------------------
# errors: one place


class DBusCallError(ImpctlError):
    """A D-Bus error reply impctl has no better name for; carries the D-Bus error name."""

    kind = "dbus_error"

    def __init__(self, message: str, error_name: str) -> None:
        super().__init__(message)
        self.error_name = error_name


def _map_error(error_name: str, text: str, destination: str, what: str) -> ImpctlError:
    service = _SERVICE_NAMES.get(destination, destination)
    if error_name in (
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    ):
        return ServiceUnavailable(
            f"{service} is not running on the system bus",
            hint=f"start {service}, or point DBUS_SYSTEM_BUS_ADDRESS at the bus it runs on",
        )
    if error_name in (
        "org.freedesktop.DBus.Error.AccessDenied",
        "org.freedesktop.NetworkManager.PermissionDenied",
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
    ) or error_name.endswith(".PermissionDenied"):
        return PermissionDenied(f"{service} refused {what}: {text}", hint="run impctl as root")
    if error_name in ("org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout"):
        return OperationTimeout(f"{service} did not answer {what} in time")
    vanished = error_name in (
        "org.freedesktop.NetworkManager.UnknownDevice",
        "org.freedesktop.DBus.Error.UnknownObject",
    ) or (
        # GDBus answers a call on a removed object with UnknownMethod "... object at path ...".
        error_name in ("org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownInterface")
        and "object at path" in text
    )
    if vanished:
        # An object path we just read vanished: a device went away mid-way.
        return NoSuchInterface(f"{what}: the interface disappeared ({text})")
    return DBusCallError(f"{service}: {what} failed: {text} ({error_name})", error_name)


def _bus_address_text() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")


# ---------------------------------------------------------------------------
# the bus


def _unwrap(value: Any) -> Any:
    """Variants (nested in dicts and lists) to plain Python values."""
    if isinstance(value, Variant):
        return _unwrap(value.value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class SystemBus:
    """One connection to the system bus with typed helpers around raw method calls."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    @classmethod
    async def connect(cls, timeout_s: float = CONNECT_TIMEOUT_S) -> SystemBus:
        where = _bus_address_text()
        try:
            async with asyncio.timeout(timeout_s):
                bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except TimeoutError:
            raise OperationTimeout(f"the D-Bus system bus ({where}) did not answer in {timeout_s:g} s") from None
        except PermissionError:
            raise PermissionDenied(f"not allowed to connect to the D-Bus system bus ({where})") from None
        except (OSError, EOFError, ValueError) as exc:
            # FileNotFoundError / ConnectionRefusedError: no dbus-daemon there;
            # dbus_next.errors.InvalidAddressError is a ValueError.
            raise ServiceUnavailable(
                f"cannot connect to the D-Bus system bus ({where}): {exc.__class__.__name__}",
                hint="is dbus-daemon running? DBUS_SYSTEM_BUS_ADDRESS selects another bus",
            ) from None
        except Exception as exc:  # dbus_next.errors.AuthError and friends
            raise ServiceUnavailable(f"cannot connect to the D-Bus system bus ({where}): {exc}") from None
        return cls(bus)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._bus.disconnect()  # type: ignore[no-untyped-call]

    async def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        what: str | None = None,
    ) -> list[Any]:
        what = what or member
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._bus.call(msg)
        except TimeoutError:
            service = _SERVICE_NAMES.get(destination, destination)
            raise OperationTimeout(f"{service} did not answer {what} in {timeout_s:g} s") from None
        except DBusError as exc:
            raise _map_error(exc.type, exc.text, destination, what) from None
        except (OSError, EOFError) as exc:
            raise ServiceUnavailable(f"lost the D-Bus system bus during {what}: {exc}") from None
        if reply is None:
            return []
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise _map_error(reply.error_name or "", text, destination, what)
        return list(reply.body)

    async def get_all(self, destination: str, path: str, interface: str) -> dict[str, Any]:
        body = await self.call(
            destination, path, PROPS, "GetAll", "s", [interface], what=f"reading {path}"
        )
        return _unwrap(body[0]) if body else {}

    async def get_all_or_empty(self, destination: str, path: str, interface: str) -> dict[str, Any]:
        """Properties of an optional interface/object: {} when it is absent or gone."""
        if not path or path == "/":
            return {}
        try:
            return await self.get_all(destination, path, interface)
        except (NoSuchInterface, DBusCallError):
            return {}

    async def add_match(self, rule: str) -> None:
        await self.call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "AddMatch", "s", [rule], what="subscribing to signals",
        )

    async def remove_match(self, rule: str) -> None:
        with contextlib.suppress(ImpctlError):
            await self.call(
                "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                "RemoveMatch", "s", [rule], what="unsubscribing",
            )

    @contextlib.asynccontextmanager
    async def signals(
        self, rules: list[str], accept: Callable[[Message], bool]
    ) -> AsyncIterator[asyncio.Queue[Message]]:
        """Subscribe to signals *before* the caller reads state, so none is lost.

        Yields a queue receiving every signal for which `accept` is true.
        """
        queue: asyncio.Queue[Message] = asyncio.Queue()

        def handler(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL and accept(msg):
                queue.put_nowait(msg)

        self._bus.add_message_handler(handler)
        added: list[str] = []
        try:
            for rule in rules:
                await self.add_match(rule)
                added.append(rule)
            yield queue
        finally:
            self._bus.remove_message_handler(handler)
            for rule in added:
                await self.remove_match(rule)


@contextlib.asynccontextmanager
async def system_bus(timeout_s: float = CONNECT_TIMEOUT_S) -> AsyncIterator[SystemBus]:
    bus = await SystemBus.connect(timeout_s)
    try:
        yield bus
    finally:
        bus.close()


# ---------------------------------------------------------------------------
# reading: NetworkManager


def _ip4_from_nameservers(values: list[int]) -> list[str]:
    # Legacy 'Nameservers' (au): in_addr_t in network byte order, marshalled natively.
    return [socket.inet_ntoa(struct.pack("=I", v)) for v in values]


def _ipv4_facts(ip4: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None, tuple[str, ...], int | None]:
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


async def _read_device(bus: SystemBus, path: str) -> DeviceInfo | None:
    props = await bus.get_all_or_empty(NM, path, NM_DEVICE)
    if not props:
        return None  # vanished between GetDevices and now
    ip4_path = props.get("Ip4Config", "/")
    active_path = props.get("ActiveConnection", "/")
    ip4, active, wired, wireless = await asyncio.gather(
        bus.get_all_or_empty(NM, ip4_path, NM_IP4),
        bus.get_all_or_empty(NM, active_path, NM_ACTIVE),
        bus.get_all_or_empty(NM, path, NM_WIRED),
        bus.get_all_or_empty(NM, path, NM_WIRELESS),
    )
    addresses, gateway, dns, metric = _ipv4_facts(ip4)
    ssid = signal = None
    ap_path = wireless.get("ActiveAccessPoint", "/")
    if ap_path and ap_path != "/":
        ap = await bus.get_all_or_empty(NM, ap_path, NM_AP)
        raw_ssid = ap.get("Ssid")
        if raw_ssid is not None:
            ssid = bytes(raw_ssid).decode("utf-8", "replace")
        if "Strength" in ap:
            signal = int(ap["Strength"])
    extra: dict[str, str] = {}
    if props.get("Udi"):
        extra["udi"] = str(props["Udi"])
    if props.get("IpInterface"):
        extra["ip_ifname"] = str(props["IpInterface"])
    if props.get("Driver"):
        extra["driver"] = str(props["Driver"])
    if active.get("Connection"):
        extra["profile_path"] = str(active["Connection"])
    if active.get("Uuid"):
        extra["profile_uuid"] = str(active["Uuid"])
    if "State" in active:
        extra["active_state"] = str(int(active["State"]))
    return DeviceInfo(
        ifname=str(props.get("Interface", "")),
        nm_type=int(props.get("DeviceType", 0)),
        nm_state=int(props.get("State", 0)),
        iface_class="",
        nm_path=path,
        managed=bool(props.get("Managed", False)),
        carrier=bool(wired["Carrier"]) if "Carrier" in wired else None,
        addresses=addresses,
        gateway=gateway,
        dns=dns,
        active_profile=active.get("Id") or None,
        active_path=active_path if active_path and active_path != "/" else None,
        route_metric=metric,
        ssid=ssid,
        signal=signal,
        extra=extra,
    )


async def _read_nm_devices(bus: SystemBus) -> list[DeviceInfo]:
    (paths,) = await bus.call(NM, NM_PATH, NM, "GetDevices", what="listing NetworkManager's devices")
    devices = await asyncio.gather(*(_read_device(bus, p) for p in paths))
    return [d for d in devices if d is not None]


# ---------------------------------------------------------------------------
# reading: ModemManager


async def _read_modems(bus: SystemBus) -> dict[str, ModemInfo]:
    """modem object path -> ModemInfo; {} when ModemManager is not running."""
    try:
        (objects,) = await bus.call(
            MM, MM_PATH, OBJMGR, "GetManagedObjects", what="listing ModemManager's modems"
        )
    except ServiceUnavailable:
        return {}
    modems: dict[str, ModemInfo] = {}
    for path, ifaces in _unwrap(objects).items():
        modem = ifaces.get(MM_MODEM)
        if modem is None:
            continue
        modems[path] = await _modem_info(bus, path, modem, ifaces.get(MM_3GPP, {}))
    return modems


async def _modem_info(
    bus: SystemBus, path: str, modem: Mapping[str, Any], gpp: Mapping[str, Any]
) -> ModemInfo:
    sim_path = modem.get("Sim", "/")
    bearers = modem.get("Bearers", [])
    bearer_props = await asyncio.gather(*(bus.get_all_or_empty(MM, b, MM_BEARER) for b in bearers))
    quality = modem.get("SignalQuality")
    unlock = int(modem.get("UnlockRequired", MM_LOCK_UNKNOWN))
    operator = gpp.get("OperatorName") or gpp.get("OperatorCode") or None
    return ModemInfo(
        path=path,
        state=int(modem.get("State", 0)),
        failed_reason=int(modem["StateFailedReason"]) if "StateFailedReason" in modem else None,
        sim_present=bool(sim_path) and sim_path != "/",
        # UNKNOWN (0) is not a lock: MM reports it before it has asked the SIM.
        sim_locked=unlock not in (MM_LOCK_UNKNOWN, MM_LOCK_NONE),
        registration=int(gpp["RegistrationState"]) if "RegistrationState" in gpp else None,
        operator=str(operator) if operator else None,
        signal_quality=int(quality[0]) if isinstance(quality, list | tuple) and quality else None,
        bearer_connected=any(bool(b.get("Connected")) for b in bearer_props),
        primary_port=modem.get("PrimaryPort") or None,
    )


def _attach_modems(devices: list[DeviceInfo], modems: Mapping[str, ModemInfo]) -> list[DeviceInfo]:
    # NM's modem devices carry the MM modem object path as their Udi.
    out = []
    for dev in devices:
        modem = modems.get(dev.extra.get("udi", ""))
        out.append(dataclasses.replace(dev, modem=modem) if modem else dev)
    return out


# ---------------------------------------------------------------------------
# the public read API


async def read_devices(bus: SystemBus, config: Config) -> list[DeviceInfo]:
    """Every managed ethernet/wifi/cell device with its facts, classes and identifiers."""
    nm_devices, modems = await asyncio.gather(_read_nm_devices(bus), _read_modems(bus))
    return build_inventory(_attach_modems(nm_devices, modems), config)


async def read_inventory(config: Config, *, timeout_s: float = 5.0) -> list[DeviceInfo]:
    """Open the system bus, read the gateway's interfaces, close the bus.

    Returns every NM-managed device of class ethernet, wifi or cell (after
    the config's [classes] overrides), ordered by class (ethernet, wifi, cell)
    then identifier, each with its identifier (eth0/wl0/cell0 ..., config pins
    honoured), NM state, IPv4 addresses, gateway, DNS servers, active profile,
    default-route metric, WiFi SSID/signal, and for modems a ModemInfo.

    Raises ServiceUnavailable (NM or the bus not running), PermissionDenied,
    OperationTimeout (nothing within `timeout_s`).
    """
    try:
        async with asyncio.timeout(timeout_s):
            async with system_bus(min(timeout_s, CONNECT_TIMEOUT_S)) as bus:
                return await read_devices(bus, config)
    except TimeoutError:
        raise OperationTimeout(f"reading the interfaces took longer than {timeout_s:g} s") from None


# ---------------------------------------------------------------------------
# acting: activation, deactivation


def _variant(group: str, key: str, value: Any) -> Variant:
    items = nmsettings.ITEM_SIGNATURES.get((group, key))
    if items is not None:
        value = [{k: Variant(items[k], v) for k, v in item.items()} for item in value]
    return Variant(nmsettings.signature_of(group, key), value)


def _variant_settings(settings: nmsettings.Settings) -> dict[str, dict[str, Variant]]:
    return {
        group: {key: _variant(group, key, value) for key, value in values.items()}
        for group, values in settings.items()
    }


def _device_progress(state: int) -> int:
    # FAILED/DEACTIVATING come after ACTIVATED numerically but are not progress.
    return state if state <= int(NMDeviceState.ACTIVATED) else 0


async def activate(
    bus: SystemBus,
    settings: nmsettings.Settings,
    device_path: str,
    *,
    timeout_s: float,
) -> Activation:
    """AddAndActivateConnection2 with persist=volatile; wait for ACTIVATED or failure.

    Nothing is written to disk: the profile lives in memory only and NM
    deletes it once it is deactivated. On a timeout the attempt is
    deactivated before returning.
    """
    return await _activate_variants(bus, _variant_settings(settings), device_path, timeout_s=timeout_s)


async def _activate_variants(
    bus: SystemBus, settings: dict[str, dict[str, Variant]], device_path: str, *, timeout_s: float
) -> Activation:
    loop = asyncio.get_running_loop()
    start = loop.time()
    rules = [
        f"type='signal',interface='{NM_ACTIVE}',member='StateChanged'",
        f"type='signal',interface='{NM_DEVICE}',member='StateChanged',path='{device_path}'",
    ]

    def accept(msg: Message) -> bool:
        return msg.member == "StateChanged" and msg.interface in (NM_ACTIVE, NM_DEVICE)

    furthest = 0
    reason = 0
    async with bus.signals(rules, accept) as queue:
        try:
            (conn_path, active_path, _result) = await bus.call(
                NM, NM_PATH, NM, "AddAndActivateConnection2", "a{sa{sv}}ooa{sv}",
                [settings, device_path, "/", {"persist": Variant("s", "volatile")}],
                timeout_s=max(1.0, min(timeout_s, 30.0)),
                what="activating the connection",
            )
        except DBusCallError as exc:
            # NM refused (device unavailable, no carrier, invalid settings ...).
            return Activation(
                activated=False, error_name=exc.error_name, error_text=exc.message,
                elapsed_s=loop.time() - start,
            )
        try:
            deadline = start + timeout_s
            state_now = await bus.get_all_or_empty(NM, active_path, NM_ACTIVE)
            ac_state = int(state_now.get("State", AC_ACTIVATING)) if state_now else AC_DEACTIVATED
            dev_now = await bus.get_all_or_empty(NM, device_path, NM_DEVICE)
            furthest = _device_progress(int(dev_now.get("State", 0)))
            if dev_now.get("StateReason"):
                reason = int(dev_now["StateReason"][1])
            while ac_state not in (AC_ACTIVATED, AC_DEACTIVATED):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    await deactivate(bus, active_path)
                    return Activation(
                        activated=False, active_path=active_path, profile_path=conn_path,
                        furthest_state=furthest, reason=reason, timed_out=True,
                        elapsed_s=loop.time() - start,
                    )
                try:
                    msg = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    continue
                if msg.interface == NM_ACTIVE and msg.path == active_path:
                    ac_state = int(msg.body[0])
                elif msg.interface == NM_DEVICE and msg.path == device_path:
                    new_state, _old, why = (int(x) for x in msg.body[:3])
                    furthest = max(furthest, _device_progress(new_state))
                    if new_state in (int(NMDeviceState.FAILED), int(NMDeviceState.DISCONNECTED)) and why:
                        reason = why
        except BaseException:
            # Interrupted (Ctrl-C, NM gone, a bug): the attempt must not stay behind.
            with contextlib.suppress(Exception):
                await deactivate(bus, active_path, timeout_s=2.0)
            raise
    elapsed = loop.time() - start
    if ac_state == AC_ACTIVATED:
        return Activation(
            activated=True, active_path=active_path, profile_path=conn_path,
            furthest_state=int(NMDeviceState.ACTIVATED), elapsed_s=elapsed,
        )
    return Activation(
        activated=False, active_path=active_path, profile_path=conn_path,
        furthest_state=furthest, reason=reason, elapsed_s=elapsed,
    )


async def deactivate(bus: SystemBus, active_path: str, *, timeout_s: float = 10.0) -> bool:
    """DeactivateConnection and wait until it is gone; False if it was not active anymore."""
    loop = asyncio.get_running_loop()
    rules = [f"type='signal',interface='{NM_ACTIVE}',member='StateChanged',path='{active_path}'"]
    async with bus.signals(rules, lambda m: m.path == active_path) as queue:
        try:
            await bus.call(
                NM, NM_PATH, NM, "DeactivateConnection", "o", [active_path],
                what="deactivating the connection",
            )
        except (NoSuchInterface, DBusCallError):
            return False  # already gone (NM: ConnectionNotActive)
        deadline = loop.time() + timeout_s
        props = await bus.get_all_or_empty(NM, active_path, NM_ACTIVE)
        state = int(props.get("State", AC_DEACTIVATED)) if props else AC_DEACTIVATED
        await _wait_state(queue, state, {AC_DEACTIVATED}, deadline,
                          f"NetworkManager did not deactivate {active_path} in {timeout_s:g} s")
    return True


async def _wait_state(
    queue: asyncio.Queue[Message], state: int, done: set[int], deadline: float, timeout_message: str
) -> None:
    """Wait until a StateChanged signal (first argument: the new state) reaches one of `done`."""
    loop = asyncio.get_running_loop()
    while state not in done:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise OperationTimeout(timeout_message)
        try:
            msg = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            continue
        state = int(msg.body[0])


async def disconnect_device(bus: SystemBus, device_path: str, *, timeout_s: float = 10.0) -> bool:
    """Device.Disconnect and wait until it is down; False if it was not connected.

    Unlike DeactivateConnection this also blocks autoconnect on the device
    until impctl (or a user) activates it again: impOS powers the previous
    interface down, and a persistent profile must not bring it straight back.
    """
    loop = asyncio.get_running_loop()
    rules = [f"type='signal',interface='{NM_DEVICE}',member='StateChanged',path='{device_path}'"]
    down = (int(NMDeviceState.DISCONNECTED), int(NMDeviceState.UNAVAILABLE), int(NMDeviceState.UNMANAGED))
    async with bus.signals(rules, lambda m: m.path == device_path) as queue:
        try:
            await bus.call(NM, device_path, NM_DEVICE, "Disconnect", what="disconnecting the interface")
        except DBusCallError as exc:
            if exc.error_name.endswith(".NotActive"):
                return False
            raise
        deadline = loop.time() + timeout_s
        props = await bus.get_all_or_empty(NM, device_path, NM_DEVICE)
        state = int(props.get("State", NMDeviceState.DISCONNECTED))
        await _wait_state(queue, state, set(down), deadline,
                          f"NetworkManager did not disconnect {device_path} in {timeout_s:g} s")
    return True


async def reactivate(bus: SystemBus, profile_path: str, device_path: str) -> bool:
    """Best effort: bring a saved profile back up on its device (no wait)."""
    try:
        await bus.call(
            NM, NM_PATH, NM, "ActivateConnection", "ooo", [profile_path, device_path, "/"],
            what="re-activating the previous connection",
        )
    except ImpctlError:
        return False
    return True


async def profile_is_volatile(bus: SystemBus, profile_path: str) -> bool:
    props = await bus.get_all_or_empty(NM, profile_path, NM_SETTINGS_CONN)
    return bool(props.get("Unsaved", False)) or str(props.get("Filename", "")) == ""


async def set_route_metric(bus: SystemBus, device_path: str, metric: int) -> None:
    """Change the device's IPv4 route metric in place with Device.Reapply (not written to disk)."""
    (applied, version) = await bus.call(
        NM, device_path, NM_DEVICE, "GetAppliedConnection", "u", [0], what="reading the applied connection"
    )
    applied.setdefault("ipv4", {})["route-metric"] = Variant("x", metric)
    # `version` makes NM refuse the change if the connection was re-applied meanwhile.
    await bus.call(
        NM, device_path, NM_DEVICE, "Reapply", "a{sa{sv}}tu", [applied, version, 0],
        what="changing the route metric",
    )


async def primary_device_path(bus: SystemBus) -> str | None:
    """The NM device of the primary connection (the one holding the default route)."""
    props = await bus.get_all(NM, NM_PATH, NM)
    primary = props.get("PrimaryConnection", "/")
    if not primary or primary == "/":
        return None
    active = await bus.get_all_or_empty(NM, primary, NM_ACTIVE)
    devices = active.get("Devices", [])
    return str(devices[0]) if devices else None


@dataclass(frozen=True)
class Snapshot:
    """How a device was connected before an attempt, to put it back if the attempt fails."""

    device_path: str
    profile_path: str
    volatile: bool
    applied: dict[str, dict[str, Variant]]


class _Trial:
    """impctl.usecases.ports.Trial over NM: the attempt's activation, undone unless committed."""

    def __init__(self, backend: NetworkManagerBackend, device: DeviceInfo) -> None:
        self._backend = backend
        self._device = device
        self.active_path: str | None = None
        self.committed = False

    async def activate(self, settings: nmsettings.Settings, timeout_s: float) -> Activation:
        activation = await self._backend.activate(settings, self._device, timeout_s)
        self.active_path = activation.active_path
        return activation

    def commit(self) -> None:
        self.committed = True


class NetworkManagerBackend:
    """NM and MM for the use cases (impctl.usecases.ports.Network), over one bus connection."""

    def __init__(self, bus: SystemBus, config: Config) -> None:
        self._bus = bus
        self._config = config

    async def devices(self) -> list[DeviceInfo]:
        return await read_devices(self._bus, self._config)

    async def primary_ifname(self) -> str | None:
        path = await primary_device_path(self._bus)
        if path is None:
            return None
        props = await self._bus.get_all_or_empty(NM, path, NM_DEVICE)
        return str(props["Interface"]) if props.get("Interface") else None

    async def activate(self, settings: nmsettings.Settings, device: DeviceInfo, timeout_s: float) -> Activation:
        return await activate(self._bus, settings, device.nm_path, timeout_s=timeout_s)

    async def deactivate(self, active_path: str) -> bool:
        return await deactivate(self._bus, active_path)

    async def disconnect(self, device: DeviceInfo) -> bool:
        return await disconnect_device(self._bus, device.nm_path)

    async def set_route_metric(self, device: DeviceInfo, metric: int) -> None:
        await set_route_metric(self._bus, device.nm_path, metric)

    @contextlib.asynccontextmanager
    async def trial(self, device: DeviceInfo, timeout_s: float) -> AsyncIterator[_Trial]:
        """An attempt on `device`: unless committed, its activation is taken down and the
        device gets back what it had, also when the body raises or is cancelled."""
        snapshot = await self.snapshot(device) if device.active_path else None
        trial = _Trial(self, device)
        try:
            yield trial
        finally:
            if not trial.committed:
                # Best effort and shielded: an undo that fails must not hide why the attempt ended.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._undo(trial, snapshot))

    async def _undo(self, trial: _Trial, snapshot: Snapshot | None) -> None:
        if trial.active_path is not None:
            await self.deactivate(trial.active_path)
        if snapshot is not None:
            await self.restore(snapshot)

    async def snapshot(self, device: DeviceInfo) -> Snapshot | None:
        profile_path = device.extra.get("profile_path")
        if not device.active_path or not profile_path:
            return None
        try:
            (applied, _version) = await self._bus.call(
                NM, device.nm_path, NM_DEVICE, "GetAppliedConnection", "u", [0],
                what="reading the applied connection",
            )
        except (DBusCallError, NoSuchInterface):
            return None
        volatile = await profile_is_volatile(self._bus, profile_path)
        return Snapshot(device.nm_path, profile_path, volatile, applied)

    async def restore(self, snapshot: Snapshot, timeout_s: float = 15.0) -> bool:
        """Best effort: the saved profile again, or (volatile, so deleted) a copy of what was applied.

        NM does not hand secrets back in the applied connection, so a
        volatile WiFi profile with a key cannot be restored this way.
        """
        if not snapshot.volatile and await reactivate(self._bus, snapshot.profile_path, snapshot.device_path):
            return True
        result = await _activate_variants(
            self._bus, snapshot.applied, snapshot.device_path, timeout_s=timeout_s
        )
        return result.activated


# ---------------------------------------------------------------------------
# the failover daemon (impctl.usecases.daemon): NM signals, route metrics, bus loss
# (maintained with the daemon; kept apart from the connect code above)


_DAEMON_RULES = [
    f"type='signal',interface='{NM_DEVICE}',member='StateChanged'",
    f"type='signal',interface='{NM}',member='DeviceAdded',path='{NM_PATH}'",
    f"type='signal',interface='{NM}',member='DeviceRemoved',path='{NM_PATH}'",
    # NetworkManager (re)starting or stopping: its bus name changes owner.
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    f"member='NameOwnerChanged',arg0='{NM}'",
]


def _nm_signal(msg: Message) -> NMSignal | None:
    if msg.member == "StateChanged" and msg.interface == NM_DEVICE and len(msg.body) >= 3:
        return NMSignal("device-state", msg.path or "", int(msg.body[0]), int(msg.body[1]), int(msg.body[2]))
    if msg.member in ("DeviceAdded", "DeviceRemoved") and msg.interface == NM:
        return NMSignal("devices-changed", str(msg.body[0]) if msg.body else "")
    if msg.member == "NameOwnerChanged" and len(msg.body) == 3 and msg.body[0] == NM:
        return NMSignal("nm-started" if msg.body[2] else "nm-stopped")
    return None


class _NMSignals:
    """The subscription behind `nm_signals`: a plain async context manager (no generator
    left suspended at shutdown), whose exit does not wait on a bus that is gone."""

    def __init__(self, bus: SystemBus, emit: Callable[[NMSignal], None]) -> None:
        self._bus = bus
        self._emit = emit
        self._added: list[str] = []

    def _handler(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL:
            signal = _nm_signal(msg)
            if signal is not None:
                self._emit(signal)

    async def __aenter__(self) -> None:
        self._bus._bus.add_message_handler(self._handler)
        try:
            for rule in _DAEMON_RULES:
                await self._bus.add_match(rule)
                self._added.append(rule)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._bus._bus.remove_message_handler(self._handler)
        if not self._bus._bus.connected:
            return  # the rules went with the connection
        for rule in self._added:
            with contextlib.suppress(ImpctlError):
                await self._bus.call(
                    "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                    "RemoveMatch", "s", [rule], timeout_s=1.0, what="unsubscribing",
                )
        self._added.clear()


def nm_signals(bus: SystemBus, emit: Callable[[NMSignal], None]) -> contextlib.AbstractAsyncContextManager[None]:
    """Call `emit` for every NM device state change, device added/removed and NM (re)start.

    The match rules live in the bus daemon, not in NM, so they keep working
    across a restart of NetworkManager.
    """
    return _NMSignals(bus, emit)


async def wait_disconnected(bus: SystemBus) -> None:
    """Return when the bus connection is lost (dbus-daemon restarted, socket closed)."""
    with contextlib.suppress(Exception):
        await bus._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


async def profile_route_metric(bus: SystemBus, device: DeviceInfo) -> int:
    """The route metric the device's profile asks for (-1: NM's per-type default).

    What the daemon puts back on an uplink it no longer makes primary.
    """
    profile_path = device.extra.get("profile_path")
    if not profile_path:
        return -1
    (settings,) = await bus.call(
        NM, profile_path, NM_SETTINGS_CONN, "GetSettings", what="reading the profile"
    )
    value = _unwrap(settings).get("ipv4", {}).get("route-metric", -1)
    return int(value)


class DaemonNetworkManager:
    """What the failover daemon needs of NM (impctl.usecases.daemon.Network), over one bus."""

    def __init__(self, bus: SystemBus, config: Config) -> None:
        self._bus = bus
        self._config = config

    def set_config(self, config: Config) -> None:
        self._config = config

    async def devices(self) -> list[DeviceInfo]:
        return await read_devices(self._bus, self._config)

    async def set_route_metric(self, device: DeviceInfo, metric: int) -> None:
        await set_route_metric(self._bus, device.nm_path, metric)

    async def profile_route_metric(self, device: DeviceInfo) -> int:
        return await profile_route_metric(self._bus, device)

    def signals(self, emit: Callable[[NMSignal], None]) -> contextlib.AbstractAsyncContextManager[None]:
        return nm_signals(self._bus, emit)

    async def disconnected(self) -> None:
        await wait_disconnected(self._bus)

    def close(self) -> None:
        self._bus.close()
