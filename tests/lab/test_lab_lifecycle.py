"""Building and removing labs: nothing left behind, the machine untouched, crashes recovered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from impctl.lab import Lab
from impctl.lab.proc import alive, netns_exists
from impctl.model.errors import LabError, PermissionDenied


def _ip_json(*args: str) -> Any:
    data = json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                                     check=True).stdout or "[]")
    for link in data:
        for addr in link.get("addr_info", []) if isinstance(link, dict) else []:
            # Lifetimes count down by themselves.
            addr.pop("valid_life_time", None)
            addr.pop("preferred_life_time", None)
    return data


def machine_snapshot() -> dict[str, Any]:
    """What the lab must never change in the machine's own namespace and files."""
    return {
        "addr": _ip_json("addr", "show"),
        "route4": _ip_json("-4", "route", "show", "table", "all"),
        "route6": _ip_json("-6", "route", "show", "table", "all"),
        "rules": _ip_json("rule", "show"),
        "resolv.conf": Path("/etc/resolv.conf").read_bytes(),
        "hosts": Path("/etc/hosts").read_bytes(),
        "hostname": os.uname().nodename,
        "etc-nm": sorted((str(p), p.stat().st_mtime) for p in Path("/etc/NetworkManager").rglob("*"))
        if Path("/etc/NetworkManager").exists() else [],
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        # The lab sets these inside its namespaces only.
        "sysctl": {str(p): p.read_text() for p in Path("/proc/sys/net/ipv4/conf").glob("*/*")
                   if p.name in ("ignore_routes_with_linkdown", "rp_filter", "forwarding")},
    }


def leftovers(lab: Lab, pids: list[int]) -> list[str]:
    found = [f"netns {ns}" for ns in lab.namespaces if netns_exists(ns)]
    found += [f"netns {p.name}" for p in Path("/run/netns").glob(f"{lab.prefix}-*")] \
        if Path("/run/netns").is_dir() else []
    found += [f"process {pid}" for pid in pids if alive(pid)]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(lab.root) in cmdline and alive(int(entry.name)):
                found.append(f"process {entry.name}: {cmdline[:80]}")
    mounts = Path("/proc/self/mountinfo").read_text()
    if str(lab.root) in mounts or f"/run/netns/{lab.prefix}-" in mounts:
        found.append("mount")
    if lab.root.exists():
        found.append(f"dir {lab.root}")
    if lab.root.parent.joinpath(f".{lab.root.name}.lock").exists():
        found.append("lock file")
    return found


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "impctl", "lab", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.lab
def test_up_and_down_leave_the_machine_unchanged_and_nothing_behind(
        tmp_path: Path, lab_prefix: str) -> None:
    before = machine_snapshot()
    lab = Lab(tmp_path / "lab", lab_prefix + "u")
    lab.up(replace=True)
    try:
        pids = [int(p) for p in json.loads(lab.lab_file.read_text())["pids"].values()]
        # three dnsmasq, cloud, tinyproxy, dbus, NetworkManager, the LAN device's DHCP client
        assert len(pids) == 8 and all(alive(p) for p in pids)
        assert lab.wait_uplinks(["eth0", "wlan0", "wwan0"], 5.0) is None
        assert machine_snapshot() == before
    finally:
        lab.down()
    assert leftovers(lab, pids) == []
    assert machine_snapshot() == before


