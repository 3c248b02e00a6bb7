"""Failover time of `impctl daemon` against NetworkManager's own connectivity check, in one lab.

    sudo .venv/bin/python bench/failover_bench.py [-n 20] [--nm-n 20] [--idle-s 60] [--json FILE]

One lab (its own namespaces, prefix `fob<pid>`), one run, three parts:

1. impctl daemon (probe every 1 s, 2 failures, failback hold 1 s), n faults
   of each kind on the primary eth0: `link` (the ISP's end of the veth goes
   down; with ignore_routes_with_linkdown at 1 as the lab sets it, and at 0,
   Debian's default) and `blackhole` (the ISP drops everything from the gateway). Time
   from the fault to BOTH the kernel's lowest default route going through
   wlan0 AND the daemon's verification probe through wlan0 passing
   (its `event=connected` line). After each fault: restore, failback.
2. NetworkManager alone (daemon stopped): [connectivity] enabled with
   uri=http://cloud.imp.lab/ and interval=1 (the shortest NM takes), NM
   restarted with it; NM penalises the default-route metric of a device
   whose check fails. Time from the fault to the kernel's lowest default
   route going through wlan0 (NM verifies nothing more).
3. Idle cost of the daemon with the default [daemon] settings: CPU time and
   RSS over --idle-s seconds with nothing happening.

Results (2026-11-22, this lab, 2 vCPU, one run, 20 faults each; fault to the
kernel's primary route through wlan0 and, for the daemon, its verification
probe through wlan0 passed; median / max):

                                     impctl daemon        NetworkManager (concheck, interval=1)
    link loss (ignore_routes_        58 / 90 ms           4 / 5 ms    (route only: the kernel
      with_linkdown=1, the lab)      (route 4 / 17 ms)                skips the dead route)
    link loss (=0, Debian default)   75 / 128 ms          482 / 976 ms (lab carrier-wait 1 s;
                                                                        NM's default is 6 s)
    upstream blackhole               1.99 / 2.03 s        21.7 / 21.7 s
    idle, default [daemon] settings  then 0.43 % CPU, 61 MiB RSS; now bench/daemon_footprint.py: 0.125 %, 32.5 MiB

Fault instants: `link` is the gateway's own netlink link-down event (what a
watcher on the gateway sees first); `blackhole` is when the nft command that
installs the drop rules has returned. Route changes are seen by a monitor
process in the gateway namespace (netlink events + route dumps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "daemon"))

from labdaemon import DaemonProcess, is_event, restart_networkmanager, write_config

from impctl.lab import Lab
from impctl.lab import files as lab_files
from impctl.lab.cloud import NM_ONLINE_BODY
from impctl.lab.lab import CARRIER_WAIT_MS
from impctl.lab.proc import in_netns

BENCH_DAEMON = {"failback_hold_s": 1.0, "min_switch_interval_s": 1.0}


# ---------------------------------------------------------------- the monitor (in the gateway netns)


def monitor() -> None:
    """Print one JSON line per link change of an uplink and per change of the kernel's primary."""
    from impctl.backends.netwatch import default_routes, watching
    from impctl.model.events import IPChanged, LinkChanged, NetEvent
    from impctl.model.netfacts import kernel_primary

    offset = time.time() - time.monotonic()

    async def run() -> None:
        changed = asyncio.Event()
        last: list[str | None] = [None]

        def emit(ev: NetEvent) -> None:
            if isinstance(ev, LinkChanged):
                print(json.dumps({"kind": "link", "ifname": ev.ifname, "up": ev.up, "t": ev.at + offset}),
                      flush=True)
            if isinstance(ev, IPChanged | LinkChanged):
                changed.set()

        async with watching(emit):
            while True:
                changed.clear()
                primary = kernel_primary(await default_routes())
                if primary != last[0]:
                    last[0] = primary
                    print(json.dumps({"kind": "primary", "ifname": primary, "t": time.time()}), flush=True)
                await changed.wait()

    asyncio.run(run())


