"""The lab once up: NM in the gateway namespace manages three DHCP uplinks; cloud and proxy answer."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from impctl.lab import Lab, checks
from impctl.lab.proc import alive, netns_inode, pid_netns_inode
from impctl.model.config import parse_config
from impctl.model.errors import LabError

pytestmark = pytest.mark.lab


def _nm_pid(lab: Lab) -> int:
    return int(json.loads(lab.lab_file.read_text())["pids"]["NetworkManager"])


def test_nm_sees_three_uplinks_with_dhcp_leases(lab: Lab) -> None:
    out = lab.run(["nmcli", "-t", "-f", "DEVICE,STATE,CONNECTION", "device"], check=True).stdout
    devices = {line.split(":")[0]: line.split(":")[1:] for line in out.splitlines()}
    addrs = lab.addresses()
    routes = {r["dev"]: r for r in lab.default_routes()}
    for u in lab.uplinks:
        assert devices[u.ifname] == ["connected", u.profile_id], out
        (cidr,) = addrs[u.ifname]
        addr = ipaddress.ip_interface(cidr)
        assert addr.network == ipaddress.ip_network(u.subnet)
        # From the ISP's DHCP pool, not a fixed address.
        assert 100 <= int(str(addr.ip).rsplit(".", 1)[1]) <= 199
        assert routes[u.ifname]["gateway"] == u.router_ip
        assert routes[u.ifname]["metric"] == u.metric
        assert routes[u.ifname]["protocol"] == "dhcp"
        # The ISP's dnsmasq holds the lease it handed out.
        leases = (lab.root / "isp" / f"leases-{u.letter}").read_text()
        assert str(addr.ip) in leases


def test_networkmanager_runs_in_the_gateway_namespace_with_lab_files(lab: Lab) -> None:
    pid = _nm_pid(lab)
    ident = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True)
    assert ident.stdout.strip() == lab.gw_netns
    assert pid_netns_inode(pid) == netns_inode(lab.gw_netns)
    assert pid_netns_inode(pid) != pid_netns_inode(os.getpid())
    # What NM reads as /etc/NetworkManager and /etc/resolv.conf are the lab's files.
    nm_root = Path(f"/proc/{pid}/root")
    conf = (nm_root / "etc/NetworkManager/NetworkManager.conf").read_text()
    assert conf == (lab.gw_dir / "etc-nm" / "NetworkManager.conf").read_text()
    # resolv.conf is a symlink into NM's /run, which is the lab's (tests/lab/test_lab_isp.py).
    assert os.readlink(nm_root / "etc/resolv.conf") == "/run/NetworkManager/resolv.conf"
    assert (nm_root / "run/NetworkManager/resolv.conf").stat().st_ino == \
        lab.nm_resolv_conf.stat().st_ino
    assert sorted(p.name for p in (nm_root / "etc/NetworkManager/system-connections").iterdir()) \
        == sorted(f"{p}.nmconnection" for p in [*(u.profile_id for u in lab.uplinks),
                                                  lab.lan_profile_id])


def test_cloud_proxy_and_dns_through_every_uplink(lab: Lab) -> None:
    for u in lab.uplinks:
        assert checks.tls(lab, u.ifname) == "ok"
        assert checks.proxy_connect(lab, u.ifname) == "200"
        assert checks.proxy_connect(lab, u.ifname, credentials=False) == "407"
        assert checks.dns_a(lab, u.ifname, u.router_ip, lab.cloud_host) == ("ok", [lab.cloud_ip])
        assert checks.dns_a(lab, u.ifname, u.router_ip, lab.proxy_host) == ("ok", [lab.cloud_ip])
        # Names outside the lab are not resolved (no upstream): nothing leaves the lab.
        assert checks.dns_a(lab, u.ifname, u.router_ip, "example.com")[0] != "ok"
        sock = lab.connect(u.ifname, port=lab.cloud_http_port)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: cloud.imp.lab\r\n\r\n")
            reply = sock.recv(512)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"NetworkManager is online\n")


def test_run_executes_in_the_gateway_with_the_lab_environment(lab: Lab) -> None:
    script = ('echo "$DBUS_SYSTEM_BUS_ADDRESS|$IMPCTL_CONFIG|$IMPCTL_STATE"; '
              "ls /sys/class/net; cat /etc/resolv.conf; getent hosts cloud.imp.lab; exit 5")
    proc = lab.run(["sh", "-c", script])
    assert proc.returncode == 5
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{lab.bus_address}|{lab.config_path}|{lab.state_path}"
    assert {"eth0", "wlan0", "wwan0"} <= set(lines)
    assert "nameserver 198.18.1.1" in lines
    # Resolved by the ISPs' DNS: the gateway's hosts file does not know the name.
    assert lines[-1].split() == [lab.cloud_ip, lab.cloud_host]


def test_impctl_config_points_at_the_lab_cloud(lab: Lab) -> None:
    config = parse_config(tomllib.loads(lab.config_path.read_text()))
    assert (config.cloud.host, config.cloud.port, config.cloud.tls) == ("cloud.imp.lab", 443, True)
    assert config.cloud.ca_file == str(lab.ca_file)
    assert config.classes == {"eth0": "ethernet", "wlan0": "wifi", "wwan0": "cell"}
    assert config.identifiers == {"eth0": "eth0", "wl0": "wlan0", "cell0": "wwan0"}


def test_cli_exec_and_status(lab: Lab) -> None:
    base = [sys.executable, "-m", "impctl", "lab"]
    proc = subprocess.run([*base, "exec", "--dir", str(lab.root), "--", "sh", "-c",
                           'ip -o -4 addr show dev wlan0; exit 7'],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 7
    assert "198.18.2." in proc.stdout
    proc = subprocess.run([*base, "status", "--dir", str(lab.root), "--json"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["up"] is True
    assert {d["name"] for d in data["daemons"]} >= {"NetworkManager", "dbus", "tinyproxy",
                                                    "cloud", "dnsmasq-a"}
    assert [u["ifname"] for u in data["uplinks"] if u["addresses"]] == ["eth0", "wlan0", "wwan0"]


def test_reset_undoes_what_tests_do_to_networkmanager(lab: Lab) -> None:
    lab.nmcli("connection", "modify", "lab-wwan0", "ipv4.route-metric", "50")
    lab.nmcli("device", "reapply", "wwan0")
    lab.nmcli("device", "disconnect", "wlan0")
    lab.nmcli("networking", "off")
    assert not lab.addresses().get("eth0")
    lab.reset()
    assert lab.nmcli("networking").stdout.strip() == "enabled"
    nm = lab.nm_devices()
    for u in lab.uplinks:
        assert nm[u.ifname] == ("connected", u.profile_id)
        assert lab.uplink_healthy(u)
    assert "route-metric=700" in (lab.keyfile_dir / "lab-wwan0.nmconnection").read_text()


def test_reset_removes_foreign_profiles_and_state(lab: Lab) -> None:
    lab.state_path.write_text("{}")
    lab.nmcli("connection", "add", "type", "ethernet", "ifname", "eth0", "con-name", "foreign",
              "ipv4.method", "manual", "ipv4.addresses", "198.18.1.50/24", "ipv6.method",
              "disabled", "autoconnect", "no")
    lab.nmcli("--wait", "10", "connection", "up", "foreign")
    assert lab.addresses()["eth0"] == ["198.18.1.50/24"]
    lab.reset()
    assert not lab.state_path.exists()
    names = lab.nmcli("-t", "-f", "NAME", "connection", "show").stdout.split()
    assert "foreign" not in names
    for u in lab.uplinks:
        assert lab.uplink_healthy(u)
        assert checks.tls(lab, u.ifname) == "ok"


def test_restart_networkmanager_keeps_the_lab_working(lab: Lab) -> None:
    old_pid = _nm_pid(lab)
    lab.restart_networkmanager(down_s=0.2)
    new_pid = _nm_pid(lab)
    assert new_pid != old_pid and not alive(old_pid)
    assert pid_netns_inode(new_pid) == netns_inode(lab.gw_netns)
    assert lab.is_up()
    for u in lab.uplinks:
        assert lab.nm_devices()[u.ifname] == ("connected", u.profile_id)
        assert checks.tls(lab, u.ifname) == "ok"


def _nm_running(lab: Lab) -> bool:
    return alive(_nm_pid(lab))


def test_cli_exec_runs_with_a_dead_daemon_and_names_it(lab: Lab) -> None:
    base = [sys.executable, "-m", "impctl", "lab"]
    lab.stop_networkmanager()
    try:
        proc = subprocess.run([*base, "exec", "--dir", str(lab.root), "--", "true"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        (warning,) = proc.stderr.splitlines()
        assert warning.startswith("warning:") and "NetworkManager" in warning
        assert "dnsmasq" not in warning and "dbus" not in warning
        proc = subprocess.run([*base, "exec", "--dir", str(lab.root), "--", "sh", "-c",
                               "ip -o -4 addr show dev eth0; exit 3"],
                              capture_output=True, text=True, timeout=30)
        # NM left the uplinks configured: the command sees them.
        assert proc.returncode == 3 and "198.18.1." in proc.stdout
        assert not lab.is_up() and lab.is_built()
        assert lab.dead_daemons() == ["NetworkManager"]
    finally:
        if not _nm_running(lab):
            lab.start_networkmanager()
    proc = subprocess.run([*base, "exec", "--dir", str(lab.root), "--", "true"],
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")


# Holds NetworkManager's bus name on the lab's bus until its stdin closes.
HOLD_NM_NAME = """
import asyncio, sys
from dbus_next import BusType, RequestNameReply
from dbus_next.aio import MessageBus

