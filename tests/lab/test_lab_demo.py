"""`impctl lab demo`, the README's first command after the install: its own lab, each step's real result."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from impctl.lab import Lab

pytestmark = pytest.mark.lab


@pytest.fixture
def demo_lab(tmp_path: Path, lab_prefix: str, lab: Lab) -> Iterator[Lab]:
    # `lab` first: the session's lab checks the prerequisites (and fails under IMPCTL_REQUIRE_LAB).
    own = Lab(tmp_path / "demo", lab_prefix + "d")
    yield own
    own.down()


def test_the_demo_probes_fails_over_and_connects_with_a_nic(demo_lab: Lab) -> None:
    argv = [sys.executable, "-m", "impctl", "lab", "demo", "--dir", str(demo_lab.root),
            "--prefix", demo_lab.prefix]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "lab built" in out and "3/3 interfaces reach the cloud" in out
    assert "sequence: ethernet → wifi → cell" in out
    assert "event=connected ifname=eth0 reason=start" in out
    assert 'event=switch from=eth0 to=wlan0 reason="eth0: no carrier"' in out
    assert "connected via cell0 (wwan0), mode manual" in out
    # Run again on the lab it left up: reset, the same story.
    again = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and "lab reset" in again.stdout, again.stdout + again.stderr
    assert "event=connected ifname=wlan0 from=eth0" in again.stdout
