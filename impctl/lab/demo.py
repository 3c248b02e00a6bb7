"""`impctl lab demo`: impctl's main job, shown once in the lab, step by step.

1. `impctl probe --all`: every uplink reaches the cloud, stage by stage;
2. `impctl interfaces set ethernet wifi cell` and `impctl daemon`: the
   daemon makes eth0 primary; eth0's cable is pulled (`lab fault eth0
   link-down`) and the daemon moves the gateway to wlan0; then eth0 comes
   back and the daemon is stopped;
3. `impctl connectwith` with a NIC naming cell0: the gateway is moved to
   the cellular uplink by hand (manual mode, impOS's server.connectwith).

Each step runs the real command in the lab's gateway namespace, as `impctl
lab exec` does; the demo only sequences them and hands their output back.
The lab is built if it is not up, and its state reset first if it is.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

from impctl.lab.lab import Lab
from impctl.model.errors import LabError
from impctl.model.record import record

DAEMON_EVENTS = ("switch", "connected", "sessions-ended", "link")
DAEMON_WAIT_S = 20.0


@record
class Step:
    command: str  # as a person would type it
    output: str  # what it printed (stdout, then stderr), or the daemon's log lines
    exit_code: int


def _impctl(lab: Lab, *args: str, stdin: str | None = None) -> Step:
    proc = lab.run([sys.executable, "-m", "impctl", *args], input=stdin, timeout=180)
    return Step("impctl " + " ".join(args), (proc.stdout + proc.stderr).rstrip("\n"), proc.returncode)


class _Daemon:
    """`impctl daemon` in the gateway namespace, its log lines read as they come."""

    def __init__(self, lab: Lab) -> None:
        self.proc = subprocess.Popen(lab.exec_argv([sys.executable, "-m", "impctl", "daemon"]),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1, env={**os.environ, **lab.env()})
        self.lines: queue.Queue[str] = queue.Queue()
        self.shown: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str) -> None:
        """Keep the interesting lines until one contains `text`."""
        deadline = time.monotonic() + DAEMON_WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if any(f"event={e} " in line for e in DAEMON_EVENTS):
                self.shown.append(line)
            if text in line:
                return
        self.stop()
        raise LabError(f"demo: the daemon did not log {text!r} within {DAEMON_WAIT_S:g} s:\n"
                       + "\n".join(self.shown[-10:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def run(lab: Lab, ready: Callable[[str, float], None]) -> Iterator[Step]:
    """Build (or reset) the lab, then yield each step as it completes."""
    started = time.monotonic()
    if lab.is_up():
        lab.reset()
        how = "reset"
    else:
        lab.up()
        how = "built"
    ready(how, time.monotonic() - started)
    yield _impctl(lab, "probe", "--all")
    yield _impctl(lab, "interfaces", "set", "ethernet", "wifi", "cell")
    daemon = _Daemon(lab)
    try:
        daemon.until("event=connected ifname=eth0")
        lab.fault("eth0", "link-down")
        daemon.until("event=sessions-ended ifname=eth0")
        lab.restore("eth0")
    finally:
        code = daemon.stop()
    yield Step("impctl daemon   # meanwhile: impctl lab fault eth0 link-down, then restore",
               "\n".join(daemon.shown), code)
    nic = json.dumps({"interface": "cell0"})
    step = _impctl(lab, "connectwith", "--nic", "-", stdin=nic)
    yield Step(f"echo '{nic}' | impctl connectwith --nic -", step.output, step.exit_code)
