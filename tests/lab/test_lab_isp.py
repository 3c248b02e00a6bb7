"""The lab's ISPs behave like real ones.

Every ISP forwards only its customers' source addresses (BCP38) and
masquerades towards the cloud.
"""

from __future__ import annotations

import subprocess

import pytest

from impctl.lab import Lab, checks
from impctl.lab.faults import ISP_TABLE

pytestmark = pytest.mark.lab


def cloud_peers(lab: Lab) -> list[str]:
    """Peer addresses of the cloud's established TLS connections."""
    out = subprocess.run(["ip", "netns", "exec", lab.cloud_netns, "ss", "-Htn", "state",
                          "established", "sport", "=", f":{lab.cloud_port}"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[-1].rpartition(":")[0] for line in out.splitlines()]


def address(lab: Lab, ifname: str) -> str:
    return lab.addresses()[ifname][0].split("/")[0]


def spoofed_connect(lab: Lab, ifname: str, source: str) -> str:
    sock = lab.bound_socket(ifname)
    sock.settimeout(0.5)
    try:
        sock.bind((source, 0))
        sock.connect((lab.cloud_ip, lab.cloud_port))
        return "ok"
    except OSError as err:
        return type(err).__name__
    finally:
        sock.close()


def test_the_cloud_sees_the_isps_address_not_the_gateways(lab: Lab) -> None:
    for u in lab.uplinks:
        with lab.connect(u.ifname) as sock:
            assert sock.getsockname()[0] == address(lab, u.ifname)
            assert cloud_peers(lab) == [u.transit_isp_ip]


def test_an_isp_drops_sources_outside_its_customer_subnet(lab: Lab) -> None:
    eth0, wlan0 = address(lab, "eth0"), address(lab, "wlan0")
    # The same source address passes its own ISP and is dropped by the other one.
    assert spoofed_connect(lab, "wlan0", wlan0) == "ok"
    assert spoofed_connect(lab, "eth0", wlan0) == "TimeoutError"
    assert spoofed_connect(lab, "wlan0", eth0) == "TimeoutError"
    assert spoofed_connect(lab, "eth0", eth0) == "ok"


def test_faults_come_and_go_on_top_of_the_isp(lab: Lab) -> None:
    before = subprocess.run(["ip", "netns", "exec", lab.uplink("eth0").isp_netns, "nft", "list",
                             "table", "inet", ISP_TABLE], capture_output=True, text=True, check=True)
    lab.fault("eth0", "blackhole")
    assert checks.tls(lab, "eth0", 0.4) == "timeout"
    lab.fault("eth0", "cloud-closed")
    lab.restore("eth0")
    after = subprocess.run(["ip", "netns", "exec", lab.uplink("eth0").isp_netns, "nft", "list",
                            "table", "inet", ISP_TABLE], capture_output=True, text=True, check=True)
    assert after.stdout == before.stdout and "masquerade" in after.stdout
    assert checks.tls(lab, "eth0") == "ok"
    assert spoofed_connect(lab, "eth0", address(lab, "wlan0")) == "TimeoutError"
