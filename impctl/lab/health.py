"""Health of the uplinks: leased and routed as the lab means them, waited for, healed.

An uplink is healthy when, for each family its profile configures, it has an
address in its ISP's subnet (IPv6: a SLAAC address in the ISP's /64) and NM's
default route via the ISP router (IPv6: via a link-local router) with the
uplink's metric, and NM calls the device connected with the lab's profile. An
IPv6-only uplink is healthy without any IPv4.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from impctl.lab import labdir, network, nm
from impctl.lab.daemons import Daemons
from impctl.lab.proc import wait_for
from impctl.lab.topology import LEASE_TIMEOUT_S, Topology, Uplink
from impctl.model.errors import LabError

# After a fault is lifted NM usually recovers by itself within ~0.1 s (carrier back, renewal);
# past this an uplink's profile is re-activated.
SETTLE_S = 0.5


def uplink_healthy(u: Uplink, addrs: dict[str, list[str]], routes: list[dict[str, Any]],
                   addrs6: dict[str, list[str]] | None = None,
                   routes6: list[dict[str, Any]] | None = None) -> bool:
    """Each of the uplink's families addressed and default-routed as above; `addrs6` and
    `routes6` are needed (else: not healthy) when the uplink has IPv6."""
    v4 = not u.ipv4 or ipv4_healthy(u, addrs, routes)
    v6 = not u.ipv6 or (addrs6 is not None and routes6 is not None
                        and ipv6_healthy(u, addrs6, routes6))
    return v4 and v6


def ipv4_healthy(u: Uplink, addrs: dict[str, list[str]], routes: list[dict[str, Any]]) -> bool:
    """Leased address in the ISP's subnet and NM's default route via the ISP router."""
    net = u.subnet.rsplit(".", 1)[0] + "."
    has_addr = any(a.startswith(net) for a in addrs.get(u.ifname, []))
    has_route = any(r.get("dev") == u.ifname and r.get("gateway") == u.router_ip
                    and r.get("metric") == u.metric and "linkdown" not in r.get("flags", [])
                    for r in routes)
    return has_addr and has_route


def ipv6_healthy(u: Uplink, addrs6: dict[str, list[str]], routes6: list[dict[str, Any]]) -> bool:
    """A usable address in the ISP's /64 and a default route via a link-local router with the
    profile's metric (NM sets it from ipv6.route-metric)."""
    net = ipaddress.ip_network(u.prefix6)
    has_addr = any(ipaddress.ip_interface(a).ip in net for a in addrs6.get(u.ifname, []))
    has_route = any(r.get("dev") == u.ifname and str(r.get("gateway", "")).startswith("fe80:")
                    and r.get("metric") == u.metric and "linkdown" not in r.get("flags", [])
                    for r in routes6)
    return has_addr and has_route


def snapshot(topo: Topology) -> tuple[dict[str, list[str]], list[dict[str, Any]],
                                      dict[str, list[str]] | None, list[dict[str, Any]] | None]:
    """Addresses and default routes of the gateway, IPv6 ones only in a dual-stack lab."""
    if not topo.ipv6:
        return network.addresses(topo), network.default_routes(topo), None, None
    return (network.addresses(topo), network.default_routes(topo), network.addresses6(topo),
            network.default_routes6(topo))


def wait_uplinks(topo: Topology, daemons: Daemons, ifnames: Sequence[str],
                 timeout_s: float = LEASE_TIMEOUT_S) -> None:
    """Wait until each uplink has its DHCP lease and default route."""
    todo = [topo.uplink(n) for n in ifnames]

    def ready() -> bool:
        daemons.expect_alive("NetworkManager")
        snap = snapshot(topo)
        if not all(uplink_healthy(u, *snap) for u in todo):
            return False
        # An address can be there before NM is done (or left by a previous activation):
        # NM must also call the device connected with the lab profile.
        devices = nm.nm_devices(topo)
        return all(devices.get(u.ifname) == ("connected", u.profile_id) for u in todo)

    what = "DHCP lease" if not topo.ipv6 else "address (DHCP/SLAAC)"
    wait_for(f"{what} and default route on {', '.join(ifnames)}", ready, timeout_s,
             interval_s=0.02)


def activate(topo: Topology, daemons: Daemons, u: Uplink, *, wait: bool = True) -> None:
    """(Re-)activate an uplink's lab profile on its device."""
    if not topo.keyfile_path(u).exists():
        labdir.write_keyfile(topo, u)
        nm.nmcli(topo, "connection", "reload")
    nm.nmcli(topo, "--wait", "0" if not wait else "20", "connection", "up", "uuid",
             u.profile_uuid, "ifname", u.ifname)
    if wait:
        wait_uplinks(topo, daemons, [u.ifname])


