"""Memory and CPU of `impctl daemon` in the lab: idle with the default settings, and a soak with faults.

    sudo .venv/bin/python bench/daemon_footprint.py [--warmup-s 30] [--idle-s 120] [--json FILE]
    sudo .venv/bin/python bench/daemon_footprint.py --soak 30 [--fault-every-s 20] [--json FILE]
    sudo .venv/bin/python bench/daemon_footprint.py --metrics [--scrape-every-s 15]

--metrics: idle with the fleet metrics on (`[daemon] metrics_listen`), scraped from
inside the gateway namespace every --scrape-every-s seconds, as a Prometheus would.

One lab (its own namespaces, prefix `dfp<pid>`), the daemon run in its gateway
namespace as the lab tests run it (tests/daemon/labdaemon.py).

Idle (the default): the lab's config with no [daemon] section, so the
default settings (probe the active uplink every 2 s, standbys every 60 s /
900 s). After the daemon is connected and --warmup-s have passed, RSS is
read from /proc/<pid>/status (VmRSS) every second and CPU time from
/proc/<pid>/stat (utime + stime) at both ends of a --idle-s window; CPU %
is that CPU time over the window's wall time (100 % is one core).

Soak (--soak MINUTES): the test config of the lab tests (probe every 1 s,
hold 3 s: more events per minute than the defaults, so more chances to
leak), and a random fault (link-down, blackhole, dns-off, cloud-closed,
dhcp-off) on a random uplink every --fault-every-s seconds on average, held
for a few seconds, then restored. RSS is sampled every 5 s; the first
--warmup-s (at least two minutes in a soak) do not count. Reported: RSS
right after the warm-up, its maximum, the last sample, and the slope of a
least-squares line through the samples after the warm-up (KiB per hour).

Results: see the report of the "shape and hardening" issue (README text).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "daemon"))

from labdaemon import DaemonProcess, is_event, write_config

from impctl.lab import Lab
from impctl.model.errors import ImpctlError

SOAK_FAULTS = ("link-down", "blackhole", "dns-off", "cloud-closed", "dhcp-off")
SOAK_UPLINKS = ("eth0", "wlan0", "wwan0")
SOAK_SAMPLE_S = 5.0
SOAK_MIN_WARMUP_S = 120.0


class Proc:
    """CPU time and RSS of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def start_daemon(lab: Lab, config: Path, state: Path) -> DaemonProcess:
    daemon = DaemonProcess(lab, config, state)
    daemon.wait_for(is_event("connected", ifname="eth0"), 20.0, "start")
    return daemon


METRICS_PORT = 9563


def scrape(lab: Lab) -> int:
    """One GET /metrics from inside the gateway namespace; the bytes of the answer."""
    sock = lab.open_socket()
    sock.settimeout(5.0)
    try:
        sock.connect(("127.0.0.1", METRICS_PORT))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n")
        size = 0
        while chunk := sock.recv(65536):
            size += len(chunk)
        return size
    finally:
        sock.close()


def idle(lab: Lab, work: Path, warmup_s: float, seconds: float,
         scrape_every_s: float | None = None) -> dict[str, Any]:
    config = work / "idle.toml"
    text = lab.config_path.read_text()  # no [daemon] section: the defaults
    if scrape_every_s is not None:
        text += f'\n[daemon]\nmetrics_listen = "127.0.0.1:{METRICS_PORT}"\n'
    config.write_text(text)
    daemon = start_daemon(lab, config, work / "state-idle" / "state.json")
    done = threading.Event()
    scrapes: list[int] = []

    def scraper() -> None:
        while scrape_every_s is not None and not done.wait(scrape_every_s):
            scrapes.append(scrape(lab))

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    try:
        proc = Proc(daemon.proc.pid)
        time.sleep(warmup_s)
        rss_start = proc.rss_kib()
        c0, t0 = proc.cpu_s(), time.monotonic()
        rss = [rss_start]
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss.append(proc.rss_kib())
        c1, t1 = proc.cpu_s(), time.monotonic()
        assert daemon.proc.poll() is None, "the daemon died"
        extra = {} if scrape_every_s is None else {"scrapes": len(scrapes), "scrape_bytes": scrapes[-1:]}
        return {**extra, "warmup_s": warmup_s, "seconds": round(t1 - t0, 1), "cpu_s": round(c1 - c0, 3),
                "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 3),
                "rss_mib_after_warmup": mib(rss_start), "rss_mib_max": mib(max(rss)),
                "rss_mib_last": mib(rss[-1])}
    finally:
        done.set()
        thread.join(timeout=10)
        daemon.stop()


