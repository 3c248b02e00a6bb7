"""Fixtures of the system tests: the Debian package built, and systemd booted next to a lab.

- `debs` (session): `scripts/build-deb` run twice at once, in the background, as soon as
  the first test asks: the package at the checkout's version and a rebuild with a bumped
  version (the upgrade). `debs.base()` / `debs.bumped()` wait for theirs.
- `system` (module): a lab (prefix `ideb<pid>`, root /run/impctl-deb-<pid>/lab) and the
  real systemd as PID 1 of namespaces next to it (sysns.SystemdNS), booted once per module.

Where these cannot run (not root, no systemd, debhelper, lintian, unshare/nsenter, no
cgroup2), the tests are skipped with the reason, or fail with it when IMPCTL_REQUIRE_LAB=1
(CI), as the lab tests do (tests/conftest.py).

Figures measured on the way (build, boot, start-to-ready, restart, reload, stop, lintian)
are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from debbuild import (
    FIGURES,
    REPO,
    Debs,
    figure,
)
from sysns import CGROUP_UNIFIED, SystemdNS, alive

from impctl.lab import Lab
from impctl.model.errors import ImpctlError

# labdaemon (the lab daemon tests' helpers: the fast test config) lives next to those tests.
sys.path.insert(0, str(REPO / "tests" / "daemon"))

TOOLS = ("unshare", "nsenter", "dpkg-buildpackage", "dh", "lintian", "apt-get", "fakeroot")
_STALE = re.compile(r"^impctl-deb-(\d+)$")


def skip_or_fail(reason: str) -> None:
    if os.environ.get("IMPCTL_REQUIRE_LAB", "") not in ("", "0"):
        pytest.fail(f"IMPCTL_REQUIRE_LAB is set but the system tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def system_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "systemd in namespaces and dpkg need root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}: run scripts/bootstrap"
    if not Path("/lib/systemd/systemd").exists():
        return "no /lib/systemd/systemd (package systemd)"
    if not (CGROUP_UNIFIED / "cgroup.controllers").exists():
        return f"no cgroup2 hierarchy at {CGROUP_UNIFIED}"
    if subprocess.run(["/usr/bin/python3", "-c", "import ensurepip"], capture_output=True).returncode != 0:
        return "no python3-venv for /usr/bin/python3"
    return None


def lab_unavailable() -> str | None:
    try:
        Lab(Path("/nonexistent"), "impt").check_prerequisites()
    except ImpctlError as err:
        return str(err.message)
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("system figures (measured in this run)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Debs]:
    reason = system_unavailable()
    if reason:
        skip_or_fail(reason)
    d = Debs(tmp_path_factory.mktemp("debs"))
    try:
        yield d
    finally:
        d.stop()


def lab_prefix(pid: int) -> str:
    # A lab prefix has at most 12 characters: "ideb" and a pid of up to 7 digits (pid_max 4194304).
    return f"ideb{pid}"


def _remove_stale() -> None:
    """What a crashed session left: its lab, its cgroup directories, its root dir."""
    for d in Path("/run").glob("impctl-deb-*"):
        m = _STALE.match(d.name)
        if not m or alive(int(m.group(1))):
            continue
        name = lab_prefix(int(m.group(1)))
        Lab(d / "lab", name).down()
        with contextlib.suppress(RuntimeError):
            SystemdNS(d, name, Lab(d / "lab", name))._remove_cgroups(timeout_s=2.0)
        with contextlib.suppress(OSError):
            shutil.rmtree(d)


@pytest.fixture(scope="module")
def system() -> Iterator[SystemdNS]:
    reason = system_unavailable() or lab_unavailable()
    if reason:
        skip_or_fail(reason)
    _remove_stale()
    pid = os.getpid()
    root = Path(f"/run/impctl-deb-{pid}")
    root.mkdir(mode=0o700, exist_ok=True)
    lab = Lab(root / "lab", lab_prefix(pid))
    ns = SystemdNS(root, lab_prefix(pid), lab)
    try:
        lab.up(replace=True)
        figure("systemd 252 as PID 1: boot to running", f"{ns.boot():.2f} s")
        yield ns
    finally:
        try:
            ns.shutdown()
        finally:
            lab.down()
            shutil.rmtree(root, ignore_errors=True)
        assert not ns.cgroup.exists(), f"cgroup {ns.cgroup} left behind"
