"""systemd/impctl.service: `systemd-analyze verify` accepts it, and it says what the issue asks.

CI installs systemd-analyze with the Debian package `systemd` (it needs no
running systemd: verify reads the unit offline).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "impctl.service"


def _unit() -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def test_systemd_analyze_verify_passes() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd (scripts/bootstrap does)"
    proc = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "impctl.service" not in proc.stderr, proc.stderr  # no warnings about the unit either


def test_unit_is_notify_with_watchdog_restart_and_state_directory() -> None:
    service = _unit()["Service"]
    assert service["Type"] == ["notify"]
    assert service["WatchdogSec"] and service["Restart"] == ["on-failure"]
    assert service["StateDirectory"] == ["impctl"]
    assert "daemon" in service["ExecStart"][0]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_unit_is_hardened() -> None:
    service = _unit()["Service"]
    assert set(service["CapabilityBoundingSet"][0].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert set(service["AmbientCapabilities"][0].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    # AF_PACKET: the SYN that nudges a LAN device whose NAT'd flow a switch cut (impctl.model.lannudge).
    assert set(service["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK",
                                                                  "AF_PACKET"}
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                       "MemoryDenyWriteExecute": "yes"}.items():
        assert service[key] == [value], key
    # NM restarts must not stop the daemon: no hard dependency on NetworkManager.
    unit = _unit()["Unit"]
    assert "BindsTo" not in unit and "Requires" not in unit
