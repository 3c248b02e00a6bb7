"""The real systemd as PID 1 of its own namespaces, next to a lab (shared/LAB-NOTES.md's recipe).

`SystemdNS(root, name, lab).boot()` starts `/lib/systemd/systemd` as PID 1 of new
pid/mount/uts/ipc/net/cgroup namespaces, from a fresh cgroup2 directory of its own
(under /sys/fs/cgroup/unified here). Inside, the machine is seen through layers that
keep every write in a tmpfs of this namespace:

- /: an overlay (a tmpfs upper) over the machine's root filesystem, pivoted into, so a
  package installed with apt/dpkg inside lands in the upper and the machine's dpkg
  database, /usr, /opt and /etc never change; /etc also has the lab gateway's hosts and
  resolv.conf (another overlay); the old root is unmounted;
- /run, /tmp, /dev: fresh tmpfs; /run gets back only the lab's gateway netns (at
  /run/netns/NAME, for NetworkNamespacePath=) and `root` (the lab and the packages);
  with the old root go the copies of every other netns mount, so this namespace keeps
  nobody's network namespace alive;
- /proc fresh, /proc/sys read-only (PID 1 would raise the machine's fs.file-max and
  fs.nr_open), sysfs fresh and read-only, a cgroup2 at /sys/fs/cgroup;
- NetworkManager, dbus and ModemManager masked (the lab runs its own).

`run(argv)` runs a command inside (nsenter into all of its namespaces); `shutdown()`
powers it off, kills what is left and removes the cgroup directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from impctl.lab import Lab

PR_SET_PDEATHSIG = 1


def cgroup2_root() -> Path:
    """Where the machine's cgroup2 hierarchy is: /sys/fs/cgroup/unified on a hybrid machine
    (these), /sys/fs/cgroup itself on a unified one."""
    hybrid = Path("/sys/fs/cgroup/unified")
    return hybrid if (hybrid / "cgroup.procs").exists() else Path("/sys/fs/cgroup")


CGROUP_UNIFIED = cgroup2_root()
MASKED = ("NetworkManager.service", "NetworkManager-wait-online.service", "dbus.service", "dbus.socket",
          "ModemManager.service", "systemd-networkd.service", "systemd-resolved.service",
          "systemd-timesyncd.service", "getty.target", "console-getty.service")
TARGET = "impdeb.target"


class SystemdNS:
    def __init__(self, root: Path, name: str, lab: Lab) -> None:
        self.root = root
        self.name = name
        self.lab = lab
        self.cgroup = CGROUP_UNIFIED / name
        self.stage = root / "ns"
        self.console = root / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # systemd's pid as the machine sees it
        self.boot_s: float | None = None

    # ---- boot and shutdown -------------------------------------------------------------------

    def _script(self) -> str:
        s = shlex.quote(str(self.stage))
        q = shlex.quote
        gw = self.lab.gw_netns
        etc_layer = q(str(self.lab.gw_etc_layer(own_run=False)))
        root = q(str(self.root))
        # The new /run holds our root at the same path: it must be under /run.
        in_run = q(str(self.root.relative_to("/run")))
        lines = [
            "set -e",
            f"mount -t tmpfs -o mode=0755 impdeb-stage {s}",
            f"cd {s}",
            "mkdir -p dev run up/etc up/usr up/opt up/var work/etc work/usr work/opt work/var",
            # /dev: a private tmpfs with the few nodes a service needs, bound from the machine's.
            "mount -t tmpfs -o mode=0755,nosuid impdeb-dev dev",
            "for d in null zero full random urandom tty; do touch dev/$d; mount --bind /dev/$d dev/$d; done",
            "mkdir dev/pts dev/shm && ln -s /proc/self/fd dev/fd && ln -s /proc/self/fd/0 dev/stdin",
            # A devpts of our own: apt logs through a pty.
            "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 impdeb-pts dev/pts && ln -s pts/ptmx dev/ptmx",
            "ln -s /proc/self/fd/1 dev/stdout && ln -s /proc/self/fd/2 dev/stderr",
            # /run: units, masks, the lab's gateway netns and our root dir (lab files, packages).
            "mount -t tmpfs -o mode=0755,nosuid,nodev impdeb-run run",
            f"mkdir -p run/systemd/system run/netns run/{in_run}",
            f"touch run/netns/{q(gw)} && mount --bind /run/netns/{q(gw)} run/netns/{q(gw)}",
            f"mount --bind {root} run/{in_run}",
        ]
        for unit in MASKED:
            lines.append(f"ln -s /dev/null run/systemd/system/{unit}")
        target = ("[Unit]\nDescription=impctl's test system (the target PID 1 starts)\n"
                  "Wants=systemd-journald.service\nAllowIsolate=yes\n")
        lines.append(f"printf %s {q(target)} > run/systemd/system/{TARGET}")
        lines += [
            # The new root: an overlay over the machine's root filesystem, so that what dpkg
            # writes (or removes: rmdir of /opt needs a writable /) goes to our tmpfs only.
            "mkdir -p up/root work/root newroot",
            "mount -t overlay -o lowerdir=/,upperdir=up/root,workdir=work/root impdeb-root newroot",
            # The gateway's hosts and resolv.conf (the lab's layer) over the machine's /etc.
            f"mount -t overlay -o lowerdir={etc_layer}:/etc,upperdir=up/etc,workdir=work/etc impdeb-etc newroot/etc",
            # Where the machine has these on filesystems of their own, the root overlay shows
            # only their empty mount points.
            "for d in usr opt var; do if mountpoint -q /$d; then"
            " mount -t overlay -o lowerdir=/$d,upperdir=up/$d,workdir=work/$d impdeb-$d newroot/$d; fi; done",
            "mount -t tmpfs -o mode=1777,nosuid,nodev impdeb-tmp newroot/tmp",
            "mount -n --move dev newroot/dev",
            "mount -t proc proc newroot/proc",
            "mount --bind newroot/proc/sys newroot/proc/sys && mount -o remount,bind,ro newroot/proc/sys",
            "mount -t sysfs -o ro sysfs newroot/sys",
            "mount -t cgroup2 cgroup2 newroot/sys/fs/cgroup",
            "mount -n --move run newroot/run",
            # pivot_root and drop the old root: with it go the copies of every other mount,
            # the other netns among them (else this namespace would keep them alive).
            "cd newroot && mkdir -p .oldroot && pivot_root . .oldroot && cd /",
            "umount -l /.oldroot && rmdir /.oldroot",
            "hostname impdeb",
            f"exec /lib/systemd/systemd --unit={TARGET}",
        ]
        return "\n".join(lines)

    def boot(self, timeout_s: float = 30.0) -> float:
        """Start PID 1 and wait until the system is running; the seconds that took."""
        self.stage.mkdir(parents=True, exist_ok=True)
        self.cgroup.mkdir(exist_ok=True)
        cgroup_procs = self.cgroup / "cgroup.procs"

        def into_cgroup() -> None:
            # Before unshare --cgroup: our directory becomes the namespace's cgroup root, and
            # all PID 1 creates stays under it (removed at shutdown).
            cgroup_procs.write_text("0")
            # If the test session dies, unshare dies with it, and --kill-child takes PID 1
            # and its whole pid namespace along; the next session removes the cgroups.
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "container": self.name, "LANG": "C.UTF-8"}
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
                "--uts", "--ipc", "--net", "--cgroup", "sh", "-c", self._script()]
        started = time.monotonic()
        with self.console.open("wb") as console:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                                         env=env, preexec_fn=into_cgroup)
        deadline = started + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd exited ({self.proc.returncode}); console:\n{self.console_tail()}")
            self.pid = self._child_pid()
            if self.pid is not None and Path(f"/proc/{self.pid}/comm").read_text().strip() == "systemd":
                state = self.run(["systemctl", "is-system-running"], check=False, timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd not running after {timeout_s} s; console:\n{self.console_tail()}")
            time.sleep(0.1)
        self.boot_s = time.monotonic() - started
        return self.boot_s

    def _child_pid(self) -> int | None:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"

    def shutdown(self, timeout_s: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.pid is not None:
                self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # --kill-child: unshare's SIGKILL to PID 1 ends the whole pid namespace.
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
        self._remove_cgroups()

    def _remove_cgroups(self, timeout_s: float = 10.0) -> None:
        if not self.cgroup.exists():
            return
        deadline = time.monotonic() + timeout_s
        while True:
            dirs = sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*dirs, self.cgroup]:
                with contextlib.suppress(OSError):
                    d.rmdir()
            if not self.cgroup.exists():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cgroup {self.cgroup} still busy after {timeout_s} s")
            time.sleep(0.1)

    # ---- inside ------------------------------------------------------------------------------

    def argv(self, argv: list[str]) -> list[str]:
        assert self.pid is not None, "not booted"
        return ["nsenter", "--target", str(self.pid), "--mount", "--uts", "--ipc", "--net", "--pid",
                "--cgroup", "--", *argv]

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
        proc = subprocess.run(self.argv(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              env=full_env, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def write(self, path: str, text: str) -> None:
        self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], input=text)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, since_cursor: str | None = None) -> list[str]:
        argv = ["journalctl", "--no-pager", "-o", "cat", "-u", unit]
        if since_cursor:
            argv += ["--after-cursor", since_cursor]
        return self.run(argv).stdout.splitlines()

    def cursor(self) -> str:
        out = self.run(["journalctl", "--no-pager", "-n", "0", "--show-cursor", "-q"], check=False).stdout
        for line in out.splitlines():
            if line.startswith("-- cursor: "):
                return line.removeprefix("-- cursor: ")
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