@pytest.mark.lab
def test_up_after_a_crash_and_down_without_lab_directory(tmp_path: Path, lab_prefix: str) -> None:
    root = tmp_path / "lab"
    prefix = lab_prefix + "c"
    proc = _cli("up", "--dir", str(root), "--prefix", prefix, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lab = Lab.load(root)
    pids = {k: int(v) for k, v in json.loads(lab.lab_file.read_text())["pids"].items()}

    # A live lab is not replaced by accident.
    proc = _cli("up", "--dir", str(root), "--prefix", prefix)
    assert proc.returncode == 8 and "already up" in proc.stderr

    # Crash: daemons killed, pid files stale; `up` cleans up and builds a working lab.
    os.kill(pids["NetworkManager"], signal.SIGKILL)
    os.kill(pids["dnsmasq-a"], signal.SIGKILL)
    proc = _cli("up", "--dir", str(root), "--prefix", prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Lab.load(root).is_up()
    pids2 = [int(v) for v in json.loads(lab.lab_file.read_text())["pids"].values()]
    assert not any(alive(p) for p in pids.values())

    # Worse crash: the lab directory is gone, namespaces and daemons are not.
    shutil.rmtree(root)
    proc = _cli("down", "--dir", str(root), "--prefix", prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert leftovers(lab, pids2) == []


@pytest.mark.lab
def test_second_up_refuses_a_live_lab(lab: Lab) -> None:
    with pytest.raises(LabError, match="already up"):
        Lab(lab.root, lab.prefix).up()
    assert lab.is_up()


def test_missing_package_is_named_with_its_install_command(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("impctl.lab.prereq.os.geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr("impctl.lab.prereq.shutil.which",
                        lambda name, path=None: None if name == "dnsmasq" else real_which(name, path=path) or name)
    with pytest.raises(LabError) as err:
        Lab(tmp_path / "lab", "imptx").check_prerequisites()
    assert err.value.message == "dnsmasq not found: apt-get install dnsmasq-base"

    from impctl.cli.main import app

    result = CliRunner().invoke(app, ["lab", "up", "--dir", str(tmp_path / "lab"), "--prefix",
                                      "imptx", "--json"])
    assert result.exit_code == 8
    doc = json.loads(result.stdout)
    assert doc["error"]["message"] == "dnsmasq not found: apt-get install dnsmasq-base"
    assert not (tmp_path / "lab").exists()


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("impctl.lab.prereq.os.geteuid", lambda: 1000)
    with pytest.raises(PermissionDenied, match="needs root"):
        Lab(tmp_path / "lab", "imptx").up()
    from impctl.cli.main import app

    result = CliRunner().invoke(app, ["lab", "down", "--dir", str(tmp_path / "lab")])
    assert result.exit_code == 4
    assert "needs root" in result.output


def test_bad_prefix_and_unknown_lab(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="bad lab prefix"):
        Lab(tmp_path, "a/b")
    # The root becomes part of an overlay's layer list, where ':' and ',' separate.
    for bad in ("a:b", "a,b"):
        with pytest.raises(LabError, match="bad lab root"):
            Lab(tmp_path / bad, "impt")
    with pytest.raises(LabError, match="no lab at"):
        Lab.load(tmp_path / "nothing")
    (tmp_path / "lab.json").write_text("[]")
    with pytest.raises(LabError, match="is not a lab's"):
        Lab.load(tmp_path)


@pytest.mark.lab
def test_networkmanager_outside_the_gateway_namespace_aborts_the_lab(
        tmp_path: Path, lab_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import impctl.lab.daemons as daemons_module

    real = daemons_module.netns_argv
    marker = "4242.5"

    def misplaced(netns: str, argv: Any, *args: Any, **kwargs: Any) -> list[str]:
        # A harmless stand-in for NetworkManager, started in the machine's own namespace.
        if argv and argv[0] == "NetworkManager":
            return ["sleep", marker]
        return real(netns, argv, *args, **kwargs)

    monkeypatch.setattr(daemons_module, "netns_argv", misplaced)
    lab = Lab(tmp_path / "lab", lab_prefix + "s")
    with pytest.raises(LabError, match="NetworkManager is not in the gateway namespace"):
        lab.up(replace=True)
    stand_ins = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and (p / "cmdline").exists() and alive(int(p.name))
                 and _cmdline(p) == f"sleep {marker}"]
    assert stand_ins == []
    assert [ns for ns in lab.namespaces if netns_exists(ns)] == []
    # The logs stay for the post-mortem; nothing else does.
    assert sorted(p.name for p in lab.root.iterdir()) == ["logs"]


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


# Where `impctl lab up` is killed: once lab.json exists (namespaces about to be made), then
# once it has recorded this many daemons: 1 (a dnsmasq), 4 (dnsmasqs and the cloud),
# 6 (the bus), 7 (NetworkManager, its leases not yet there).
KILL_AT = (0, 1, 4, 6, 7)


def _up_killed_at(root: Path, prefix: str, recorded: int) -> dict[str, int]:
    """Start `impctl lab up`, SIGKILL it once lab.json lists `recorded` daemons; their pids."""
    proc = subprocess.Popen([sys.executable, "-m", "impctl", "lab", "up", "--dir", str(root),
                             "--prefix", prefix], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pids: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                pids = json.loads((root / "lab.json").read_text())["pids"]
            except (OSError, ValueError, KeyError):
                pids = {}
            else:
                if len(pids) >= recorded:
                    break
            time.sleep(0.001)
        assert proc.poll() is None, f"lab up ended before {recorded} daemons were recorded"
    finally:
        proc.kill()
        proc.wait()
    return pids


@pytest.mark.lab
def test_up_killed_part_way_is_not_up_and_the_next_up_builds(tmp_path: Path,
                                                               lab_prefix: str) -> None:
    root = tmp_path / "lab"
    prefix = lab_prefix + "k"
    try:
        for recorded in KILL_AT:
            pids = _up_killed_at(root, prefix, recorded)
            assert len(pids) >= recorded
            proc = _cli("status", "--dir", str(root), "--json")
            assert proc.returncode == 8, (recorded, proc.stdout + proc.stderr)
            data = json.loads(proc.stdout)["data"]
            assert (data["up"], data["built"]) == (False, False), recorded
            # The daemons started so far still run: a status counting them alone said "up".
            assert all(alive(int(p)) for p in pids.values()), recorded
            proc = _cli("exec", "--dir", str(root), "--", "true")
            assert proc.returncode == 8 and "not up" in proc.stderr, (recorded, proc.stderr)

            proc = _cli("up", "--dir", str(root), "--prefix", prefix, "--json")
            assert proc.returncode == 0, (recorded, proc.stdout + proc.stderr)
            assert Lab.load(root).is_up()
            assert not any(alive(int(p)) for p in pids.values()), recorded
            proc = _cli("down", "--dir", str(root), "--prefix", prefix)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        Lab(root, prefix).down()
    assert leftovers(Lab(root, prefix), []) == []
