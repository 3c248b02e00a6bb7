"""Building the Debian package for the system tests: scripts/build-deb, twice at once.

`Debs(dir)` starts both builds in the background (the checkout's version and a rebuild
with BUMPED appended, the upgrade); `base()` / `bumped()` wait for theirs. `figure()`
records a measured figure; tests/system/conftest.py prints them at the end of the run.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUMPED = "+test1"  # appended to the checkout's version for the upgrade
FIGURES: dict[str, str] = {}


def figure(name: str, value: str) -> None:
    FIGURES[name] = value


def checkout_version() -> str:
    out = subprocess.run(["dpkg-parsechangelog", "-l", str(REPO / "debian/changelog"), "-S", "Version"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Build:
    def __init__(self, out: Path, version: str | None) -> None:
        self.out = out
        self.version = version
        argv = [str(REPO / "scripts/build-deb"), "--out", str(out)]
        if version:
            argv += ["--version", version]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._deb: Path | None = None
        self.took_s = 0.0

    def wait(self, timeout_s: float = 400.0) -> Path:
        if self._deb is None:
            stdout, stderr = self.proc.communicate(timeout=timeout_s)
            self.took_s = time.monotonic() - self.started
            assert self.proc.returncode == 0, f"scripts/build-deb failed:\n{stderr}"
            self._deb = Path(stdout.strip().splitlines()[-1])
            assert self._deb.is_file(), stdout
        return self._deb


class Debs:
    def __init__(self, base: Path) -> None:
        self.version = checkout_version()
        self.bumped_version = self.version + BUMPED
        self._base = Build(base / "base", None)
        self._bumped = Build(base / "bumped", self.bumped_version)

    def base(self) -> Path:
        deb = self._base.wait()
        figure("scripts/build-deb (two builds at once)", f"{self._base.took_s:.1f} s")
        return deb

    def bumped(self) -> Path:
        return self._bumped.wait()

    def stop(self) -> None:
        for b in (self._base, self._bumped):
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.communicate()
