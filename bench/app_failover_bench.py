"""A failover as applications feel it: impctl's daemon against NetworkManager's own connectivity check.

    sudo .venv/bin/python bench/app_failover_bench.py [-n 20] [--nm-n 20] [--cap-s 30] [--json FILE]

One lab (its own namespaces, prefix `afb<pid>`), realistic as every lab is:
ISPs that validate source addresses and NAT, NetworkManager writing the
gateway's resolv.conf, a LAN device behind the gateway's NAT. Three
applications run for the whole bench (impctl.lab.apps), talking to the
cloud's session service by name:

1. `attempts` on the gateway, unbound: a new connection by name (system
   resolver) every 0.1 s, each in its own thread;
2. `session` on the gateway, unbound: a long-lived session that sends a
   line every 0.1 s and reconnects when its socket fails or an answer is
   1.5 keepalives (90 s) late, like an MQTT client with a 60 s keepalive;
3. `session` on the LAN device, through the gateway's NAT.

n faults of each kind on the primary eth0: `link` (the ISP's end of the
veth goes down) and `blackhole` (the ISP drops everything), each after a
random pause of up to one probe interval (2 s), so that faults fall at any
point of the daemon's probe cycle, as real ones do (--seed makes the pauses
repeatable). From the fault to: (1) the first successful connection among those started after it;
(2) and (3) the first answer through another uplink (the gateway's session:
another local address; the LAN's: the cloud sees another ISP). Then the
fault is restored and the gateway fails back to eth0: from the failback
(the daemon's switch event; for NM the kernel's route change) to the last
session on wlan0 being gone (the gateway's session answered through eth0
again, and the LAN's). The same three figures are also given from the
switch (`*_after_switch`: from the kernel's primary route moving off eth0,
seen by an independent netlink monitor).

impctl: `impctl daemon` with the default [daemon] settings except
failback_hold_s = 2 and min_switch_interval_s = 1, which only shorten the
wait before each failback (not measured from a fault). NetworkManager: the
daemon stopped, [connectivity] enabled with the lab cloud's URI and
interval=1, the shortest NM takes (NM penalises the route metric of a device
whose check fails). A measurement still open after --cap-s counts as cap-s
and is reported as `capped`.

Results: see the README ("What applications feel of a failover").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "daemon"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from failover_bench import Monitor, blackhole, cut, nm_connectivity_config
from labdaemon import DaemonProcess, is_event, restart_networkmanager

from impctl.lab import Lab
from impctl.lab.apps import App, app_argv
from impctl.model.config import DaemonSettings

BENCH_DAEMON: dict[str, object] = {"failback_hold_s": 2.0, "min_switch_interval_s": 1.0}
KINDS = ("link", "blackhole")
PHASE_S = DaemonSettings().probe_interval_s


def default_daemon_config(lab: Lab, path: Path) -> Path:
    """The lab's config with the default [daemon] settings but a short failback hold; default [probe]."""
    text = lab.config_path.read_text() + "\n[daemon]\n" + "".join(
        f"{k} = {v}\n" for k, v in BENCH_DAEMON.items())
    path.write_text(text)
    return path


class Apps:
    """The three applications, and when each was last exchanging data through which uplink."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.attempts = App(lab.exec_argv(app_argv("attempts", "--every", "0.1", "--timeout", "10")))
        self.session = App(lab.exec_argv(app_argv("session", "--every", "0.1")))
        self.lan = App(lab.lan_exec_argv(app_argv("session", "--every", "0.1")))

    def stop(self) -> None:
        for app in (self.attempts, self.session, self.lan):
            app.stop()

    def drain(self) -> None:
        for app in (self.attempts, self.session, self.lan):
            app.drain()

    def settled(self, local: str, seen_as: str, timeout_s: float) -> None:
        """Until both sessions answer through the uplink given (gateway: local address; LAN: the cloud's view)."""
        if not self.session.wait(lambda e: e["event"] == "echo" and e["local"] == local, timeout_s):
            raise TimeoutError(f"the gateway's session never answered through {local}")
        if not self.lan.wait(lambda e: e["event"] == "echo" and e["seen_as"] == seen_as, timeout_s):
            raise TimeoutError(f"the LAN's session never answered as {seen_as}")


def _since(app: App, t0: float, match: Callable[[dict[str, Any]], bool], cap_s: float) -> float | None:
    line = app.wait(lambda e: e["t"] >= t0 and match(e), max(0.0, t0 + cap_s - time.time()))
    return None if line is None else float(line["t"]) - t0


def measure_fault(apps: Apps, t_fault: float, eth0_local: str, isp_a: str, cap_s: float) -> dict[str, float | None]:
    first_new = _since(apps.attempts, t_fault, lambda e: e["event"] == "ok" and e["started"] >= t_fault, cap_s)
    session = _since(apps.session, t_fault, lambda e: e["event"] == "echo" and e["local"] != eth0_local, cap_s)
    lan = _since(apps.lan, t_fault, lambda e: e["event"] == "echo" and e["seen_as"] != isp_a, cap_s)
    return {"new_connection": first_new, "session": session, "lan_session": lan}


def measure_failback(apps: Apps, t_switch: float, eth0_local: str, isp_a: str, cap_s: float) -> dict[str, float | None]:
    session = _since(apps.session, t_switch, lambda e: e["event"] == "echo" and e["local"] == eth0_local, cap_s)
    lan = _since(apps.lan, t_switch, lambda e: e["event"] == "echo" and e["seen_as"] == isp_a, cap_s)
    return {"session_left_wlan0": session, "lan_session_left_wlan0": lan}


def _switched(mon: Monitor, t_fault: float, cap_s: float) -> float | None:
    """When the kernel's primary moved off eth0 after the fault (the switch), None if not within the cap."""
    if mon.primary not in (None, "eth0"):
        return mon.primary_since
    try:
        return float(mon.wait("primary", "wlan0", max(0.1, t_fault + cap_s - time.time()))["t"])
    except TimeoutError:
        return None


def summary(values: list[float | None], cap_s: float) -> dict[str, Any]:
    capped = sum(1 for v in values if v is None)
    ms = sorted((cap_s if v is None else v) * 1000 for v in values)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1), "max_ms": round(ms[-1], 1),
            "capped": capped}


