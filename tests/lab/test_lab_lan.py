"""The LAN behind the gateway: a device leased by NM's shared mode, NAT'd out through the primary.

And impctl treats the gateway's LAN port as what it is: not an uplink.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time

import pytest

from impctl.lab import Lab
from impctl.lab.checks import cloud_peers

pytestmark = pytest.mark.lab



def seen_by_cloud_from_lan(lab: Lab) -> list[str]:
    sock = lab.open_socket(netns=lab.lan_netns)
    sock.settimeout(2.0)
    with sock:
        sock.connect((lab.cloud_ip, lab.cloud_port))
        return cloud_peers(lab)


def test_the_lan_device_is_leased_by_the_gateway(lab: Lab) -> None:
    addr = lab.lan_address()
    assert addr is not None
    assert ipaddress.ip_interface(addr).network == ipaddress.ip_network(lab.lan_subnet)
    assert lab.addresses()[lab.lan_ifname] == [f"{lab.lan_gateway_ip}/24"]
    assert lab.nm_devices()[lab.lan_ifname] == ("connected", lab.lan_profile_id)
    routes = lab.run_lan(["ip", "-4", "route", "show", "default"], check=True).stdout
    assert routes.split()[:3] == ["default", "via", lab.lan_gateway_ip]
    # Its resolver is the gateway's (NM's dnsmasq), learnt from the lease.
    resolv = lab.run_lan(["cat", "/etc/resolv.conf"], check=True).stdout
    assert f"nameserver {lab.lan_gateway_ip}" in resolv.splitlines()


def test_the_lan_device_reaches_the_cloud_by_name_through_the_gateway(lab: Lab) -> None:
    proc = lab.run_lan(["curl", "-sS", "-m", "5", "--cacert", str(lab.ca_file),
                        f"https://{lab.cloud_host}/"], timeout=15)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"


def test_the_cloud_sees_the_primary_isps_address_for_the_lan_device(lab: Lab) -> None:
    assert seen_by_cloud_from_lan(lab) == [lab.uplink("eth0").transit_isp_ip]
    # Make wlan0 the primary: new LAN flows leave through it, NAT'd by the gateway and ISP B.
    lab.nmcli("connection", "modify", "lab-wlan0", "ipv4.route-metric", "50")
    lab.nmcli("device", "reapply", "wlan0")
    deadline = time.monotonic() + 5.0
    while not any(r.get("dev") == "wlan0" and r.get("metric") == 50 for r in lab.default_routes()):
        assert time.monotonic() < deadline, lab.default_routes()
        time.sleep(0.02)
    assert seen_by_cloud_from_lan(lab) == [lab.uplink("wlan0").transit_isp_ip]


def impctl_json(lab: Lab, *args: str) -> dict[str, object]:
    proc = lab.run([sys.executable, "-m", "impctl", *args, "--json"], timeout=60)
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


def test_probe_and_status_leave_the_lan_port_out_of_the_uplinks(lab: Lab) -> None:
    probe = impctl_json(lab, "probe", "--all")
    assert probe["exit_code"] == 0
    data = probe["data"]
    assert isinstance(data, dict)
    assert [(i["identifier"], i["ifname"]) for i in data["interfaces"]] == [
        ("eth0", "eth0"), ("wl0", "wlan0"), ("cell0", "wwan0")]
    assert impctl_json(lab, "probe", "eth1")["error"] == {
        "kind": "no_such_interface",
        "message": "'eth1' names no interface of this gateway "
                   "(interfaces: eth0 (eth0), wl0 (wlan0), cell0 (wwan0))"}
    status = impctl_json(lab, "status")["data"]
    assert isinstance(status, dict)
    assert [(i["ifname"], i["role"]) for i in status["interfaces"]] == [
        ("eth0", "uplink"), ("wlan0", "uplink"), ("wwan0", "uplink")]
    (lan,) = status["lan"]
    assert (lan["ifname"], lan["role"], lan["identifier"], lan["addresses"], lan["profile"]) == (
        lab.lan_ifname, "lan", "", [f"{lab.lan_gateway_ip}/24"], lab.lan_profile_id)


def test_lab_status_and_exec_show_the_lan(lab: Lab) -> None:
    base = [sys.executable, "-m", "impctl", "lab"]
    proc = subprocess.run([*base, "status", "--dir", str(lab.root), "--json"],
                          capture_output=True, text=True, timeout=30)
    lan = json.loads(proc.stdout)["data"]["lan"]
    assert (lan["ifname"], lan["nm_state"], lan["device_netns"], lan["device_router"]) == (
        lab.lan_ifname, "connected", lab.lan_netns, lab.lan_gateway_ip)
    assert lan["device_address"] == lab.lan_address()
    proc = subprocess.run([*base, "exec", "--dir", str(lab.root), "--lan", "--", "sh", "-c",
                           f"ip -o -4 addr show dev {lab.lan_device_ifname}; exit 3"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert lab.lan_address() in proc.stdout
