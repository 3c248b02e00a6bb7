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
from impctl.model.state import State
from impctl.usecases.probe import probe_gateway


async def once(dual: bool) -> tuple[float, int]:
    config = load_config(Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH), explicit=False)

    async def inventory(cfg, t):  # type: ignore[no-untyped-def]
        return await read_inventory(cfg, timeout_s=t, ipv6_method=True)

    started = time.monotonic()
    report = await probe_gateway(config, State(), [], inventory=inventory, links=Netlink(), net=BoundSockets(),
                                 decrypt=lambda s, w: None, timeout_s=10.0, dual_stack=dual)
    return (time.monotonic() - started) * 1000, sum(len(r.reaches) for r in report.results)


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
