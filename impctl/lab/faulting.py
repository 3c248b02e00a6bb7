"""Applying the fault table (impctl.lab.faults) to the lab's ISPs, and recording it in lab.json."""

from __future__ import annotations

from collections.abc import Iterable

from impctl.lab import faults, health, network
from impctl.lab.daemons import Daemons
from impctl.lab.proc import sh, wait_for
from impctl.lab.topology import Topology, Uplink
from impctl.model.errors import LabError


def active(daemons: Daemons) -> dict[str, list[str]]:
    """Active faults per uplink, as recorded in lab.json."""
    return {k: list(v) for k, v in daemons.labfile.read().get("faults", {}).items() if v}


def _apply(daemons: Daemons, u: Uplink, kinds: Iterable[str]) -> None:
    """Make exactly `kinds` active on `u` and record it (under the lab's lock)."""
    wanted = list(faults.canonical(kinds))
    labfile = daemons.labfile
    with labfile.locked():
        for cmd in faults.commands(u, wanted):
            sh(cmd.argv, input=cmd.input)
        labfile.set(u.ifname, wanted, section="faults")


def add(topo: Topology, daemons: Daemons, ifname: str, kind: str) -> None:
    """Apply a fault to one uplink; returns once it is in effect."""
    u = topo.uplink(ifname)
    spec = faults.fault(kind, u.isp_ifname, u.ipv6)
    if kind in faults.FAULTS6 and not u.ipv6:
        raise LabError(f"{kind} is an IPv6 fault and {u.ifname} has no IPv6: "
                       "build the lab with `impctl lab up --ipv6`")
    _apply(daemons, u, [*active(daemons).get(u.ifname, []), kind])
    if spec.reactivate:
        # A running lease would outlive the fault: start a new activation, whose DHCP fails.
        health.activate(topo, daemons, u, wait=False)
    if spec.awaits == "carrier-loss":
        wait_for(f"carrier loss on {u.ifname}",
                 lambda: not network.carriers(topo).get(u.ifname, False), 5.0)
    elif spec.awaits == "no-address":
        wait_for(f"{u.ifname} without address",
                 lambda: not network.addresses(topo).get(u.ifname), 10.0)
    elif spec.awaits == "no-address6":
        wait_for(f"{u.ifname} without IPv6 address",
                 lambda: not network.addresses6(topo).get(u.ifname), 10.0)


def restore(topo: Topology, daemons: Daemons, ifname: str) -> None:
    """Undo every fault of an uplink and wait until it has its lease and default route."""
    u = topo.uplink(ifname)
    had = active(daemons).get(u.ifname, [])
    _apply(daemons, u, [])
    if any(faults.fault(k, u.isp_ifname).reactivate for k in had):
        # NM's DHCP client backs off between retries: start over rather than wait for it.
        health.activate(topo, daemons, u, wait=False)
    health.heal(topo, daemons, [u])


def clear(topo: Topology, daemons: Daemons) -> None:
    """No fault on any uplink, whatever lab.json says (reset); no waiting for the uplinks."""
    for u in topo.uplinks:
        _apply(daemons, u, [])