class Monitor:
    def __init__(self, lab: Lab) -> None:
        argv = lab.exec_argv([sys.executable, str(Path(__file__).resolve()), "--monitor"])
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.primary: str | None = None
        self.primary_since = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            if ev["kind"] == "primary":
                self.primary = ev["ifname"]
                self.primary_since = float(ev["t"])
            self.events.put(ev)

    def drain(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    def wait(self, kind: str, ifname: str | None, timeout_s: float, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"monitor: no {kind} {ifname} {fields} in {timeout_s} s")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["kind"] == kind and ev["ifname"] == ifname and all(ev.get(k) == v for k, v in fields.items()):
                return ev

    def wait_primary(self, ifname: str, timeout_s: float) -> float:
        """When the kernel's primary became `ifname` (now, if it already is)."""
        if self.primary == ifname:
            return self.primary_since
        return float(self.wait("primary", ifname, timeout_s)["t"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# ---------------------------------------------------------------- faults


def cut(lab: Lab, up: bool) -> None:
    isp = lab.uplink("eth0").isp_netns
    subprocess.run(["ip", "-n", isp, "link", "set", "down0", "up" if up else "down"], check=True)


def blackhole(lab: Lab, on: bool) -> float:
    if on:
        lab.fault("eth0", "blackhole")
    else:
        lab.restore("eth0")
    return time.time()


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1), "max_ms": round(ms[-1], 1),
            "min_ms": round(ms[0], 1)}


def set_ignore_linkdown(lab: Lab, value: int) -> None:
    """net.ipv4.conf.{all,uplinks}.ignore_routes_with_linkdown in the gateway netns only."""
    def write() -> None:
        for where in ("all", *(u.ifname for u in lab.uplinks)):
            Path(f"/proc/sys/net/ipv4/conf/{where}/ignore_routes_with_linkdown").write_text(str(value))

    in_netns(lab.gw_netns, write)


# link: as the lab sets it up (ignore_routes_with_linkdown=1, the kernel skips a dead
# link's route at once); link-sysctl0: Debian's default (0), the dead route wins until
# NM or the daemon changes the routes.
KINDS = ("link", "link-sysctl0", "blackhole")


def bench_daemon(lab: Lab, mon: Monitor, work: Path, n: int) -> dict[str, Any]:
    config = write_config(lab, work / "bench.toml", daemon=BENCH_DAEMON)
    daemon = DaemonProcess(lab, config, work / "state-daemon" / "state.json")
    results: dict[str, Any] = {}
    try:
        daemon.wait_for(is_event("connected", ifname="eth0"), 15.0, "start")
        mon.wait_primary("eth0", 5.0)
        for kind in KINDS:
            set_ignore_linkdown(lab, 0 if kind == "link-sysctl0" else 1)
            route_s: list[float] = []
            verified_s: list[float] = []
            total_s: list[float] = []
            for i in range(n):
                mon.drain()
                if kind.startswith("link"):
                    cut(lab, up=False)
                    t_fault = float(mon.wait("link", "eth0", 5.0, up=False)["t"])
                else:
                    t_fault = blackhole(lab, True)
                connected = daemon.wait_for(is_event("connected", ifname="wlan0"), 15.0, f"{kind} failover {i}")
                t_route = mon.wait_primary("wlan0", 5.0)
                t_verified = float(connected["ts"])
                route_s.append(t_route - t_fault)
                verified_s.append(t_verified - t_fault)
                total_s.append(max(t_route, t_verified) - t_fault)
                if kind.startswith("link"):
                    cut(lab, up=True)
                    lab.wait_uplinks(["eth0"])
                else:
                    blackhole(lab, False)
                daemon.wait_for(is_event("connected", ifname="eth0"), 20.0, f"failback {i}")
                mon.wait_primary("eth0", 5.0)
                print(f"  daemon {kind:12} #{i + 1:2}: route {route_s[-1] * 1000:7.1f} ms, "
                      f"verified {verified_s[-1] * 1000:7.1f} ms", flush=True)
            results[kind] = {"route": summary(route_s), "verified": summary(verified_s),
                             "fault_to_route_and_verified": summary(total_s)}
    finally:
        daemon.stop()
    return results


def nm_connectivity_config(lab: Lab, uri: str, interval_s: int) -> None:
    text = lab_files.nm_config([u.ifname for u in lab.uplinks], CARRIER_WAIT_MS, uri, NM_ONLINE_BODY.strip())
    text = text.replace("interval=5\n", f"interval={interval_s}\n")
    (lab.gw_dir / "etc-nm" / "NetworkManager.conf").write_text(text)


def bench_nm(lab: Lab, mon: Monitor, n: int, interval_s: int, timeout_s: float) -> dict[str, Any]:
    lab.reset()  # the daemon's metrics gone: NM's own 100/600/700
    nm_connectivity_config(lab, f"http://{lab.cloud_host}/", interval_s)
    restart_networkmanager(lab)
    lab.wait_uplinks([u.ifname for u in lab.uplinks])
    time.sleep(2 * interval_s + 1)  # first checks done: every device FULL
    mon.drain()
    mon.wait_primary("eth0", 10.0)
    results: dict[str, Any] = {}
    for kind in KINDS:
        set_ignore_linkdown(lab, 0 if kind == "link-sysctl0" else 1)
        route_s: list[float] = []
        missed = 0
        for i in range(n):
            mon.drain()
            if kind.startswith("link"):
                cut(lab, up=False)
                t_fault = float(mon.wait("link", "eth0", 5.0, up=False)["t"])
            else:
                t_fault = blackhole(lab, True)
            try:
                t_route = mon.wait_primary("wlan0", timeout_s)
                route_s.append(t_route - t_fault)
                print(f"  NM     {kind:12} #{i + 1:2}: route {route_s[-1] * 1000:7.1f} ms", flush=True)
            except TimeoutError:
                missed += 1
                print(f"  NM     {kind:12} #{i + 1:2}: no failover within {timeout_s} s", flush=True)
            if kind.startswith("link"):
                cut(lab, up=True)
                lab.wait_uplinks(["eth0"])
            else:
                blackhole(lab, False)
            try:
                mon.wait_primary("eth0", timeout_s)
            except TimeoutError:
                print("  NM never moved back to eth0", flush=True)
        results[kind] = {"route": summary(route_s), "no_failover_within_s": timeout_s, "missed": missed}
    set_ignore_linkdown(lab, 1)
    return results


def idle_cost(lab: Lab, work: Path, seconds: float) -> dict[str, Any]:
    """CPU and RSS of the daemon with the default [daemon] settings, nothing failing."""
    config = work / "idle.toml"
    config.write_text(lab.config_path.read_text())
    daemon = DaemonProcess(lab, config, work / "state-idle" / "state.json")
    try:
        daemon.wait_for(is_event("connected", ifname="eth0"), 15.0, "start")
        time.sleep(2.0)  # the start-up probes of every uplink are over
        pid = daemon.proc.pid
        tick = os.sysconf("SC_CLK_TCK")

        def cpu_s() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / tick

        def rss_kib() -> int:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
            return 0

        c0, t0 = cpu_s(), time.monotonic()
        rss_max = rss_kib()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss_max = max(rss_max, rss_kib())
        c1, t1 = cpu_s(), time.monotonic()
        probes = len([e for e in daemon.events("probe")])
        return {"seconds": round(t1 - t0, 1), "cpu_s": round(c1 - c0, 3),
                "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 3), "rss_kib": rss_kib(),
                "rss_max_kib": rss_max, "logged_probe_lines": probes}
    finally:
        daemon.stop()


def main() -> None:
    if "--monitor" in sys.argv:
        monitor()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="faults of each kind for the daemon")
    parser.add_argument("--nm-n", type=int, default=20, help="faults of each kind for NetworkManager")
    parser.add_argument("--nm-interval", type=int, default=1, help="NM [connectivity] interval, seconds")
    parser.add_argument("--nm-timeout", type=float, default=60.0, help="give NM this long per fault")
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--root", type=Path, default=Path("/run/impctl-bench"))
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    lab = Lab(args.root / "lab", f"fob{os.getpid() % 100000}")
    lab.up(replace=True)
    work = args.root / "work"
    work.mkdir(parents=True, exist_ok=True)
    mon = Monitor(lab)
    out: dict[str, Any] = {"lab_prefix": lab.prefix, "daemon_settings": BENCH_DAEMON}
    try:
        mon.wait_primary("eth0", 10.0)
        print("impctl daemon:", flush=True)
        out["daemon"] = bench_daemon(lab, mon, work, args.n)
        print("idle:", flush=True)
        out["idle"] = idle_cost(lab, work, args.idle_s)
        print(json.dumps(out["idle"]), flush=True)
        if args.nm_n:
            print(f"NetworkManager connectivity check (interval={args.nm_interval}):", flush=True)
            out["networkmanager"] = bench_nm(lab, mon, args.nm_n, args.nm_interval, args.nm_timeout)
    finally:
        mon.stop()
        lab.down()
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
