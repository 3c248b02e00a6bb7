"""The lab's NetworkManager: start, stop, restart; nmcli and names on the lab's private bus.

NM is started only once its bus name is free: a new NM that finds
org.freedesktop.NetworkManager still owned (the old one has exited but the
bus has not yet released its name) dies with "Service already taken".
"""

from __future__ import annotations

import os
import subprocess
import time

from impctl.lab.daemons import Daemons
from impctl.lab.proc import Bind, kill_all, netns_inode, pid_netns_inode, root_netns_inode, sh
from impctl.lab.topology import Topology
from impctl.model.errors import LabError

NM_BUS_NAME = "org.freedesktop.NetworkManager"
# Seen: the name released within ~40 ms of the old NM's exit; far longer means another owner.
BUS_NAME_TIMEOUT_S = 10.0
# The bus address NM sees: the lab's run directory is its /run.
_NM_BUS_ADDRESS = "unix:path=/run/dbus/system_bus_socket"


def nmcli(topo: Topology, *args: str, check: bool = True,
          timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """nmcli against the lab's NM (a D-Bus client: it needs no namespace, just the bus)."""
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": topo.bus_address, "LC_ALL": "C"}
    proc = subprocess.run(["nmcli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"nmcli {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def nm_devices(topo: Topology) -> dict[str, tuple[str, str]]:
    """NM's device list: ifname -> (state, connection name), e.g. ("connected", "lab-eth0")."""
    out = nmcli(topo, "-t", "-f", "DEVICE,STATE,CONNECTION", "device", check=False,
                timeout=5.0).stdout
    result = {}
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            result[parts[0]] = (parts[1], parts[2])
    return result


def active_profiles(topo: Topology) -> dict[str, str]:
    """device -> UUID of its active connection."""
    out = nmcli(topo, "-t", "-f", "DEVICE,UUID", "connection", "show", "--active").stdout
    result = {}
    for line in out.splitlines():
        name, _, uuid = line.rpartition(":")
        if name:
            result[name] = uuid
    return result


def name_owned(topo: Topology, name: str) -> bool | None:
    """Whether `name` has an owner on the lab's bus; None when the bus does not answer."""
    try:
        proc = subprocess.run(
            ["dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
            capture_output=True, text=True, timeout=5.0, check=False,
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": topo.bus_address})
    except (OSError, subprocess.TimeoutExpired):
        return None
    if "boolean true" in proc.stdout:
        return True
    if "boolean false" in proc.stdout:
        return False
    return None


def wait_name_free(topo: Topology, name: str, timeout_s: float) -> None:
    """Until nobody owns `name` on the lab's bus; a LabError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        owned = name_owned(topo, name)
        if owned is False:
            return
        if time.monotonic() > deadline:
            why = "still owned" if owned else "the bus did not answer"
            raise LabError(f"{name} on the lab's bus: {why} after {timeout_s:.1f} s; "
                           "NetworkManager not started")
        time.sleep(0.01)


def start(topo: Topology, daemons: Daemons, *, name_timeout_s: float = BUS_NAME_TIMEOUT_S) -> None:
    """Spawn NM in the gateway namespace once its bus name is free; check where it runs."""
    wait_name_free(topo, NM_BUS_NAME, name_timeout_s)
    gw = topo.gw_dir
    binds: list[Bind] = [
        *topo.binds("gw", own_run=True),
        (gw / "etc-nm", "/etc/NetworkManager"),
        (gw / "var-nm", "/var/lib/NetworkManager"),
        # Last: once /run is covered, a lab directory under /run is out of sight.
        (gw / "run", "/run"),
    ]
    pid = daemons.spawn("NetworkManager", topo.gw_netns, [
        "NetworkManager", "--debug", "--log-level=INFO",
        "--config=/etc/NetworkManager/NetworkManager.conf",
        "--config-dir=/etc/NetworkManager/conf.d",
        "--state-file=/var/lib/NetworkManager/NetworkManager.state",
    ], binds, ro_sys=True, env={"DBUS_SYSTEM_BUS_ADDRESS": _NM_BUS_ADDRESS})
    _check_in_gateway(topo, daemons, pid)


def _check_in_gateway(topo: Topology, daemons: Daemons, pid: int) -> None:
    # NM must never run in the machine's own namespace: checked before anything else.
    gw_ino = netns_inode(topo.gw_netns)
    deadline = time.monotonic() + 2.0
    while True:
        daemons.expect_alive("NetworkManager")
        ino = pid_netns_inode(pid)
        if ino == gw_ino:
            break
        if ino == root_netns_inode() and time.monotonic() > deadline:
            kill_all([pid])
            raise LabError("NetworkManager is not in the gateway namespace: aborted")
        time.sleep(0.005)
    ident = sh(["ip", "netns", "identify", str(pid)], check=False).stdout.strip()
    if ident != topo.gw_netns:
        kill_all([pid])
        raise LabError(f"NetworkManager (pid {pid}) is in netns {ident or 'of the machine'}, "
                       f"not {topo.gw_netns}: aborted")


def stop(topo: Topology, daemons: Daemons) -> None:
    """SIGTERM the lab's NM (it leaves the uplinks configured) and wait until it is gone."""
    pid = daemons.labfile.pids().get("NetworkManager")
    # Only ever the lab's own NM: the recorded pid must live in the gateway namespace.
    if pid is not None and pid_netns_inode(pid) == netns_inode(topo.gw_netns):
        kill_all([pid], grace_s=10.0)
    daemons.reap("NetworkManager")
