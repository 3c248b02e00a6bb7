"""The lab's side of the simulated modem: ModemManager, polkit and the AT responder.

impctl.lab.modem is the responder program itself; this module starts it with
a real ModemManager in the gateway namespace and switches what it answers.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from impctl.lab import faults
from impctl.lab.daemons import Daemons, package_parent
from impctl.lab.modem import STATES, build_sysfs, kernel_events, write_control
from impctl.lab.nm import name_owned
from impctl.lab.proc import Bind, sh, wait_for
from impctl.lab.topology import BEARER_IP, MODEM_TIMEOUT_S, UP_TIMEOUT_S, Topology, Uplink
from impctl.model.errors import LabError

POLKIT_BUS_NAME = "org.freedesktop.PolicyKit1"
_MM_BUS_ADDRESS = "unix:path=/run/dbus/system_bus_socket"
PLUGIN = "libmm-plugin-ublox.so"

# Faults of the modem and its carrier, next to the STATES (lab.fault("modem", kind)); each is
# undone by restore("modem") (= modem_state("registered")).
#   bearer-refused     the network refuses the context (+CGACT=1,1 -> +CME ERROR: 148)
#   bearer-dropped     the network deactivates the connected context (+CGEV: NW DEACT)
#   carrier-blackhole  the bearer stays connected, the carrier drops all it carries
#   unplugged          the modem is gone: kernel remove events for both ports
MODEM_FAULTS = ("bearer-refused", "bearer-dropped", "carrier-blackhole", "unplugged")


def ublox_plugin() -> Path | None:
    for path in sorted(Path("/usr/lib").glob(f"*/ModemManager/{PLUGIN}")):
        return path
    path = Path("/usr/lib/ModemManager") / PLUGIN
    return path if path.exists() else None


def _carrier(topo: Topology) -> Uplink:
    if topo.carrier is None:
        raise LabError("this lab has no modem: impctl lab up --modem")
    return topo.carrier


def start(topo: Topology, daemons: Daemons) -> None:
    """polkit, the AT responder, then ModemManager; returns once MM shows the modem registered."""
    plugin = ublox_plugin()
    if plugin is None:
        raise LabError(f"ModemManager's u-blox plugin ({PLUGIN}) not found: "
                       "apt-get install modemmanager")
    carrier = _carrier(topo)
    modem_dir = topo.modem_dir
    for d in (modem_dir / "sys", modem_dir / "hostdev", topo.mm_dir / "plugins"):
        d.mkdir(parents=True, exist_ok=True)
    # Only the u-blox plugin: the modem is probed in ~3 s instead of ~10 s, and its vendor
    # id lets the net port through (the generic plugin would dial PPP, absent here).
    (topo.mm_dir / "plugins" / plugin.name).symlink_to(plugin)
    (topo.mm_dir / "events").write_text("\n".join(kernel_events("add")) + "\n")
    build_sysfs(modem_dir / "sys")
    write_control(topo.modem_control, "registered")
    pty_link = modem_dir / "pty"
    daemons.spawn("polkit", topo.gw_netns, [
        sys.executable, "-m", "dbusmock", "--system", "--template",
        str(Path(__file__).with_name("polkit_allow.py"))],
        topo.binds("gw"), env={"DBUS_SYSTEM_BUS_ADDRESS": topo.bus_address})
    daemons.spawn("modem", topo.gw_netns, [
        sys.executable, "-m", "impctl.lab.modem", "--control", str(topo.modem_control),
        "--pty-link", str(pty_link), "--bearer-ip", BEARER_IP, "--gateway-ip", carrier.router_ip],
        topo.binds("gw"), env={"PYTHONPATH": package_parent()})

    def responder_ready() -> bool:
        daemons.expect_alive("modem")
        return pty_link.exists()

    wait_for("the modem's AT responder", responder_ready, UP_TIMEOUT_S)

    def polkit_ready() -> bool:
        daemons.expect_alive("polkit")
        return name_owned(topo, POLKIT_BUS_NAME) is True

    wait_for("the lab's polkit", polkit_ready, UP_TIMEOUT_S, interval_s=0.05)
    start = time.monotonic()
    _spawn_modemmanager(topo, daemons, pty_link.read_text().strip())

    def appeared() -> bool:
        daemons.expect_alive("ModemManager")
        return modem_info(topo) is not None

    wait_for("ModemManager to show the modem", appeared, MODEM_TIMEOUT_S, interval_s=0.05)
    # Kept in lab.json: the figure of the README (~3 s) and what a test holds it to.
    daemons.labfile.set("modem_appeared_s", round(time.monotonic() - start, 3))
    wait_modem(topo, daemons, "registered", MODEM_TIMEOUT_S)
    daemons.labfile.set("modem_registered_s", round(time.monotonic() - start, 3))


def _spawn_modemmanager(topo: Topology, daemons: Daemons, pty: str) -> None:
    stage = topo.modem_dir / "hostdev"
    q = shlex.quote
    dev_setup = [
        # A private /dev holding the basics and the pty slave as ttyUSB0: the
        # machine's /dev is never written to.
        f"mount --rbind /dev {q(str(stage))}",
        "mount -t tmpfs -o mode=755 labdev /dev",
        "for n in null zero full random urandom tty ptmx; do "
        f"touch /dev/$n; mount --bind {q(str(stage))}/$n /dev/$n; done",
        f"mkdir /dev/pts; mount --bind {q(str(stage))}/pts /dev/pts",
        f"touch /dev/ttyUSB0; mount --bind {q(pty)} /dev/ttyUSB0",
    ]
    binds: list[Bind] = [
        *topo.binds("gw", own_run=True), *dev_setup,
        (topo.modem_dir / "sys", "/sys"),
        (topo.gw_dir / "run", "/run"),
    ]
    daemons.spawn("ModemManager", topo.gw_netns, [
        "ModemManager", "--log-level=DEBUG", "--test-no-udev", "--test-enable",
        "--no-auto-scan", "--initial-kernel-events=/run/mm/events",
        "--test-plugin-dir=/run/mm/plugins",
    ], binds, env={"DBUS_SYSTEM_BUS_ADDRESS": _MM_BUS_ADDRESS})


def mmcli(topo: Topology, *args: str, check: bool = True,
          timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """mmcli against the lab's ModemManager."""
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": topo.bus_address}
    proc = subprocess.run(["mmcli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"mmcli {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def modem_info(topo: Topology) -> dict[str, Any] | None:
    """ModemManager's view of the simulated modem (`mmcli -J -m any`), None when it has none."""
    proc = mmcli(topo, "-J", "-m", "any", check=False, timeout=10.0)
    if proc.returncode != 0:
        return None
    try:
        modem = json.loads(proc.stdout)["modem"]
    except (ValueError, KeyError):
        return None
    return modem if isinstance(modem, dict) else None


def observed_state(info: dict[str, Any] | None) -> str | None:
    """Which of the modem STATES `info` (modem_info) shows; None: no modem or another state."""
    if info is None:
        return None
    generic = info.get("generic", {})
    state = generic.get("state")
    reg = info.get("3gpp", {}).get("registration-state")
    if state == "failed" and generic.get("state-failed-reason") == "sim-missing":
        return "no-sim"
    if state == "locked" and generic.get("unlock-required") == "sim-pin":
        return "sim-locked"
    if state in ("enabled", "searching") and reg == "searching":
        return "not-registered"
    if state == "enabled" and reg == "denied":
        return "registration-denied"
    if state == "registered" and reg == "home":
        return "registered"
    return None


def shows_state(info: dict[str, Any] | None, state: str) -> bool:
    """`info` shows `state`; a modem whose bearer is up (connected) counts as registered."""
    if observed_state(info) == state:
        return True
    return (state == "registered" and info is not None
            and info.get("generic", {}).get("state") in ("connected", "connecting", "disconnecting")
            and info.get("3gpp", {}).get("registration-state") == "home")


def wait_modem(topo: Topology, daemons: Daemons, state: str, timeout_s: float) -> None:
    def reached() -> bool:
        daemons.expect_alive("ModemManager")
        daemons.expect_alive("modem")
        info = modem_info(topo)
        if info is not None and info.get("generic", {}).get("state") == "disabled":
            # NM enables modems when it wants to use them; the lab wants the state now.
            mmcli(topo, "-m", "any", "--enable", check=False, timeout=10.0)
        return shows_state(modem_info(topo), state)

    wait_for(f"ModemManager to show the modem {state}", reached, timeout_s, interval_s=0.1)


def _control(topo: Topology) -> dict[str, Any]:
    try:
        data = json.loads(topo.modem_control.read_text())
    except (OSError, ValueError):
        data = {}
    return data if isinstance(data, dict) else {}


def _report(topo: Topology, action: str) -> None:
    for event in kernel_events(action):
        mmcli(topo, f"--report-kernel-event={event}")


def _replug(topo: Topology, plugged: bool) -> None:
    """Report the modem's ports removed (if `plugged`, i.e. it is there now) and added."""
    if plugged:
        _report(topo, "remove")
        wait_for("ModemManager to drop the modem", lambda: modem_info(topo) is None, 10.0,
                 interval_s=0.05)
    _report(topo, "add")


def active_faults(daemons: Daemons) -> list[str]:
    """The modem's faults recorded in lab.json (in MODEM_FAULTS order)."""
    recorded = daemons.labfile.read().get("faults", {}).get("modem", [])
    return [k for k in MODEM_FAULTS if k in recorded]


def _record(daemons: Daemons, kinds: list[str]) -> None:
    daemons.labfile.set("modem", [k for k in MODEM_FAULTS if k in kinds], section="faults")


def _blackhole(topo: Topology, on: bool) -> None:
    carrier = _carrier(topo)
    for cmd in faults.commands(carrier, ["blackhole"] if on else []):
        sh(cmd.argv, input=cmd.input)


def bearers(topo: Topology) -> list[dict[str, Any]]:
    """ModemManager's bearers of the modem (`mmcli -J -b N` each)."""
    info = modem_info(topo)
    out: list[dict[str, Any]] = []
    for path in (info or {}).get("generic", {}).get("bearers", []):
        proc = mmcli(topo, "-J", "-b", str(path), check=False, timeout=10.0)
        if proc.returncode == 0:
            try:
                out.append(json.loads(proc.stdout)["bearer"])
            except (ValueError, KeyError):
                continue
    return out


def bearer_connected(topo: Topology) -> bool:
    return any(b.get("status", {}).get("connected") == "yes" for b in bearers(topo))


def fault(topo: Topology, daemons: Daemons, kind: str) -> None:
    """Apply one of MODEM_FAULTS; returns once it is in effect (see MODEM_FAULTS)."""
    if not topo.modem:
        raise LabError("this lab has no modem: impctl lab up --modem")
    if kind not in MODEM_FAULTS:
        raise LabError(f"unknown modem fault {kind!r}: use one of {', '.join(MODEM_FAULTS)} "
                       f"or a state: {', '.join(STATES)}")
    active = active_faults(daemons)
    control = _control(topo)
    state = str(control.get("state", "registered"))
    if kind == "bearer-refused":
        write_control(topo.modem_control, state, "refuse", int(control.get("drops", 0)))
    elif kind == "bearer-dropped":
        write_control(topo.modem_control, state, control.get("bearer"),
                      int(control.get("drops", 0)) + 1)
        # No connected bearer: nothing to drop, the fault is only recorded.
        wait_for("ModemManager to lose the bearer", lambda: not bearer_connected(topo), 10.0,
                 interval_s=0.05)
    elif kind == "carrier-blackhole":
        _blackhole(topo, True)
    elif kind == "unplugged" and "unplugged" not in active:
        _report(topo, "remove")
        wait_for("ModemManager to drop the modem", lambda: modem_info(topo) is None, 10.0,
                 interval_s=0.05)
    _record(daemons, [*active, kind])


def switch(topo: Topology, daemons: Daemons, state: str, timeout_s: float = 30.0) -> None:
    """Switch the simulated modem's SIM/registration answers and wait until MM shows them;
    every modem fault (MODEM_FAULTS) is undone on the way.

    A registration change reaches MM as an unsolicited +CREG (well under a
    second); a SIM change needs MM to probe the modem again: the lab reports
    the ports removed and re-added (`mmcli --report-kernel-event`), ~3-4 s.
    A connected bearer stays connected when the SIM does not change: "registered"
    is then reached as soon as MM shows the registration (see shows_state).
    """
    if not topo.modem:
        raise LabError("this lab has no modem: impctl lab up --modem")
    if state in MODEM_FAULTS:
        fault(topo, daemons, state)
        return
    if state not in STATES:
        raise LabError(f"unknown modem state {state!r}: use one of {', '.join(STATES)} "
                       f"or a fault: {', '.join(MODEM_FAULTS)}")
    old = _control(topo)
    active = active_faults(daemons)
    write_control(topo.modem_control, state)
    daemons.labfile.set("modem_state", state)
    if "carrier-blackhole" in active:
        _blackhole(topo, False)
    _record(daemons, [])
    if "unplugged" in active:
        _replug(topo, plugged=False)
        wait_modem(topo, daemons, state, timeout_s)
        return
    info = modem_info(topo)
    observed = observed_state(info)
    if info is None or old.get("sim") != STATES[state]["sim"] or observed in ("no-sim", "sim-locked"):
        _replug(topo, plugged=info is not None)
    wait_modem(topo, daemons, state, timeout_s)
