"""What a lab is: built or not, which daemons live, what its uplinks look like.

A lab is *built* when its last `up` finished (lab.json says `complete`) and
every namespace exists; it is *up* when, moreover, every daemon it should run
is recorded and alive. A build cut short is neither, whatever still runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impctl.lab import network, nm
from impctl.lab.labdir import LabFile
from impctl.lab.modemctl import modem_info, observed_state
from impctl.lab.proc import alive, netns_exists
from impctl.lab.sockets import unix_connectable
from impctl.lab.topology import Topology


@dataclass
class UplinkStatus:
    ifname: str
    carrier: bool
    addresses: list[str]
    default_route: bool
    nm_state: str
    nm_connection: str
    faults: list[str]


@dataclass
class LanStatus:
    """The gateway's LAN port and the device behind it."""

    ifname: str  # the gateway's port
    addresses: list[str]  # the gateway's, given by NM's shared mode
    nm_state: str
    nm_connection: str
    device_netns: str
    device_address: str | None  # leased by the gateway
    device_router: str | None  # the device's default gateway


@dataclass
class DaemonStatus:
    name: str
    pid: int | None
    alive: bool


@dataclass
class LabStatus:
    root: str
    prefix: str
    up: bool
    modem: bool
    namespaces: dict[str, bool]
    daemons: list[DaemonStatus]
    uplinks: list[UplinkStatus]
    modem_state: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The last `up` finished; False for a build cut short (see the module docstring).
    built: bool = False
    lan: LanStatus | None = None


def is_built(topo: Topology, labfile: LabFile) -> bool:
    return labfile.complete() and all(netns_exists(ns) for ns in topo.namespaces)


def daemons(topo: Topology, labfile: LabFile) -> list[DaemonStatus]:
    """Every daemon the lab should run, recorded or not, then any other recorded one."""
    pids = labfile.pids()
    names = [*topo.daemon_names, *(n for n in pids if n not in topo.daemon_names)]
    return [DaemonStatus(n, pids.get(n), n in pids and alive(pids[n])) for n in names]


def dead_daemons(topo: Topology, labfile: LabFile) -> list[str]:
    """Names of the daemons that should run and do not (never started, exited, killed)."""
    return [d.name for d in daemons(topo, labfile) if not d.alive]


def is_up(topo: Topology, labfile: LabFile) -> bool:
    return is_built(topo, labfile) and not dead_daemons(topo, labfile)


def collect(topo: Topology, labfile: LabFile) -> LabStatus:
    """Namespaces, daemons (pid, alive), uplinks (carrier, addresses, NM state), faults."""
    data = labfile.read()
    namespaces = {ns: netns_exists(ns) for ns in topo.namespaces}
    built = data.get("complete") is True and all(namespaces.values())
    daemon_list = daemons(topo, labfile) if data else []
    uplinks = _uplinks(topo, data.get("faults", {})) if namespaces[topo.gw_netns] else []
    lan = _lan(topo) if namespaces[topo.gw_netns] and namespaces[topo.lan_netns] else None
    up = built and all(d.alive for d in daemon_list)
    modem_state = None
    if topo.modem and up:
        modem_state = observed_state(modem_info(topo)) or "other"
    return LabStatus(root=str(topo.root), prefix=topo.prefix, up=up, modem=topo.modem,
                     namespaces=namespaces, daemons=daemon_list, uplinks=uplinks,
                     modem_state=modem_state, built=built, lan=lan,
                     extra={"modem_switched_to": data.get("modem_state")} if topo.modem else {})


def _uplinks(topo: Topology, faults: dict[str, list[str]]) -> list[UplinkStatus]:
    addrs, routes = network.addresses(topo), network.default_routes(topo)
    if topo.ipv6:
        # Both families in one list: the global IPv6 ones after the IPv4 ones.
        for ifname, a6 in network.addresses6(topo).items():
            addrs[ifname] = [*addrs.get(ifname, []), *a6]
        routes = [*routes, *network.default_routes6(topo)]
    carriers = network.carriers(topo)
    devices = nm.nm_devices(topo) if unix_connectable(str(topo.bus_socket)) else {}
    return [UplinkStatus(
        ifname=u.ifname, carrier=carriers.get(u.ifname, False),
        addresses=addrs.get(u.ifname, []),
        default_route=any(r.get("dev") == u.ifname for r in routes),
        nm_state=devices.get(u.ifname, ("?", ""))[0],
        nm_connection=devices.get(u.ifname, ("?", ""))[1],
        faults=faults.get(u.ifname, [])) for u in topo.uplinks]


def _lan(topo: Topology) -> LanStatus:
    devices = nm.nm_devices(topo) if unix_connectable(str(topo.bus_socket)) else {}
    state, connection = devices.get(topo.lan_ifname, ("?", ""))
    return LanStatus(ifname=topo.lan_ifname,
                     addresses=network.addresses(topo).get(topo.lan_ifname, []),
                     nm_state=state, nm_connection=connection, device_netns=topo.lan_netns,
                     device_address=network.lan_address(topo),
                     device_router=network.lan_default_gateway(topo))
