"""The lab's network: namespaces, veths, addresses, routes and sysctls; reading the gateway's.

Everything is made inside the lab's namespaces; the machine's own interfaces,
routes and sysctls are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from impctl.lab import faults
from impctl.lab.labdir import tayga_conf
from impctl.lab.proc import in_netns, netns_exists, netns_inode, root_netns_inode, sh
from impctl.lab.topology import (
    CLOUD_IP,
    CLOUD_IP6,
    ISP_IFNAME,
    ISP_UPLINK_IFNAME,
    NAT64_POOL,
    NAT64_PREFIX,
    NAT64_TUN,
    Topology,
    Uplink,
)
from impctl.model.errors import LabError


def build(topo: Topology) -> None:
    """Namespaces and veths, then addresses, routes and the ISPs' source validation and NAT,
    then the sysctls the lab needs."""
    _create_namespaces_and_links(topo)
    if topo.ipv6:
        # Before any IPv6 address exists: forwarding off would make the ISPs hosts, and
        # DAD would leave the gateway's SLAAC addresses tentative (unusable) for ~2 s.
        _set_sysctls6(topo)
    for u in _isps(topo):
        sh(["ip", "-n", u.isp_netns, "-batch", "-"], input="\n".join(_isp_commands(u)) + "\n")
        if u.nat64:
            _make_nat64_tun(topo, u)
        cmd = faults.isp_command(u)
        sh(cmd.argv, input=cmd.input)
    sh(["ip", "-n", topo.cloud_netns, "-batch", "-"], input="\n".join(_cloud_commands(topo)) + "\n")
    sh(["ip", "-n", topo.gw_netns, "link", "set", "lo", "up"])
    # The LAN device: link up, no address until its DHCP client gets one from the gateway.
    sh(["ip", "-n", topo.lan_netns, "-batch", "-"],
       input=f"link set lo up\nlink set {topo.lan_device_ifname} up\n")
    _set_sysctls(topo)


def _isps(topo: Topology) -> list[Uplink]:
    """Every ISP-shaped namespace: the uplinks' ISPs and, in a modem lab, the carrier (whose
    gateway end is the modem's net port, usb0)."""
    return [*topo.uplinks, *([topo.carrier] if topo.carrier else [])]


def _create_namespaces_and_links(topo: Topology) -> None:
    batch = [f"netns add {ns}" for ns in topo.namespaces]
    for u in _isps(topo):
        # Created directly inside the namespaces: the machine has its own eth0.
        batch.append(f"link add {u.ifname} netns {topo.gw_netns} type veth "
                     f"peer name {u.isp_ifname} netns {u.isp_netns}")
        batch.append(f"link add {ISP_UPLINK_IFNAME} netns {u.isp_netns} type veth "
                     f"peer name {u.cloud_ifname} netns {topo.cloud_netns}")
    batch.append(f"link add {topo.lan_ifname} netns {topo.gw_netns} type veth "
                 f"peer name {topo.lan_device_ifname} netns {topo.lan_netns}")
    sh(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
    root_ino = root_netns_inode()
    for ns in topo.namespaces:
        if netns_inode(ns) in (None, root_ino):
            raise LabError(f"namespace {ns} was not created apart from the machine's")


def _isp_commands(u: Uplink) -> list[str]:
    return [
        "link set lo up",
        f"addr add {u.router_ip}/24 dev {u.isp_ifname}",
        f"link set {u.isp_ifname} up",
        f"addr add {u.transit_isp_ip}/30 dev {ISP_UPLINK_IFNAME}",
        f"link set {ISP_UPLINK_IFNAME} up",
        f"route add default via {u.transit_cloud_ip}",
    ] + ([
        # nodad: dnsmasq and unbound cannot bind a tentative address.
        f"addr add {u.router_ip6}/64 dev {u.isp_ifname} nodad",
        f"addr add {u.transit_isp_ip6}/64 dev {ISP_UPLINK_IFNAME} nodad",
        f"route add ::/0 via {u.transit_cloud_ip6}",
    ] if u.ipv6 else [])


def _make_nat64_tun(topo: Topology, u: Uplink) -> None:
    """tayga's tun, made before tayga runs (it only opens it), with routes for both pools."""
    sh(["ip", "netns", "exec", u.isp_netns, "tayga", "--mktun", "-c", str(tayga_conf(topo, u))])
    sh(["ip", "-n", u.isp_netns, "-batch", "-"], input="\n".join([
        f"link set {NAT64_TUN} up",
        f"route add {NAT64_POOL} dev {NAT64_TUN}",
        f"route add {NAT64_PREFIX} dev {NAT64_TUN}",
    ]) + "\n")


def _cloud_commands(topo: Topology) -> list[str]:
    # No route to the ISPs' customer subnets: the ISPs NAT, so the cloud only ever
    # answers an ISP's own transit address, on the link it came in by.
    cloud = ["link set lo up", f"addr add {CLOUD_IP}/32 dev lo"]
    if topo.ipv6:
        cloud.append(f"addr add {CLOUD_IP6}/128 dev lo nodad")
    for u in _isps(topo):
        cloud += [f"addr add {u.transit_cloud_ip}/30 dev {u.cloud_ifname}",
                  f"link set {u.cloud_ifname} up"]
        if u.ipv6:
            # IPv6 is not NAT'd: the cloud routes each ISP's customer prefix back to it.
            cloud += [f"addr add {u.transit_cloud_ip6}/64 dev {u.cloud_ifname} nodad",
                      f"route add {u.prefix6} via {u.transit_isp_ip6}"]
        if u.nat64:
            # The NAT64 pool is that ISP's public face, as a carrier's NAT64 pool is.
            cloud.append(f"route add {NAT64_POOL} via {u.transit_isp_ip}")
    return cloud


def _sysctl(values: dict[str, str]) -> None:
    # /proc/sys/net shows the namespace of the thread that opens it: call in_netns.
    for key, value in values.items():
        Path("/proc/sys", key.replace(".", "/")).write_text(value)


def _set_sysctls(topo: Topology) -> None:
    for u in _isps(topo):
        in_netns(u.isp_netns, lambda: _sysctl({"net.ipv4.ip_forward": "1"}))
    gw = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}
    for u in _isps(topo):
        # A dead uplink's default route lingers (flagged linkdown) until NM drops it;
        # unbound traffic must not keep choosing it.
        gw[f"net.ipv4.conf.{u.ifname}.ignore_routes_with_linkdown"] = "1"
        gw[f"net.ipv4.conf.{u.ifname}.rp_filter"] = "0"
    in_netns(topo.gw_netns, lambda: _sysctl(gw))


