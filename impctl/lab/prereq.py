"""What the lab needs of the machine: root, namespaces, and the programs, by Debian package."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from impctl.lab.daemons import daemon_path
from impctl.lab.modemctl import PLUGIN, ublox_plugin
from impctl.lab.topology import Topology
from impctl.model.errors import LabError, PermissionDenied

REQUIRED_TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nft": "nftables",
    "dbus-daemon": "dbus",
    # NM is started only once its bus name is free (impctl.lab.nm).
    "dbus-send": "dbus",
    "NetworkManager": "network-manager",
    "nmcli": "network-manager",
    "dnsmasq": "dnsmasq-base",
    "tinyproxy": "tinyproxy",
}
MODEM_TOOLS = {"ModemManager": "modemmanager", "mmcli": "modemmanager"}
# The dual-stack lab's IPv6-only ISP: NAT64 and DNS64.
IPV6_TOOLS = {"tayga": "tayga", "unbound": "unbound"}


def require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionDenied("the lab needs root (network namespaces): run it with sudo")


def check(topo: Topology) -> None:
    """Root and every needed program; a LabError names the Debian package to install."""
    require_root()
    tools = dict(REQUIRED_TOOLS)
    if topo.modem:
        tools.update(MODEM_TOOLS)
    if topo.ipv6:
        tools.update(IPV6_TOOLS)
    for tool, package in tools.items():
        if shutil.which(tool, path=daemon_path()) is None:
            raise LabError(f"{tool} not found: apt-get install {package}")
    if topo.modem:
        if ublox_plugin() is None:
            raise LabError(f"ModemManager's u-blox plugin ({PLUGIN}) not found: "
                           "apt-get install modemmanager")
        if importlib.util.find_spec("dbusmock") is None:
            raise LabError("python-dbusmock not found (the modem lab's polkit): "
                           "pip install python-dbusmock")
    if not Path("/proc/self/ns/net").exists():
        raise LabError("this kernel has no network namespaces: the lab cannot run here")
    if len(str(topo.bus_socket)) > 100:
        raise LabError(f"lab directory path too long for a unix socket: {topo.root}")
