"""The dual-stack lab (Lab(ipv6=True)): SLAAC uplinks, the cloud over IPv6, IPv6 source
validation, the IPv6-only cellular uplink through DNS64/NAT64, and the IPv6 faults.

One lab for the module (`ipv6_lab`), reset before each test.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from impctl.lab import Lab, checks
from impctl.lab.checks import cloud_peers
from impctl.lab.health import ipv4_healthy
from impctl.lab.topology import CLOUD_IP6, NAT64_POOL, NAT64_WKP, V4ONLY_HOST
from impctl.model.errors import LabError

pytestmark = pytest.mark.lab


def address6(lab: Lab, ifname: str) -> str:
    addrs = lab.addresses6().get(ifname, [])
    assert len(addrs) == 1, (ifname, addrs)
    return addrs[0].split("/")[0]


def connect6(lab: Lab, ifname: str, ip: str = CLOUD_IP6, source: str | None = None) -> str:
    """Outcome of a TCP connect over IPv6 to the cloud's TLS port through `ifname`."""
    sock = lab.bound_socket(ifname, family=socket.AF_INET6)
    sock.settimeout(0.5)
    try:
        if source is not None:
            sock.bind((source, 0))
        sock.connect((ip, lab.cloud_port))
        return "ok"
    except OSError as err:
        return type(err).__name__
    finally:
        sock.close()


def nm_metrics(lab: Lab, profile: str) -> tuple[str, str]:
    out = lab.nmcli("-g", "ipv4.route-metric,ipv6.route-metric", "connection", "show", profile).stdout
    v4, v6 = out.strip().splitlines()
    return v4, v6


