"""imp.net.info: every interface, which one is current, the last error, the daemon's view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from impctl.model.inventory import DeviceInfo, MMModemState, MMRegistrationState, name_of
from impctl.model.state import DaemonView, State
from impctl.model.uplinks import current_device
from impctl.usecases.ports import InterfaceReader, Store


@dataclass
class StatusReport:
    devices: list[DeviceInfo]
    current_ifname: str | None
    primary_ifname: str | None
    state: State
    daemon: dict[str, Any] | None = None
    lan: list[DeviceInfo] = field(default_factory=list)  # LAN ports: not in `devices`

    def to_json(self) -> dict[str, Any]:
        return {
            "interfaces": [device_json(d, d.ifname == self.current_ifname) for d in self.devices],
            "lan": [device_json(d, False) for d in self.lan],
            "current": self.current_ifname,
            "primary": self.primary_ifname,
            "mode": self.state.mode.value,
            "pinned": self.state.pinned.interface if self.state.pinned else None,
            "sequence": list(self.state.sequence),
            "last_error": self.state.last_error,
            # The failover daemon's own view (active uplink, health, last switches), if it has run.
            "daemon": self.daemon,
        }


def daemon_view(view: DaemonView | None, pid_alive: Callable[[int], bool]) -> dict[str, Any] | None:
    """state.daemon as status shows it: `running` only while its process lives.

    A daemon killed outright (SIGKILL, a crash) cannot clear its own flag.
    """
    if view is None:
        return None
    if view.running and view.pid is not None and not pid_alive(view.pid):
        view = replace(view, running=False)
    return view.to_json()


def ipv6_json(d: DeviceInfo) -> dict[str, Any]:
    """NM's IPv6 view of the device: global addresses, default gateway, DNS servers."""
    return {"addresses": list(d.addresses6), "gateway": d.gateway6, "dns": list(d.dns6)}


def device_json(d: DeviceInfo, active: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identifier": d.identifier,
        "ifname": d.ifname,
        "role": "lan" if d.lan else "uplink",
        "class": d.iface_class,
        "active": active,
        "nm_type": d.nm_type_name,
        "nm_state": d.nm_state_name,
        "connected": d.connected,
        "carrier": d.carrier,
        "addresses": list(d.addresses),
        "gateway": d.gateway,
        "dns": list(d.dns),
        "route_metric": d.route_metric,
        "profile": d.active_profile,
        "ipv6": ipv6_json(d),
    }
    if d.iface_class == "wifi" or d.ssid is not None:
        out["wifi"] = {"ssid": d.ssid, "signal": d.signal}
    if d.modem is not None:
        m = d.modem
        out["cell"] = {
            "modem_state": name_of(MMModemState, m.state),
            "sim": "locked" if m.sim_locked else ("present" if m.sim_present else "missing"),
            "registration": name_of(MMRegistrationState, m.registration) if m.registration is not None else None,
            "operator": m.operator,
            "signal": m.signal_quality,
            "bearer_connected": m.bearer_connected,
            "access_technologies": list(m.access_technologies),
            # ModemManager's bearer: where its IP goes, and why the last attempt failed.
            "bearer": {"connected": m.bearer_connected, "interface": m.bearer_interface,
                       "address": m.bearer_address, "error": m.bearer_error_short,
                       "error_text": m.bearer_error_text},
            "ip_interface": d.extra.get("ip_ifname") or m.bearer_interface,
        }
    return out


async def status(*, network: InterfaceReader, store: Store,
                 pid_alive: Callable[[int], bool]) -> StatusReport:
    """imp.net.info: every interface, the active one, the last error. Changes nothing."""
    state = store.load()
    # Two independent reads of NM: at once, as status is what people run most.
    found, primary = await asyncio.gather(network.interfaces(), network.primary_ifname())
    devices = found.uplinks
    current = current_device(state.current_ifname, devices, primary)
    return StatusReport(devices, current.ifname if current else None, primary, state,
                        daemon_view(state.daemon, pid_alive), found.lan)