def heal(topo: Topology, daemons: Daemons, uplinks: Sequence[Uplink]) -> None:
    """Re-activate the lab profile of each uplink that is not healthy, then wait for all."""
    if not uplinks:
        return
    # Undo what a test may have done to NM itself.
    if nm.nmcli(topo, "networking", check=False).stdout.strip() != "enabled":
        nm.nmcli(topo, "networking", "on")
    devices = nm.nm_devices(topo)
    for u in uplinks:
        if devices.get(u.ifname, ("", ""))[0] == "unmanaged":
            nm.nmcli(topo, "device", "set", u.ifname, "managed", "yes")
    wait_for("gateway carrier",
             lambda: all(network.carriers(topo).get(u.ifname) for u in uplinks), 5.0)
    active = nm.active_profiles(topo)
    snap = snapshot(topo)
    devices = nm.nm_devices(topo)
    for u in uplinks:
        if (active.get(u.ifname) != u.profile_uuid or not uplink_healthy(u, *snap)
                or devices.get(u.ifname) != ("connected", u.profile_id)):
            # A fresh activation may still be under way (NM retries on carrier); give it
            # a moment before forcing a new one.
            if active.get(u.ifname) == u.profile_uuid and _settles(topo, daemons, u, SETTLE_S):
                continue
            activate(topo, daemons, u, wait=False)
    wait_uplinks(topo, daemons, [u.ifname for u in uplinks])


def _settles(topo: Topology, daemons: Daemons, u: Uplink, timeout_s: float) -> bool:
    try:
        wait_uplinks(topo, daemons, [u.ifname], timeout_s)
    except LabError:
        return False
    return True


def lan_ready(topo: Topology) -> bool:
    """NM shares on the LAN port and the LAN device holds a lease with the gateway as router."""
    if nm.nm_devices(topo).get(topo.lan_ifname) != ("connected", topo.lan_profile_id):
        return False
    addr = network.lan_address(topo)
    net = topo.lan_subnet.rsplit(".", 1)[0] + "."
    return (addr is not None and addr.startswith(net)
            and network.lan_default_gateway(topo) == topo.lan_gateway_ip)


def wait_lan(topo: Topology, daemons: Daemons, timeout_s: float = LEASE_TIMEOUT_S) -> None:
    def ready() -> bool:
        daemons.expect_alive("NetworkManager")
        daemons.expect_alive("lan-dhcp")
        return lan_ready(topo)

    wait_for(f"the LAN device's lease from {topo.lan_ifname}", ready, timeout_s, interval_s=0.02)


def heal_lan(topo: Topology, daemons: Daemons) -> None:
    """The LAN port shared again if a test took it down; the device keeps (or renews) its lease."""
    devices = nm.nm_devices(topo)
    if devices.get(topo.lan_ifname, ("", ""))[0] == "unmanaged":
        nm.nmcli(topo, "device", "set", topo.lan_ifname, "managed", "yes")
    if nm.active_profiles(topo).get(topo.lan_ifname) != topo.lan_profile_uuid:
        nm.nmcli(topo, "--wait", "20", "connection", "up", "uuid", topo.lan_profile_uuid,
                 "ifname", topo.lan_ifname)
    wait_lan(topo, daemons)


def reset_profiles(topo: Topology) -> None:
    """The lab's keyfiles as written by `up`, and no NM profile that is not the lab's."""
    changed = False
    for u in topo.uplinks:
        if not labdir.keyfile_intact(topo, u):
            labdir.write_keyfile(topo, u)
            changed = True
    if not labdir.lan_keyfile_intact(topo):
        labdir.write_lan_keyfile(topo)
        changed = True
    if changed:
        nm.nmcli(topo, "connection", "reload")
    lab_uuids = {u.profile_uuid for u in topo.uplinks} | {topo.lan_profile_uuid}
    out = nm.nmcli(topo, "-t", "-f", "UUID,TYPE", "connection", "show").stdout
    strangers = [line.split(":")[0] for line in out.splitlines()
                 if line and line.split(":")[0] not in lab_uuids
                 and line.split(":", 1)[1] not in ("loopback",)]
    if strangers:
        nm.nmcli(topo, "connection", "delete", *strangers, check=False)
