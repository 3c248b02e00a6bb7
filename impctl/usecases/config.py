"""impctl config: imp.setwificonfiguration, setstaticnetworkconfiguration, setproxy,
clearconfiguration and getcurrentconfig, over the Store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impctl.model.codes import ResultCode, exit_code_for
from impctl.model.errors import ValidationError
from impctl.model.nic import Nic, StaticConfig, nic_summary, parse_nic, parse_proxy, parse_static, parse_wifi
from impctl.model.state import STORED_KINDS
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


def _describe_stored(stored: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "wifi" in stored:
        w = parse_wifi({k: v for k, v in stored["wifi"].items() if k != "interface"}, "stored.wifi")
        out["wifi"] = nic_summary(Nic("wifi", wificonfig=w))["wificonfig"]
    if "static" in stored:
        s = parse_static({k: v for k, v in stored["static"].items() if k != "interface"}, "stored.static")
        out["static"] = nic_summary(Nic("ethernet", staticconfig=s))["staticconfig"]
    if "proxy" in stored:
        p = parse_proxy({k: v for k, v in stored["proxy"].items() if k != "interface"}, "stored.proxy")
        out["proxy"] = nic_summary(Nic("ethernet", proxyconfig=p))["proxyconfig"]
    for kind in ("static", "proxy"):
        if kind in out and stored[kind].get("interface"):
            out[kind]["interface"] = stored[kind]["interface"]
    return out


def _store_fragment(store: Store, kind: str, fragment: dict[str, Any]) -> ConfigView:
    with store.transaction() as state:
        state.stored[kind] = fragment
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
    fragment: dict[str, Any] = {"ssid": wifi.ssid, "key": None}
    if not wifi.is_open:
        encrypted = store.encrypt(wifi.key)
        assert encrypted is not None
        fragment["key"] = encrypted.to_json()
    return _store_fragment(store, "wifi", fragment)


def config_static(
    store: Store, ip: str, netmask: str, gateway: str, dns: list[str], interface: str | None = None
) -> ConfigView:
    s: StaticConfig = parse_static({"ip": ip, "netmask": netmask, "gateway": gateway, "dns": dns}, "static")
    fragment: dict[str, Any] = {"ip": s.ip, "netmask": s.netmask, "gateway": s.gateway, "dns": list(s.dns)}
    if (target := _check_target(interface)) is not None:
        fragment["interface"] = target
    return _store_fragment(store, "static", fragment)


def config_proxy(
    store: Store, address: str, port: int, username: str | None, password: str | None, interface: str | None = None
) -> ConfigView:
    raw: dict[str, Any] = {"type": "http", "address": address, "port": port}
    if username is not None:
        raw["username"] = username
    if password:
        raw["password"] = password
    p = parse_proxy(raw, "proxy")
    fragment: dict[str, Any] = {"type": p.type, "address": p.address, "port": p.port}
    if p.username is not None:
        fragment["username"] = p.username
    if p.password is not None:
        encrypted = store.encrypt(p.password)
        assert encrypted is not None
        fragment["password"] = encrypted.to_json()
    if (target := _check_target(interface)) is not None:
        fragment["interface"] = target
    return _store_fragment(store, "proxy", fragment)


CLEAR_KINDS = (*STORED_KINDS, "all")


def config_clear(store: Store, kind: str) -> ConfigView:
    """imp.clearconfiguration: one kind, or all (which also clears the failover sequence)."""
    if kind not in CLEAR_KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(CLEAR_KINDS)} (got {kind!r})")
    with store.transaction() as state:
        kinds = list(STORED_KINDS) if kind == "all" else [kind]
        cleared = [k for k in kinds if state.stored.pop(k, None) is not None]
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


def config_current(store: Store) -> CurrentConfig:
    """imp.net.getcurrentconfig: the NIC of the connection impctl made, secrets encrypted."""
    state = store.load()
    current = state.current or {}
    nic = current.get("nic")
    if nic is None and current.get("identifier"):
        nic = {"interface": current["identifier"]}
    return CurrentConfig(nic if isinstance(nic, dict) else None)
