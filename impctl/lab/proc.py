"""Processes and network namespaces: the few primitives the lab is built from.

Everything here shells out to iproute2/util-linux (`ip`, `unshare`, `mount`)
or uses `setns()` in a short-lived thread; nothing here knows the lab's layout.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from impctl.model.errors import LabError

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

# A daemon that ignores SIGTERM this long gets SIGKILL.
TERM_GRACE_S = 2.0


def sh(argv: Sequence[str], *, input: str | None = None, check: bool = True,
       timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a failure becomes a LabError naming the command."""
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as err:
        raise LabError(f"{argv[0]} not found") from err
    except subprocess.TimeoutExpired as err:
        raise LabError(f"{shlex.join(argv)} did not finish in {timeout:.0f} s") from err
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{shlex.join(argv)} failed: {detail[-1] if detail else proc.returncode}")
    return proc


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_inode(name: str) -> int | None:
    try:
        return (NETNS_DIR / name).stat().st_ino
    except OSError:
        return None


def root_netns_inode() -> int:
    """The machine's own network namespace: PID 1's, or ours when PID 1 is out of reach."""
    try:
        return os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return os.stat("/proc/self/ns/net").st_ino


def pid_netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def netns_pids(name: str) -> list[int]:
    """Pids of every process in the named netns (what `ip netns pids` does).

    Refuses when the name is bound to the machine's own namespace: killing
    "every process of the lab" must never mean every process of the machine.
    """
    ino = netns_inode(name)
    if ino is None:
        return []
    if ino == root_netns_inode():
        raise LabError(f"/run/netns/{name} is the machine's own network namespace: refusing to touch it")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_netns_inode(int(entry)) == ino:
            pids.append(int(entry))
    return pids


def pid_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat, None when the process is gone.

    Daemons reparented to a PID 1 that reaps late stay zombies for seconds,
    so `kill -0` is not proof of life; 'Z' and 'X' mean dead.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    state = pid_state(pid)
    return state is not None and state not in ("Z", "X")


def kill_all(pids: Sequence[int], grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM, wait until each is dead (or a zombie), then SIGKILL the rest."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    rest = [p for p in pids if alive(p)]
    while rest and time.monotonic() < deadline:
        time.sleep(0.01)
        rest = [p for p in rest if alive(p)]
    for pid in rest:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while rest and time.monotonic() < deadline:
        time.sleep(0.01)
        rest = [p for p in rest if alive(p)]


Bind = tuple[Path | str, str] | str


def mount_script(binds: Sequence[Bind], *, ro_sys: bool = False,
                 hostname: str | None = None) -> str:
    """A shell prologue for a private mount namespace: bind lab files over system paths.

    `binds` are (source, target) pairs, or raw shell lines run at that point.
    Read-only /sys is what makes NetworkManager manage devices without udev.
    """
    lines = ["set -e"]
    for bind in binds:
        if isinstance(bind, str):
            lines.append(bind)
            continue
        src, dst = bind
        lines.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}")
    if ro_sys:
        lines.append("mount -o bind,ro /sys /sys")
    if hostname:
        lines.append(f"hostname {shlex.quote(hostname)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def netns_argv(netns: str, argv: Sequence[str], binds: Sequence[Bind] = (),
               *, ro_sys: bool = False, hostname: str | None = None) -> list[str]:
    """argv that runs `argv` in `netns`, in a private mount (and UTS) namespace with `binds`."""
    return [
        "ip", "netns", "exec", netns,
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "sh", "-c", mount_script(binds, ro_sys=ro_sys, hostname=hostname), "sh", *argv,
    ]


def _setns(fd: int, nstype: int) -> None:
    # os.setns exists from Python 3.12 on; 3.11 needs libc's.
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, nstype)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Call fn in a thread that has joined `netns`; the caller's thread stays where it is.

    Network setns() is per thread and a socket keeps the namespace it was
    created in, so a socket made here can be used from any thread afterwards.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                _setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def netns_socket(netns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                 proto: int = 0) -> socket.socket:
    """A socket living in `netns`, usable from the calling thread."""
    return in_netns(netns, lambda: socket.socket(family, type, proto))


def wait_for(what: str, check: Callable[[], bool], timeout_s: float,
             interval_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise LabError(f"{what}: not within {timeout_s:.1f} s")
        time.sleep(interval_s)
