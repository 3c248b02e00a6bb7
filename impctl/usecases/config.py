"""impctl config: imp.setwificonfiguration, setstaticnetworkconfiguration, setproxy,
clearconfiguration and getcurrentconfig, over the Store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from impctl.model.codes import ResultCode, exit_code_for
from impctl.model.errors import ValidationError
from impctl.model.inventory import DeviceInfo
from impctl.model.nic import (
    Nic,
    StaticConfig,
    nic_summary,
    nic_to_json,
    parse_nic,
    parse_proxy,
    parse_static,
    parse_wifi,
)
from impctl.model.state import STORED_KINDS, Stored, StoredSettings
from impctl.usecases.ports import Store


@dataclass
class ConfigView:
    stored: dict[str, Any]  # secrets described, never shown
    sequence: list[str]
    cleared: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stored": self.stored, "sequence": self.sequence}
        if self.cleared:
            out["cleared"] = self.cleared
        return out


def _describe_stored(stored: StoredSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if stored.wifi is not None:
        out["wifi"] = nic_summary(Nic("wifi", wificonfig=stored.wifi.config))["wificonfig"]
    if stored.static is not None:
        out["static"] = nic_summary(Nic("ethernet", staticconfig=stored.static.config))["staticconfig"]
        if stored.static.interface:
            out["static"]["interface"] = stored.static.interface
    if stored.proxy is not None:
        out["proxy"] = nic_summary(Nic("ethernet", proxyconfig=stored.proxy.config))["proxyconfig"]
        if stored.proxy.interface:
            out["proxy"]["interface"] = stored.proxy.interface
    return out


def _store(store: Store, change: Callable[[StoredSettings], StoredSettings]) -> ConfigView:
    with store.transaction() as state:
        state.stored = change(state.stored)
        return ConfigView(_describe_stored(state.stored), list(state.sequence))


def _check_target(interface: str | None) -> str | None:
    if interface is None:
        return None
    nic = parse_nic({"interface": interface})
    if nic.iface_class == "cell":
        raise ValidationError("interface", "static and proxy settings do not apply to cellular interfaces")
    return nic.interface


def config_wifi(store: Store, ssid: str, key: str | None) -> ConfigView:
    wifi = parse_wifi({"ssid": ssid, "key": key or None}, "wifi")  # validate before touching anything
    wifi = replace(wifi, key=None if wifi.is_open else store.encrypt(wifi.key))
    return _store(store, lambda s: replace(s, wifi=Stored(wifi)))


def config_static(
    store: Store, ip: str, netmask: str, gateway: str, dns: list[str], interface: str | None = None
) -> ConfigView:
    s: StaticConfig = parse_static({"ip": ip, "netmask": netmask, "gateway": gateway, "dns": dns}, "static")
    target = _check_target(interface)
    return _store(store, lambda st: replace(st, static=Stored(s, target)))


def config_proxy(
    store: Store, address: str, port: int, username: str | None, password: str | None, interface: str | None = None
) -> ConfigView:
    raw: dict[str, Any] = {"type": "http", "address": address, "port": port}
    if username is not None:
        raw["username"] = username
    if password:
        raw["password"] = password
    p = parse_proxy(raw, "proxy")
    target = _check_target(interface)
    if p.password is not None:
        p = replace(p, password=store.encrypt(p.password))
    return _store(store, lambda st: replace(st, proxy=Stored(p, target)))


CLEAR_KINDS = (*STORED_KINDS, "all")


def config_clear(store: Store, kind: str) -> ConfigView:
    """imp.clearconfiguration: one kind, or all (which also clears the failover sequence)."""
    if kind not in CLEAR_KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(CLEAR_KINDS)} (got {kind!r})")
    with store.transaction() as state:
        kinds = list(STORED_KINDS) if kind == "all" else [kind]
        cleared = [k for k in kinds if k in state.stored.kinds()]
        for k in cleared:
            state.stored = state.stored.cleared(k)
        if kind == "all":
            if state.sequence:
                cleared.append("sequence")
            state.set_sequence([])
        return ConfigView(_describe_stored(state.stored), list(state.sequence), cleared)


def config_show(store: Store) -> ConfigView:
    state = store.load()
    return ConfigView(_describe_stored(state.stored), list(state.sequence))


@dataclass
class CurrentConfig:
    nic: dict[str, Any] | None  # secrets encrypted; reusable as connectwith --nic

    @property
    def exit_code(self) -> int:
        return 0 if self.nic is not None else exit_code_for(ResultCode.NOT_CONNECTED)


async def config_current(store: Store, devices: Callable[[], Awaitable[list[DeviceInfo]]]) -> CurrentConfig:
    """imp.net.getcurrentconfig: the NIC of the current connection, secrets encrypted.

    An extended NIC describes the connection only while the NM profile connectwith
    made for it is what the device runs: once that connection is lost (the
    volatile profile went, the device came back on another profile), impOS
    discards the extended NIC, and so does this: only the interface remains.
    """
    current = store.load().current
    if current is None:
        return CurrentConfig(None)
    device = next((d for d in await devices() if d.ifname == current.ifname), None)
    if device is None or not device.connected:
        return CurrentConfig(None)
    if current.nic is not None and current.profile_uuid == device.extra.get("profile_uuid"):
        return CurrentConfig(nic_to_json(current.nic))
    return CurrentConfig({"interface": current.identifier})