def _set_sysctls6(topo: Topology) -> None:
    # The ISP's link-local address is its routers' source: tentative for DAD's ~1-2 s, the
    # first RA in answer to NM's solicitation went unused and NM solicited again 4 s later.
    isp = {"net.ipv6.conf.all.forwarding": "1",
           **{f"net.ipv6.conf.{i}.accept_dad": "0" for i in (ISP_IFNAME, ISP_UPLINK_IFNAME)}}
    for u in topo.uplinks:
        in_netns(u.isp_netns, lambda: _sysctl(isp))
    # Likewise the cloud's links: while their link-local addresses were tentative, IPv6
    # through the ISPs to the cloud timed out for the first 1-2 s after up.
    cloud = {f"net.ipv6.conf.{u.cloud_ifname}.accept_dad": "0" for u in topo.uplinks}
    in_netns(topo.cloud_netns, lambda: _sysctl(cloud))
    # NM enables IPv6 itself (disable_ipv6, accept_ra, addr_gen_mode) but never accept_dad.
    gw = {f"net.ipv6.conf.{u.ifname}.accept_dad": "0" for u in topo.uplinks}
    in_netns(topo.gw_netns, lambda: _sysctl(gw))


def remove(topo: Topology) -> None:
    """Delete the lab's namespaces and unmount whatever is still mounted under its root.

    Run after the lab's processes are dead; works from any state (half-built, crashed).
    """
    for ns in topo.namespaces:
        if netns_exists(ns):
            sh(["ip", "netns", "del", ns], check=False)
    for ns in topo.namespaces:
        if netns_exists(ns):
            # A bind mount whose namespace file lingers: unmount it, then remove the file.
            sh(["umount", "-l", f"/run/netns/{ns}"], check=False)
            with contextlib.suppress(OSError):
                os.unlink(f"/run/netns/{ns}")
    for mount in mounts_under(topo.root):
        sh(["umount", "-l", mount], check=False)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    out = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point == str(root) or mount_point.startswith(prefix):
                out.append(mount_point)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


# ---- the gateway's view -------------------------------------------------------------------

def ip_json(topo: Topology, *args: str) -> list[dict[str, Any]]:
    out = sh(["ip", "-n", topo.gw_netns, "-j", *args]).stdout
    return json.loads(out) if out.strip() else []


def addresses(topo: Topology) -> dict[str, list[str]]:
    """IPv4 addresses (CIDR) of every gateway interface."""
    out: dict[str, list[str]] = {}
    for link in ip_json(topo, "-4", "addr", "show"):
        out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
    return out


def default_routes(topo: Topology) -> list[dict[str, Any]]:
    return ip_json(topo, "-4", "route", "show", "default")


def addresses6(topo: Topology) -> dict[str, list[str]]:
    """Global IPv6 addresses (CIDR) of every gateway interface, tentative ones left out."""
    out: dict[str, list[str]] = {}
    for link in ip_json(topo, "-6", "addr", "show", "scope", "global"):
        out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                               if "local" in a and not a.get("tentative")
                               and not a.get("dadfailed")]
    return out


def default_routes6(topo: Topology) -> list[dict[str, Any]]:
    return ip_json(topo, "-6", "route", "show", "default")


def carriers(topo: Topology) -> dict[str, bool]:
    return {link["ifname"]: "NO-CARRIER" not in link.get("flags", []) and
            "UP" in link.get("flags", []) and "LOWER_UP" in link.get("flags", [])
            for link in ip_json(topo, "link", "show")}



# ---- the LAN device's view ----------------------------------------------------------------

def lan_address(topo: Topology) -> str | None:
    """The LAN device's IPv4 address (CIDR), None before its lease."""
    out = sh(["ip", "-n", topo.lan_netns, "-j", "-4", "addr", "show", "dev",
              topo.lan_device_ifname], check=False).stdout
    for link in json.loads(out) if out.strip() else []:
        for a in link.get("addr_info", []):
            return f"{a['local']}/{a['prefixlen']}"
    return None


def lan_default_gateway(topo: Topology) -> str | None:
    out = sh(["ip", "-n", topo.lan_netns, "-j", "-4", "route", "show", "default"],
             check=False).stdout
    routes = json.loads(out) if out.strip() else []
    return str(routes[0].get("gateway")) if routes else None
