"""Running `impctl daemon` inside a lab's gateway namespace, for the lab tests and the benchmark.

`DaemonProcess` starts the daemon as a subprocess (`ip netns exec` via the
lab's exec_argv) with a test config (short intervals), reads its log lines
(logfmt, one event per line, `ts=` wall time) as they come, and stops it with
SIGTERM. `restart_networkmanager` kills the lab's NM and starts it again.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from impctl.lab import Lab

FAST_DAEMON = {
    "probe_interval_s": 1.0,
    "probe_failures": 2,
    "standby_probe_interval_s": 5.0,
    "cell_standby_probe_interval_s": 10.0,
    "cell_probe_interval_s": 2.0,
    "failback_hold_s": 3.0,
    "min_switch_interval_s": 2.0,
}
FAST_PROBE = {"dns_timeout_s": 0.5, "connect_timeout_s": 0.5, "tls_timeout_s": 0.5, "total_timeout_s": 1.5}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def write_config(lab: Lab, path: Path, daemon: dict[str, object] | None = None,
                 probe: dict[str, object] | None = None) -> Path:
    """The lab's impctl.toml plus [daemon] and [probe] sections."""
    text = lab.config_path.read_text()
    sections = {"daemon": {**FAST_DAEMON, **(daemon or {})}, "probe": {**FAST_PROBE, **(probe or {})}}
    for name, values in sections.items():
        text += f"\n[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
    path.write_text(text)
    return path


def parse_line(line: str) -> dict[str, str]:
    """A logfmt line into a dict (quoted values unescaped)."""
    out: dict[str, str] = {}
    for token in shlex.split(line, posix=True):
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
    return out


class DaemonProcess:
    def __init__(self, lab: Lab, config: Path, state: Path, *, env: dict[str, str] | None = None) -> None:
        self.lab = lab
        argv = lab.exec_argv([sys.executable, "-m", "impctl", "daemon"])
        full_env = {**os.environ, **lab.env(), "IMPCTL_CONFIG": str(config), "IMPCTL_STATE": str(state),
                    **(env or {})}
        full_env.pop("JOURNAL_STREAM", None)
        self.state_path = state
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=full_env, bufsize=1)
        self.lines: list[dict[str, str]] = []
        self.raw: list[str] = []
        self._queue: queue.Queue[dict[str, str]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line.rstrip("\n"))
            try:
                event = parse_line(line)
            except ValueError:
                continue
            self.lines.append(event)
            self._queue.put(event)

    def wait_for(self, match: Callable[[dict[str, str]], bool], timeout_s: float,
                 what: str = "an event") -> dict[str, str]:
        """The next log event (after those already consumed by earlier waits) that matches."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"daemon: no {what} within {timeout_s} s; log:\n" + "\n".join(self.raw[-40:]))
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if match(event):
                return event

    def events(self, name: str) -> list[dict[str, str]]:
        return [e for e in self.lines if e.get("event") == name]

    def signal(self, sig: int) -> None:
        # ip netns exec execs the daemon: the pid is the daemon's own.
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(timeout=2.0)
        return rc


def is_event(name: str, **fields: str) -> Callable[[dict[str, str]], bool]:
    def match(e: dict[str, str]) -> bool:
        return e.get("event") == name and all(e.get(k) == v for k, v in fields.items())

    return match


def primary_uplink(lab: Lab) -> str | None:
    """The device of the default route with the lowest metric (where traffic goes)."""
    routes = [r for r in lab.default_routes() if "linkdown" not in r.get("flags", [])]
    if not routes:
        return None
    return str(min(routes, key=lambda r: int(r.get("metric", 0)))["dev"])


def restart_networkmanager(lab: Lab, down_s: float = 0.5) -> None:
    """Stop the lab's NetworkManager and start it again after `down_s`, without waiting for it."""
    lab.restart_networkmanager(down_s, wait=False)


def settles(check: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Whether `check()` becomes true within `timeout_s` (NM and the kernel apply changes just after answering)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