async def main() -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    reply = await bus.request_name("org.freedesktop.NetworkManager")
    print("owned" if reply == RequestNameReply.PRIMARY_OWNER else reply, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def test_networkmanager_starts_only_once_its_bus_name_is_free(lab: Lab) -> None:
    lab.stop_networkmanager()
    old_pid = _nm_pid(lab)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_NM_NAME], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": lab.bus_address})
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "owned\n"
        with pytest.raises(LabError) as err:
            lab.start_networkmanager(name_timeout_s=0.3)
        assert err.value.message == ("org.freedesktop.NetworkManager on the lab's bus: still "
                                     "owned after 0.3 s; NetworkManager not started")
        assert _nm_pid(lab) == old_pid

        # The owner goes while NM waits: NM starts once the bus has released the name.
        threading.Timer(0.5, holder.stdin.close).start()
        start = time.monotonic()
        lab.start_networkmanager()
        assert time.monotonic() - start >= 0.5
        assert holder.wait(timeout=5) == 0
        new_pid = _nm_pid(lab)
        assert new_pid != old_pid and alive(new_pid)
        assert pid_netns_inode(new_pid) == netns_inode(lab.gw_netns)
        assert lab.is_up()
    finally:
        holder.kill()
        holder.wait()
        if not _nm_running(lab):
            lab.start_networkmanager()
