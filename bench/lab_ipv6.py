"""The dual-stack lab's IPv6 paths and faults, timed: median and max of N tries each.

    sudo .venv/bin/python bench/lab_ipv6.py [-n 20]

Builds its own Lab(ipv6=True): bound TCP connects to the cloud's AAAA through
each uplink, through wwan0's NAT64 to the IPv4-only name's synthesised
address, AAAA lookups (wwan0's DNS64, eth0's dnsmasq), then each IPv6 fault
applied and restored (restore ends when the uplink is healthy again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from impctl.lab import Lab, checks
from impctl.lab.topology import CLOUD_IP6, V4ONLY_HOST


def timed(n: int, fn: Callable[[], object]) -> str:
    values = []
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        values.append((time.perf_counter() - start) * 1000)
        ok = result == "ok" or (isinstance(result, tuple) and result[0] == "ok" and result[1])
        if not ok:
            raise SystemExit(f"failed: {result}")
    return f"median={statistics.median(values):.2f} ms max={max(values):.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="tries of each connect or lookup")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="impctl-bench-") as tmp:
        lab = Lab(Path(tmp) / "lab", f"impb{os.getpid() % 10000}v", ipv6=True)
        lab.up(replace=True)
        try:
            c = lab.uplink("wwan0")
            _, synthesised = checks.dns_aaaa(lab, "wwan0", c.router_ip6, V4ONLY_HOST)
            for u in lab.uplinks:
                print(f"{u.ifname:5} tcp [{CLOUD_IP6}]:443        "
                      + timed(args.n, lambda u=u: checks.tcp(lab, u.ifname, CLOUD_IP6, lab.cloud_port)))
            print(f"wwan0 tcp [{synthesised[0]}]:443 (NAT64) "
                  + timed(args.n, lambda: checks.tcp(lab, "wwan0", synthesised[0], lab.cloud_port)))
            print(f"wwan0 AAAA {V4ONLY_HOST} (DNS64)      "
                  + timed(args.n, lambda: checks.dns_aaaa(lab, "wwan0", c.router_ip6, V4ONLY_HOST)))
            a = lab.uplink("eth0")
            print(f"eth0  AAAA {lab.cloud_host} (dnsmasq)     "
                  + timed(args.n, lambda: checks.dns_aaaa(lab, "eth0", a.router_ip6, lab.cloud_host)))
            for kind, ifname in (("blackhole6", "eth0"), ("dns6-off", "eth0"), ("ra-off", "wlan0"),
                                 ("ra-off", "wwan0")):
                start = time.perf_counter()
                lab.fault(ifname, kind)
                applied = time.perf_counter() - start
                start = time.perf_counter()
                lab.restore(ifname)
                print(f"{kind:10} on {ifname:5} applied in {applied:.3f} s, "
                      f"restored in {time.perf_counter() - start:.3f} s")
        finally:
            lab.down()


if __name__ == "__main__":
    main()
