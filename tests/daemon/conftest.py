"""Fixtures of the daemon's lab tests: a test config and state path, and the daemon running on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labdaemon import DaemonProcess, is_event, write_config

from impctl.lab import Lab


@pytest.fixture
def files(tmp_path: Path, lab: Lab) -> tuple[Path, Path]:
    return write_config(lab, tmp_path / "impctl.toml"), tmp_path / "state" / "state.json"


@pytest.fixture
def daemon(lab: Lab, files: tuple[Path, Path]) -> Iterator[DaemonProcess]:
    config, state = files
    proc = DaemonProcess(lab, config, state)
    try:
        proc.wait_for(is_event("connected", ifname="eth0"), 15.0, "connection through eth0 at start")
        yield proc
    finally:
        proc.stop()
        print("\n".join(proc.raw))  # shown by pytest when the test failed