def run_faults(lab: Lab, mon: Monitor, apps: Apps, n: int, cap_s: float, who: str,
               failed_back: Callable[[], float], rng: random.Random) -> dict[str, Any]:
    eth0_local = lab.addresses()["eth0"][0].split("/")[0]
    isp_a = lab.uplink("eth0").transit_isp_ip
    results: dict[str, Any] = {}
    for kind in KINDS:
        rows: list[dict[str, float | None]] = []
        for i in range(n):
            apps.settled(eth0_local, isp_a, 30.0)
            time.sleep(rng.uniform(0.0, PHASE_S))
            apps.drain()
            mon.drain()
            if kind == "link":
                cut(lab, up=False)
                t_fault = float(mon.wait("link", "eth0", 5.0, up=False)["t"])
            else:
                t_fault = blackhole(lab, True)
            row = measure_fault(apps, t_fault, eth0_local, isp_a, cap_s)
            t_switch = _switched(mon, t_fault, cap_s)
            row |= {f"{k}_after_switch": None if v is None or t_switch is None else v + t_fault - t_switch
                    for k, v in list(row.items())}
            if kind == "link":
                cut(lab, up=True)
                lab.wait_uplinks(["eth0"])
            else:
                blackhole(lab, False)
            t_back = failed_back()
            row |= measure_failback(apps, t_back, eth0_local, isp_a, cap_s)
            rows.append(row)
            shown = "  ".join(f"{k} {'capped' if v is None else f'{v * 1000:.0f} ms'}" for k, v in row.items())
            print(f"  {who:6} {kind:9} #{i + 1:2}: {shown}", flush=True)
        results[kind] = {key: summary([r[key] for r in rows], cap_s) for key in rows[0]}
    return results


def bench_daemon(lab: Lab, mon: Monitor, apps: Apps, work: Path, n: int, cap_s: float,
                 rng: random.Random) -> dict[str, Any]:
    daemon = DaemonProcess(lab, default_daemon_config(lab, work / "bench.toml"), work / "state" / "state.json")
    try:
        daemon.wait_for(is_event("connected", ifname="eth0"), 15.0, "start")

        def failed_back() -> float:
            # After a blackhole eth0 is a standby until its next standby probe (every 60 s) passes.
            switch = daemon.wait_for(lambda e: e.get("event") == "switch" and e.get("to") == "eth0",
                                     DaemonSettings().standby_probe_interval_s + 30.0, "failback to eth0")
            return float(switch["ts"])

        return run_faults(lab, mon, apps, n, cap_s, "impctl", failed_back, rng)
    finally:
        daemon.stop()


def bench_nm(lab: Lab, mon: Monitor, apps: Apps, n: int, cap_s: float, rng: random.Random) -> dict[str, Any]:
    lab.reset()  # the daemon's metrics gone: NM's own 100/600/700
    nm_connectivity_config(lab, f"http://{lab.cloud_host}/", 1)
    restart_networkmanager(lab)
    lab.wait_uplinks([u.ifname for u in lab.uplinks])
    time.sleep(3.0)  # the first checks done: every device FULL

    def failed_back() -> float:
        return mon.wait_primary("eth0", 60.0)

    return run_faults(lab, mon, apps, n, cap_s, "NM", failed_back, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="faults of each kind for the daemon")
    parser.add_argument("--nm-n", type=int, default=20, help="faults of each kind for NetworkManager")
    parser.add_argument("--cap-s", type=float, default=30.0, help="a measurement open this long counts as this")
    parser.add_argument("--seed", type=int, default=1, help="for the random pauses before the faults")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("app_failover_bench: needs root (it builds a lab)")
    work = Path(tempfile.mkdtemp(prefix="afb-"))
    lab = Lab(Path(f"/run/impctl-afb-{os.getpid()}"), f"afb{os.getpid() % 100000}")
    lab.up(replace=True)
    mon = Monitor(lab)
    apps = Apps(lab)
    results: dict[str, Any] = {"load": list(os.getloadavg()), "n": args.n, "nm_n": args.nm_n, "cap_s": args.cap_s,
                               "seed": args.seed}
    try:
        print("impctl daemon (default settings, failback hold 2 s):", flush=True)
        results["impctl"] = bench_daemon(lab, mon, apps, work, args.n, args.cap_s, random.Random(args.seed))
        if args.nm_n:
            print("NetworkManager connectivity check (interval=1):", flush=True)
            results["networkmanager"] = bench_nm(lab, mon, apps, args.nm_n, args.cap_s, random.Random(args.seed))
    finally:
        apps.stop()
        mon.stop()
        lab.down()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
