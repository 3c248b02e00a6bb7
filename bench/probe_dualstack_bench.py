"""A probe of every uplink dual-stack vs IPv4 only, interleaved in one run; medians.

Run inside a dual-stack lab's gateway namespace (goal: dual-stack / IPv4-only <= 1.1).
`lab exec` sets IMPCTL_CONFIG (the lab's config: its cloud, CA file) and the lab's
system bus, so the bench reads the lab's NetworkManager and probes its uplinks:

    impctl lab up --ipv6 --prefix pb --dir /run/impctl-lab-pb
    impctl lab exec --dir /run/impctl-lab-pb -- .venv/bin/python bench/probe_dualstack_bench.py --runs 60

Fairness: both modes probe the same uplinks of the same lab in one process, in
ABBA order (IPv4, dual, dual, IPv4, ...) so neither always runs first or warm; each
run is what `impctl probe` does: an inventory read (dual-stack: with the applied
ipv6.method of each active device where NM shows no IPv6 in use) and the probe.
`--breakdown` adds the medians of the inventory read, the probe, the process's CPU
time, and every stage per uplink and family (the probe's own stage timings).

Measured 2026-12-02, `--runs 60 --breakdown`, 2 vCPUs with another session's process
holding one (load 1.3-1.8), two blocks interleaved with the tree before (a708b5b):
before IPv4 only 43.0 / 42.4 ms, dual-stack 71.9 / 77.6 ms, ratio 1.67 / 1.83; after
IPv4 only 30.3 / 44.7 ms (inventory 20.1 / 29.7 + probe 10.3 / 14.7), dual-stack
41.8 / 57.5 ms (20.0 / 29.6 + 20.4 / 28.2), ratio 1.38 / 1.29 (goal 1.1 not met). The
probe is CPU-bound on its one event-loop thread (CPU time ~= wall time), and the
dual-stack probe does five DNS/TCP/TLS families where the IPv4-only one does two
(wwan0 has no IPv4): see README, "Dual-stack probe".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

from impctl.backends.config_file import load_config
from impctl.backends.netlink import Netlink
from impctl.backends.nm import read_inventory
from impctl.backends.probe_net import BoundSockets
from impctl.cli.context import CONFIG_ENV, DEFAULT_CONFIG_PATH
from impctl.model.probe import InterfaceProbe, Stage
from impctl.usecases.probe import probe_all

MODES = {False: "IPv4 only", True: "dual-stack"}
BEFORE_FAMILIES = {Stage.MODEM, Stage.SIM, Stage.REGISTRATION, Stage.BEARER, Stage.LINK}


async def once(dual: bool) -> tuple[dict[str, float], list[InterfaceProbe]]:
    """One probe of every uplink: the inventory read (with the applied ipv6.method the
    dual-stack probe needs) and the probe, as `impctl probe` runs them."""
    config = load_config(Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH), explicit=False)
    cpu0 = time.process_time()
    started = time.monotonic()
    devices = await read_inventory(config, timeout_s=5.0, ipv6_method=dual)
    read = time.monotonic()
    links = Netlink()
    results = await probe_all(devices, config, lambda d: None, links=links, net=BoundSockets(),
                              deadline=started + 10.0, links6=links if dual else None)
    ended = time.monotonic()
    await links.aclose()
    return {"total": (ended - started) * 1000, "inventory": (read - started) * 1000,
            "probe": (ended - read) * 1000, "cpu": (time.process_time() - cpu0) * 1000}, results


def stage_times(results: list[InterfaceProbe]) -> dict[str, float]:
    """Each stage's duration, keyed "ifname family stage" (family "-" for link and modem)."""
    times: dict[str, float] = {}
    for r in results:
        times[f"{r.ifname} - whole"] = r.duration_ms
        for s in r.stages:
            if s.stage in BEFORE_FAMILIES:  # the rest are the deciding family's, listed below
                times[f"{r.ifname} - {s.name}"] = s.duration_ms
        for f in r.families:
            for s in f.stages:
                times[f"{r.ifname} {f.family.value} {s.name}"] = s.duration_ms
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--breakdown", action="store_true", help="medians per part and per stage")
    args = parser.parse_args()
    samples: dict[bool, dict[str, list[float]]] = {True: defaultdict(list), False: defaultdict(list)}
    reached: dict[bool, int] = {}
    for i in range(args.runs):
        for dual in (False, True) if i % 2 == 0 else (True, False):
            parts, results = asyncio.run(once(dual))
            for key, ms in (parts | stage_times(results)).items():
                samples[dual][key].append(ms)
            reached[dual] = sum(len(r.reaches) for r in results)
    v4, ds = (statistics.median(samples[d]["total"]) for d in (False, True))
    print(f"runs {args.runs}: IPv4 only median {v4:.1f} ms (families reaching {reached[False]}), "
          f"dual-stack median {ds:.1f} ms (families reaching {reached[True]}), ratio {ds / v4:.2f}")
    if args.breakdown:
        keys = list(dict.fromkeys([*samples[False], *samples[True]]))
        print(f"{'median ms':28s} {MODES[False]:>10s} {MODES[True]:>10s}")
        for key in keys:
            cells = [f"{statistics.median(samples[d][key]):10.1f}" if samples[d].get(key) else f"{'-':>10s}"
                     for d in (False, True)]
            print(f"{key:28s} {' '.join(cells)}")


if __name__ == "__main__":
    main()
