"""A probe of every uplink dual-stack vs IPv4 only, alternating in one run; medians.

Run inside a dual-stack lab's gateway namespace (goal: dual-stack / IPv4-only <= 1.1):

    impctl lab exec --dir DIR -- .venv/bin/python bench/probe_dualstack_bench.py --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from impctl.backends.config_file import load_config
from impctl.backends.netlink import Netlink
from impctl.backends.nm import read_inventory
from impctl.backends.probe_net import BoundSockets
from impctl.cli.context import CONFIG_ENV, DEFAULT_CONFIG_PATH
from impctl.usecases.probe import probe_all


async def once(dual: bool) -> tuple[float, int]:
    """One probe of every uplink: the inventory read (with the applied ipv6.method the
    dual-stack probe needs) and the probe, as `impctl probe` runs them."""
    config = load_config(Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH), explicit=False)
    started = time.monotonic()
    devices = await read_inventory(config, timeout_s=5.0, ipv6_method=dual)
    links = Netlink()
    results = await probe_all(devices, config, lambda d: None, links=links, net=BoundSockets(),
                              deadline=started + 10.0, links6=links if dual else None)
    return (time.monotonic() - started) * 1000, sum(len(r.reaches) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    times: dict[bool, list[float]] = {True: [], False: []}
    reached: dict[bool, int] = {}
    for _ in range(args.runs):
        for dual in (False, True):
            ms, n = asyncio.run(once(dual))
            times[dual].append(ms)
            reached[dual] = n
    v4, ds = statistics.median(times[False]), statistics.median(times[True])
    print(f"runs {args.runs}: IPv4 only median {v4:.1f} ms (families reaching {reached[False]}), "
          f"dual-stack median {ds:.1f} ms (families reaching {reached[True]}), ratio {ds / v4:.2f}")


if __name__ == "__main__":
    main()
