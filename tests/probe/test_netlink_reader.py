"""impctl.backends.netlink's own decoder of links, addresses and routes, against the kernel.

A network namespace of the test's own (`impt<pid>nl`) with veth interfaces whose
addresses and routes `ip` sets up; the reader runs inside it (`ip netns exec`) and
must report what the kernel holds: usable addresses only, the default route through
the interface (the lowest metric, of any table), nothing of another interface's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.lab

READ = """
import asyncio, json, sys
from impctl.backends.netlink import Netlink
from impctl.model.errors import ImpctlError

async def main():
    links, out = Netlink(), {}
    for name in sys.argv[1:]:
        try:
            link, v4, v6 = await asyncio.gather(links.link_state(name), links.ipv4(name), links.ipv6(name))
            out[name] = {"link": [link.index, link.admin_up, link.carrier, link.operstate, link.kind],
                         "v4": [list(v4.addresses), v4.gateway, v4.default_route_linkdown],
                         "v6": [list(v6.addresses), v6.gateway, v6.enabled]}
        except ImpctlError as err:
            out[name] = {"error": f"{type(err).__name__}: {err.message}"}
    print(json.dumps(out))

asyncio.run(main())
"""


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[str]:
    ns = f"impt{os.getpid()}nl"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def ifindex(ns: str, name: str) -> int:
    done = subprocess.run(["ip", "-n", ns, "-j", "link", "show", name], check=True, capture_output=True,
                          text=True, timeout=10)
    return int(json.loads(done.stdout)[0]["ifindex"])


def read(ns: str, *names: str) -> dict[str, dict[str, list[object] | str]]:
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", READ, *names],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, dict[str, list[object] | str]] = json.loads(done.stdout)
    return result


def test_the_reader_reports_the_kernels_addresses_and_default_routes(netns: str) -> None:
    ns = netns
    for name in ("up0", "up1", "bare0"):
        ip(ns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.bare0.disable_ipv6=1"],
                   check=True, capture_output=True, timeout=10)
    ip(ns, "link", "set", "lo", "up")
    for name in ("up0", "up1", "bare0"):
        ip(ns, "link", "set", f"{name}p", "up")
        ip(ns, "link", "set", name, "up")
    ip(ns, "addr", "add", "198.18.1.50/24", "dev", "up0")
    ip(ns, "addr", "add", "198.18.1.51/24", "dev", "up0")  # a secondary: both listed, in order
    ip(ns, "addr", "add", "2001:db8:1::50/64", "dev", "up0", "nodad")
    ip(ns, "addr", "add", "2001:db8:1::99/64", "dev", "up0")  # DAD pending: tentative, not usable
    ip(ns, "addr", "add", "198.18.2.50/24", "dev", "up1")
    ip(ns, "addr", "add", "2001:db8:2::50/64", "dev", "up1", "nodad")
    # up0: two defaults per family, the lower metric wins; up1's only IPv6 default
    # sits in a policy-routing table, its IPv4 one has no gateway (on-link).
    ip(ns, "route", "add", "default", "via", "198.18.1.1", "dev", "up0", "metric", "200")
    ip(ns, "route", "add", "default", "via", "198.18.1.2", "dev", "up0", "metric", "100")
    ip(ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", "up0", "metric", "300")
    ip(ns, "-6", "route", "add", "default", "via", "fe80::2", "dev", "up0", "metric", "50")
    ip(ns, "-6", "route", "add", "default", "via", "fe80::3", "dev", "up1", "table", "100")
    ip(ns, "route", "add", "default", "dev", "up1", "metric", "500")  # on-link, higher metric
    ip(ns, "route", "add", "default", "dev", "bare0", "metric", "600")  # on-link only: no via
    # A non-default route must not count, nor a default of another interface (up1's
    # lower-metric one must not become up0's).
    ip(ns, "route", "add", "203.0.113.0/24", "via", "198.18.1.9", "dev", "up0")
    ip(ns, "route", "add", "default", "via", "198.18.2.1", "dev", "up1", "metric", "10")

    got = read(ns, "up0", "up1", "bare0", "lo", "gone0")
    links = {name: got[name].pop("link") for name in ("up0", "up1", "bare0", "lo")}

    assert got["up0"] == {"v4": [["198.18.1.50/24", "198.18.1.51/24"], "198.18.1.2", False],
                          "v6": [["2001:db8:1::50/64"], "fe80::2", True]}
    assert got["up1"] == {"v4": [["198.18.2.50/24"], "198.18.2.1", False],
                          "v6": [["2001:db8:2::50/64"], "fe80::3", True]}
    # IPv6 disabled: no address at all (not even link-local), hence not enabled.
    assert got["bare0"] == {"v4": [[], "0.0.0.0", False], "v6": [[], None, False]}
    # Loopback's ::1 is host scope, not global; 127.0.0.1 is an IPv4 address like any.
    assert got["lo"] == {"v4": [["127.0.0.1/8"], None, False], "v6": [[], None, True]}
    assert got["gone0"] == {"error": "NoSuchInterface: no interface 'gone0' in this network namespace"}
    assert links["lo"] == [1, True, True, "UNKNOWN", None]
    for name in ("up0", "up1", "bare0"):
        index, *rest = links[name]
        assert rest == [True, True, "UP", "veth"], name
        assert index == ifindex(ns, name)


def test_a_default_route_of_a_link_without_carrier_is_flagged_linkdown(netns: str) -> None:
    ns = netns
    ip(ns, "link", "add", "vA", "type", "veth", "peer", "name", "vB")
    ip(ns, "link", "set", "vA", "up")  # its peer stays down: no carrier
    ip(ns, "addr", "add", "198.18.3.50/24", "dev", "vA")
    ip(ns, "route", "add", "default", "via", "198.18.3.1", "dev", "vA")

    got = read(ns, "vA", "vB")

    assert got["vA"]["v4"] == [["198.18.3.50/24"], "198.18.3.1", True]
    # Up without a peer: no carrier, operstate LOWERLAYERDOWN; its peer is down.
    assert got["vA"]["link"][1:] == [True, False, "LOWERLAYERDOWN", "veth"]
    assert got["vB"]["link"][1:] == [False, False, "DOWN", "veth"]