def slope_kib_per_hour(samples: list[tuple[float, int]]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return 0.0 if var == 0 else cov / var * 3600


def soak(lab: Lab, work: Path, minutes: float, warmup_s: float, fault_every_s: float,
         seed: int) -> dict[str, Any]:
    config = write_config(lab, work / "soak.toml")
    daemon = start_daemon(lab, config, work / "state-soak" / "state.json")
    rng = random.Random(seed)
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    proc = Proc(daemon.proc.pid)
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(SOAK_SAMPLE_S):
            try:
                samples.append((time.monotonic() - t0, proc.rss_kib()))
            except (OSError, RuntimeError):
                return  # the daemon is gone: reported below

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    faults: dict[str, int] = {}
    errors = 0
    end = t0 + minutes * 60
    try:
        while time.monotonic() < end and daemon.proc.poll() is None:
            time.sleep(min(rng.expovariate(1 / fault_every_s), max(0.0, end - time.monotonic())))
            if time.monotonic() >= end:
                break
            ifname, kind = rng.choice(SOAK_UPLINKS), rng.choice(SOAK_FAULTS)
            try:
                lab.fault(ifname, kind)
                time.sleep(rng.uniform(1.0, 8.0))
                lab.restore(ifname)
                faults[kind] = faults.get(kind, 0) + 1
            except ImpctlError as err:
                errors += 1
                print(f"  fault {kind} on {ifname}: {err.message}", flush=True)
                lab.reset()
            minute = (time.monotonic() - t0) / 60
            if samples:
                print(f"  {minute:5.1f} min: {sum(faults.values())} faults, RSS {mib(samples[-1][1])} MiB",
                      flush=True)
        alive = daemon.proc.poll() is None
    finally:
        done.set()
        sampler.join(timeout=SOAK_SAMPLE_S + 1)
        daemon.stop()
    after = [(t, r) for t, r in samples if t >= warmup_s]
    switches = len([e for e in daemon.events("switch")])
    out: dict[str, Any] = {"minutes": minutes, "warmup_s": warmup_s, "faults": faults, "fault_errors": errors,
                           "switches": switches, "daemon_alive_at_end": alive, "samples": len(samples)}
    if after:
        rss = [r for _, r in after]
        out.update({"rss_mib_after_warmup": mib(rss[0]), "rss_mib_max": mib(max(rss)), "rss_mib_last": mib(rss[-1]),
                    "slope_kib_per_hour": round(slope_kib_per_hour(after), 1)})
    out["rss_mib_by_minute"] = {int(t // 60): mib(r) for t, r in samples}
    return out


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # through the finally blocks: the lab comes down


def main() -> None:
    # Started in the background (`... &`), SIGINT is ignored; and SIGTERM would skip the
    # clean-up: both end the bench through lab.down().
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--idle-s", type=float, default=120.0)
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="soak with random faults instead of idle")
    parser.add_argument("--fault-every-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--root", type=Path, default=Path(f"/run/impctl-footprint{os.getpid()}"))
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--prefix", help="the lab's namespace prefix (default dfp<pid>)")
    parser.add_argument("--metrics", action="store_true", help="idle with metrics_listen on, scraped")
    parser.add_argument("--scrape-every-s", type=float, default=15.0)
    args = parser.parse_args()
    lab = Lab(args.root / "lab", args.prefix or f"dfp{os.getpid() % 100000}")
    lab.up(replace=True)
    work = args.root / "work"
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"lab_prefix": lab.prefix, "python": sys.version.split()[0]}
    try:
        if args.soak:
            out["soak"] = soak(lab, work, args.soak, max(args.warmup_s, SOAK_MIN_WARMUP_S),
                               args.fault_every_s, args.seed)
        else:
            out["idle"] = idle(lab, work, args.warmup_s, args.idle_s,
                               args.scrape_every_s if args.metrics else None)
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)  # its configs and state files
        with contextlib.suppress(OSError):
            args.root.rmdir()  # only if nothing else is in it
    print(json.dumps(out, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
