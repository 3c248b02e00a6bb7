"""Lab up/down timing: N cycles of Lab.up() and Lab.down(), median and max.

    sudo .venv/bin/python bench/lab_updown.py [-n 10] [--modem] [--ipv6]

"up" ends when NetworkManager has DHCP leases and default routes on all
three uplinks and the cloud, TLS and proxy ports accept connections (with
--modem: when ModemManager shows the modem registered); "down" ends when
every lab process is dead and the namespaces and lab directory are gone.
With --ipv6 (the dual-stack lab), "up" also waits for every uplink's SLAAC
address and IPv6 default route.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from impctl.lab import Lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="cycles")
    parser.add_argument("--modem", action="store_true")
    parser.add_argument("--ipv6", action="store_true", help="the dual-stack lab")
    args = parser.parse_args()
    ups: list[float] = []
    downs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="impctl-bench-") as tmp:
        lab = Lab(Path(tmp) / "lab", f"impb{os.getpid() % 10000}", modem=args.modem, ipv6=args.ipv6)
        for _ in range(args.n):
            start = time.monotonic()
            lab.up(replace=True)
            ups.append(time.monotonic() - start)
            start = time.monotonic()
            lab.down()
            downs.append(time.monotonic() - start)
    for name, values in (("up", ups), ("down", downs)):
        print(f"{name:4} n={len(values)} median={statistics.median(values):.3f} s "
              f"max={max(values):.3f} s min={min(values):.3f} s")


if __name__ == "__main__":
    main()
