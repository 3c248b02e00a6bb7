"""Every lab fault has the effect it claims on its uplink only, and `restore` undoes it.

Seen from inside the gateway with sockets bound to each uplink (SO_BINDTODEVICE).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from impctl.lab import FAULTS, Lab, checks

pytestmark = pytest.mark.lab

# Short: a blackholed probe costs its whole timeout.
T = 0.4

HEALTHY = {"tls": "ok", "http": "ok", "dns": "ok", "proxy": "200", "address": True}

# What each fault does to its uplink; unlisted probes keep their healthy outcome.
EFFECT: dict[str, dict[str, object]] = {
    "link-down": {"tls": "timeout", "http": "timeout", "dns": "timeout", "proxy": "timeout"},
    "blackhole": {"tls": "timeout", "http": "timeout", "dns": "timeout", "proxy": "timeout"},
    "dns-off": {"dns": "refused"},
    "cloud-closed": {"tls": "refused", "http": "refused"},
    "proxy-down": {"proxy": "refused"},
}


def observe(lab: Lab, ifname: str) -> dict[str, object]:
    u = lab.uplink(ifname)
    return {
        "tls": checks.tls(lab, ifname, T),
        "http": checks.tcp(lab, ifname, lab.cloud_ip, lab.cloud_http_port, T),
        "dns": checks.dns_a(lab, ifname, u.router_ip, lab.cloud_host, T)[0],
        "proxy": checks.proxy_connect(lab, ifname, timeout=T),
        "address": bool(lab.addresses().get(ifname)),
    }


def wait_address(lab: Lab, ifname: str, present: bool, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if bool(lab.addresses().get(ifname)) == present:
            return True
        time.sleep(0.05)
    return False


# Each fault on a different uplink, so every uplink is broken at least once.
CASES = [(kind, ("eth0", "wlan0", "wwan0")[i % 3]) for i, kind in enumerate(FAULTS)]


@pytest.mark.parametrize(("kind", "ifname"), CASES)
def test_fault_hits_its_uplink_only_and_restore_heals(lab: Lab, kind: str, ifname: str) -> None:
    others = [u.ifname for u in lab.uplinks if u.ifname != ifname]
    lab.fault(ifname, kind)
    assert lab.faults() == {ifname: [kind]}

    if kind == "dhcp-off":
        # Re-activated and never answered: the uplink stays without an address.
        assert not lab.addresses().get(ifname)
        time.sleep(1.5)
        assert not lab.addresses().get(ifname)
        seen = observe(lab, ifname)
        assert seen["tls"] != "ok" and seen["proxy"] != "200" and seen["address"] is False
    else:
        expected = {**HEALTHY, **EFFECT[kind]}
        seen = observe(lab, ifname)
        if kind == "link-down":
            # NM drops the address once carrier-wait-timeout has passed.
            assert lab.carriers()[ifname] is False
            assert wait_address(lab, ifname, False, 3.0)
            expected["address"] = False
            seen["address"] = bool(lab.addresses().get(ifname))
        assert seen == expected

    for other in others:
        assert observe(lab, other) == HEALTHY, other

    lab.restore(ifname)
    assert lab.faults() == {}
    assert observe(lab, ifname) == HEALTHY


def test_faults_combine_and_restore_undoes_all(lab: Lab) -> None:
    lab.fault("wlan0", "dns-off")
    lab.fault("wlan0", "proxy-down")
    assert lab.faults() == {"wlan0": ["dns-off", "proxy-down"]}
    seen = observe(lab, "wlan0")
    assert (seen["dns"], seen["proxy"], seen["tls"]) == ("refused", "refused", "ok")
    lab.restore("wlan0")
    assert observe(lab, "wlan0") == HEALTHY


def test_cli_fault_and_restore(lab: Lab) -> None:
    base = [sys.executable, "-m", "impctl", "lab", "fault"]
    proc = subprocess.run([*base, "wwan0", "cloud-closed", "--dir", str(lab.root), "--json"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["data"]["active"] == {"wwan0": ["cloud-closed"]}
    assert checks.tls(lab, "wwan0", T) == "refused"
    proc = subprocess.run([*base, "wwan0", "restore", "--dir", str(lab.root)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks.tls(lab, "wwan0", T) == "ok"

    proc = subprocess.run([*base, "wwan0", "meteor", "--dir", str(lab.root), "--json"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 8
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "lab_error" and "unknown fault 'meteor'" in error["message"]
    proc = subprocess.run([*base, "eth9", "blackhole", "--dir", str(lab.root)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 8 and "no lab uplink 'eth9'" in proc.stderr
