"""sd_notify(3) over $NOTIFY_SOCKET, without libsystemd: READY=1, WATCHDOG=1, STOPPING=1, STATUS=.

The protocol is one datagram per notification on a unix socket whose path
systemd passes in NOTIFY_SOCKET ("@..." is an abstract socket). Outside
systemd (no NOTIFY_SOCKET) every call does nothing, so the daemon runs the
same in a terminal. A failure to send is never fatal: systemd being gone
must not take the gateway's connectivity with it.
"""

from __future__ import annotations

import os
import socket

NOTIFY_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"


def _address(raw: str) -> str | bytes | None:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # vsock and other forms are not used for services


class Notifier:
    """Sends notifications to systemd; does nothing when not run under Type=notify."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get(NOTIFY_ENV, ""))
        self._sock: socket.socket | None = None
        self.watchdog_s = _watchdog_s(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; True when it was sent."""
        if self._address is None:
            return False
        # A STATUS line with a newline would split into a bogus field.
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_s(env: dict[str, str] | os._Environ[str]) -> float | None:
    """The watchdog period systemd expects (WatchdogSec=), if it is meant for this process."""
    usec = env.get(WATCHDOG_USEC_ENV, "")
    pid = env.get(WATCHDOG_PID_ENV, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # set for another process (e.g. our parent)
    return int(usec) / 1_000_000