def test_the_cloud_answers_over_ipv6_and_sees_the_gateways_own_address(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    # First in the module, right after up: IPv6 through every ISP works at once (with DAD on
    # the cloud's links it timed out for 1-2 s after up; a 2 s connect would hide that).
    assert [checks.tcp(lab, u.ifname, CLOUD_IP6, lab.cloud_port, timeout=0.3)
            for u in lab.uplinks] == ["ok"] * 3
    for u in lab.uplinks:
        with lab.connect(u.ifname, CLOUD_IP6) as sock:
            mine = address6(lab, u.ifname)
            assert sock.getsockname()[0] == mine
            # No NAT for IPv6: the cloud sees the gateway's SLAAC address.
            assert cloud_peers(lab) == [mine]
    # The name has both records at every dual-stack ISP.
    for u in lab.uplinks[:2]:
        assert checks.dns_aaaa(lab, u.ifname, u.router_ip6, lab.cloud_host) == ("ok", [CLOUD_IP6])
        assert checks.dns_a(lab, u.ifname, u.router_ip6, lab.cloud_host) == ("ok", [lab.cloud_ip])


def test_every_uplink_has_a_slaac_address_and_an_ipv6_default_route_with_its_metric(
        ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    routes6 = lab.default_routes6()
    for u in lab.uplinks:
        addr = ipaddress.ip_address(address6(lab, u.ifname))
        assert addr in ipaddress.ip_network(u.prefix6), (u.ifname, addr)
        mine = [r for r in routes6 if r["dev"] == u.ifname]
        assert len(mine) == 1, (u.ifname, routes6)
        assert mine[0]["metric"] == u.metric and mine[0]["gateway"].startswith("fe80:")
        # NM's profile: the IPv6 metric set to the IPv4 one (none where IPv4 is disabled).
        assert nm_metrics(lab, u.profile_id) == (str(u.metric) if u.ipv4 else "-1", str(u.metric))
    # Dual-stack uplinks keep their IPv4 lease; the cellular one is IPv6-only.
    addrs = lab.addresses()
    assert [u.ifname for u in lab.uplinks if u.ipv4] == ["eth0", "wlan0"]
    assert addrs["eth0"] and addrs["wlan0"] and not addrs.get("wwan0")
    assert not [r for r in lab.default_routes() if r["dev"] == "wwan0"]


def test_an_isp_drops_ipv6_sources_outside_its_prefix(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    eth0, wlan0 = address6(lab, "eth0"), address6(lab, "wlan0")
    assert connect6(lab, "wlan0", source=wlan0) == "ok"
    assert connect6(lab, "eth0", source=wlan0) == "TimeoutError"
    assert connect6(lab, "wlan0", source=eth0) == "TimeoutError"
    assert connect6(lab, "eth0", source=eth0) == "ok"


def test_the_ipv6_only_uplink_reaches_an_ipv4_only_name_through_dns64_and_nat64(
        ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    c = lab.uplink("wwan0")
    outcome, aaaa = checks.dns_aaaa(lab, "wwan0", c.router_ip6, V4ONLY_HOST)
    assert outcome == "ok" and len(aaaa) == 1
    synthesized = ipaddress.ip_address(aaaa[0])
    assert synthesized in ipaddress.ip_network(NAT64_WKP)
    assert ipaddress.ip_address(synthesized.packed[-4:]) == ipaddress.ip_address(lab.cloud_ip)
    # Synthesised by ISP C's DNS64 only: ISP A has no AAAA for the name; a name with its
    # own AAAA is answered with it.
    assert checks.dns_aaaa(lab, "eth0", lab.uplink("eth0").router_ip6, V4ONLY_HOST) == ("ok", [])
    assert checks.dns_aaaa(lab, "wwan0", c.router_ip6, lab.cloud_host) == ("ok", [CLOUD_IP6])
    with lab.connect("wwan0", str(synthesized)) as sock:
        assert sock.getsockname()[0] == address6(lab, "wwan0")
        peers = cloud_peers(lab)
        assert len(peers) == 1 and ipaddress.ip_address(peers[0]) in ipaddress.ip_network(NAT64_POOL)


def test_dns64_and_nat64_run_only_in_the_cellular_isp(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    c = lab.uplink("wwan0")
    pids = {d.name: d.pid for d in lab.status().daemons if d.alive}
    for name in (c.unbound, c.tayga):
        assert pids[name] is not None
        ident = subprocess.run(["ip", "netns", "identify", str(pids[name])], capture_output=True,
                               text=True, check=True).stdout.strip()
        assert ident == c.isp_netns, name
        cmdline = Path(f"/proc/{pids[name]}/cmdline").read_bytes().split(b"\0")
        config = cmdline[cmdline.index(b"-c") + 1].decode()
        assert config.startswith(str(lab.root) + "/"), (name, config)


def test_blackhole6_drops_ipv6_only_and_restore_undoes_it(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    lab.fault("eth0", "blackhole6")
    assert checks.tcp(lab, "eth0", CLOUD_IP6, lab.cloud_port) == "timeout"
    assert checks.tcp(lab, "eth0", lab.cloud_ip, lab.cloud_port) == "ok"
    assert checks.tcp(lab, "wlan0", CLOUD_IP6, lab.cloud_port) == "ok"
    lab.restore("eth0")
    assert checks.tcp(lab, "eth0", CLOUD_IP6, lab.cloud_port) == "ok"


def test_blackhole_keeps_its_ipv4_meaning_on_a_dual_stack_uplink(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    lab.fault("eth0", "blackhole")
    assert checks.tcp(lab, "eth0", lab.cloud_ip, lab.cloud_port) == "timeout"
    assert checks.tcp(lab, "eth0", CLOUD_IP6, lab.cloud_port) == "ok"
    lab.restore("eth0")
    assert checks.tcp(lab, "eth0", lab.cloud_ip, lab.cloud_port) == "ok"


def test_ra_off_leaves_the_uplink_without_ipv6_and_restore_brings_it_back(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    u = lab.uplink("wlan0")
    lab.fault("wlan0", "ra-off")
    assert not lab.addresses6().get("wlan0")
    assert not [r for r in lab.default_routes6() if r["dev"] == "wlan0"]
    # IPv4 is untouched: the re-activated profile has its lease and route again.
    assert _eventually(lambda: ipv4_healthy(u, lab.addresses(), lab.default_routes()))
    assert not lab.uplink_healthy(u)
    assert checks.tcp(lab, "wlan0", CLOUD_IP6, lab.cloud_port) != "ok"
    lab.restore("wlan0")
    assert lab.uplink_healthy(u)
    assert checks.tcp(lab, "wlan0", CLOUD_IP6, lab.cloud_port) == "ok"


def test_dns6_off_silences_the_ipv6_dns_server_only(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    u = lab.uplink("eth0")
    lab.fault("eth0", "dns6-off")
    assert checks.dns_aaaa(lab, "eth0", u.router_ip6, lab.cloud_host)[0] == "timeout"
    assert checks.dns_aaaa(lab, "eth0", u.router_ip, lab.cloud_host) == ("ok", [CLOUD_IP6])
    assert checks.dns_aaaa(lab, "wlan0", lab.uplink("wlan0").router_ip6, lab.cloud_host)[0] == "ok"
    lab.restore("eth0")
    assert checks.dns_aaaa(lab, "eth0", u.router_ip6, lab.cloud_host) == ("ok", [CLOUD_IP6])


def _eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_an_ipv6_fault_is_refused_in_the_ipv4_only_lab(lab: Lab) -> None:
    assert not lab.ipv6 and not lab.uplink("eth0").ipv6
    with pytest.raises(LabError, match="ra-off is an IPv6 fault and eth0 has no IPv6"):
        lab.fault("eth0", "ra-off")
    assert lab.faults() == {}


# ---------------------------------------------------------------- impctl probe, per family


def probe(lab: Lab, *args: str, config: Path | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    """`impctl probe --json ARGS` in the gateway: (exit code, identifier -> interface result)."""
    pre = ["--config", str(config)] if config else []
    proc = lab.run([sys.executable, "-m", "impctl", *pre, "probe", "--json", *args], timeout=30)
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode, proc.stderr
    return proc.returncode, {i["ifname"]: i for i in doc["data"]["interfaces"]}


def family(item: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in item["families"] if f["family"] == name)


def test_probe_reaches_the_cloud_over_both_families_on_dual_stack_uplinks(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    code, result = probe(lab, "--require-family", "all", "eth0", "wlan0")
    assert code == 0, result
    for ifname in ("eth0", "wlan0"):
        item = result[ifname]
        assert item["reaches"] == ["ipv4", "ipv6"] and item["warnings"] == []
        v6 = family(item, "ipv6")
        assert v6["details"]["resolved"] == CLOUD_IP6 and v6["details"]["tls"].startswith("TLS")
        assert ipaddress.ip_address(v6["details"]["address"].split("/")[0]) in \
            ipaddress.ip_network(lab.uplink(ifname).prefix6)


def test_probe_reaches_an_ipv4_only_name_from_the_ipv6_only_uplink_through_nat64(
        ipv6_lab: Lab, tmp_path: Path) -> None:
    lab = ipv6_lab
    text = Path(lab.config_path).read_text()
    config = tmp_path / "v4only.toml"
    # The cloud's certificate names cloud.imp.lab: the TLS name stays that.
    config.write_text(text.replace(f'host = "{lab.cloud_host}"',
                                   f'host = "{V4ONLY_HOST}"\nserver_name = "{lab.cloud_host}"'))
    code, result = probe(lab, "wwan0", config=config)
    item = result["wwan0"]
    assert code == 0 and item["reaches"] == ["ipv6"], item
    v6 = family(item, "ipv6")
    assert ipaddress.ip_address(v6["details"]["resolved"]) in ipaddress.ip_network(NAT64_WKP)
    assert [w.split(" ")[:2] for w in item["warnings"]] == [["ipv4:", "NO_IP_ADDRESS"]]
    assert probe(lab, "wwan0", "--require-family", "ipv4", config=config)[0] != 0


@pytest.mark.parametrize(("kind", "ifname", "code_name", "stage"), [
    ("blackhole6", "eth0", "NOT_RESOLVED", "dns"),
    ("dns6-off", "eth0", "NOT_RESOLVED", "dns"),
    ("ra-off", "wlan0", "NO_IP_ADDRESS", "address"),
])
def test_each_ipv6_fault_is_a_warning_under_any_and_a_failure_under_all_and_ipv6(
        ipv6_lab: Lab, kind: str, ifname: str, code_name: str, stage: str) -> None:
    lab = ipv6_lab
    lab.fault(ifname, kind)
    try:
        code, result = probe(lab, ifname)
        item = result[ifname]
        assert code == 0 and item["code_name"] == "SERVER_CONNECTED" and item["reaches"] == ["ipv4"]
        (warning,) = item["warnings"]
        assert warning.startswith(f"ipv6: {code_name} (") and f") {stage}: " in warning, warning
        for require in ("all", "ipv6"):
            code, result = probe(lab, ifname, "--require-family", require)
            assert result[ifname]["code_name"] == code_name and code == 10 + int(result[ifname]["code"])
            assert result[ifname]["reason"].startswith(f"{stage}: ")
    finally:
        lab.restore(ifname)


def test_status_shows_each_uplinks_ipv6_address_gateway_and_dns(ipv6_lab: Lab) -> None:
    lab = ipv6_lab
    proc = lab.run([sys.executable, "-m", "impctl", "status", "--json"], timeout=30)
    rows = {d["ifname"]: d for d in json.loads(proc.stdout)["data"]["interfaces"]}
    for u in lab.uplinks:
        v6 = rows[u.ifname]["ipv6"]
        (addr,) = v6["addresses"]
        assert ipaddress.ip_address(addr.split("/")[0]) in ipaddress.ip_network(u.prefix6), v6
        assert v6["gateway"] is not None and v6["gateway"].startswith("fe80:"), v6
        assert v6["dns"] == [u.router_ip6], v6
    human = lab.run([sys.executable, "-m", "impctl", "status"], timeout=30).stdout
    assert all(address6(lab, u.ifname) in human for u in lab.uplinks), human
