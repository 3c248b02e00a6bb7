"""People's views at 80 columns (a serial console on a gateway): no line longer than
the console, and no address, identifier or code name split across two lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from impctl.lab import Lab

ADDRESS = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?:/\d+)?")


def env(columns: int | None, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        out["COLUMNS"] = str(columns)
    return {**out, **extra}


def in_lab(lab: Lab, columns: int, *args: str) -> str:
    proc = subprocess.run(lab.exec_argv([sys.executable, "-m", "impctl", *args]), env=env(columns, **lab.env()),
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def local(state: Path, columns: int | None, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "impctl", "--state", str(state), *args], env=env(columns),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_readable(out: str, tokens: list[str], width: int = 80) -> None:
    """Every line fits `width`; every token stands whole on some line."""
    lines = out.splitlines()
    assert lines, "no output"
    too_long = [line for line in lines if len(line) > width]
    assert too_long == [], too_long
    words = [set(re.split(r"[\s│┃,()]+", line)) for line in lines]
    missing = [t for t in tokens if not any(t in w for w in words)]
    assert missing == [], f"split or missing: {missing}\n{out}"


def status_tokens(doc: dict[str, Any]) -> list[str]:
    tokens: list[str] = []
    for i in doc["data"]["interfaces"]:
        tokens += [i["identifier"], i["ifname"], i["nm_state"].lower(), *i["addresses"], *i["dns"]]
        tokens += [i["gateway"]] if i["gateway"] else []
        tokens += [str(i["route_metric"])] if i["route_metric"] is not None else []
    return tokens


@pytest.mark.lab
def test_status_at_80_columns_keeps_every_address_whole(lab: Lab) -> None:
    doc = json.loads(in_lab(lab, 80, "status", "--json"))
    tokens = status_tokens(doc)
    assert len([t for t in tokens if ADDRESS.fullmatch(t)]) >= 9  # 3 uplinks: address, gateway, dns
    narrow = in_lab(lab, 80, "status")
    assert_readable(narrow, tokens)
    wide = in_lab(lab, 200, "status")  # a wide terminal keeps the one-line-per-interface table
    assert_readable(wide, tokens, width=200)
    assert any("address" in line and "gateway" in line and "metric" in line for line in wide.splitlines())
    assert len(wide.splitlines()) < len(narrow.splitlines())


@pytest.mark.lab
def test_probe_at_80_columns_keeps_reasons_addresses_and_codes_whole(lab: Lab) -> None:
    lab.fault("eth0", "dns-off")
    doc = json.loads(in_lab(lab, 80, "probe", "--json"))
    results = doc["data"]["interfaces"]
    reasons = " ".join(r["reason"] or "" for r in results)
    tokens = [t for r in results for t in (r["identifier"], r["ifname"], r["code_name"])] + ADDRESS.findall(reasons)
    assert "NOT_RESOLVED" in tokens and ADDRESS.findall(reasons)
    assert_readable(in_lab(lab, 80, "probe"), tokens)
    assert_readable(in_lab(lab, 160, "probe"), tokens, width=160)


@pytest.mark.lab
def test_lab_status_at_80_columns(lab: Lab) -> None:
    lab.fault("eth0", "dns-off")
    lab.fault("eth0", "cloud-closed")
    doc = json.loads(in_lab(lab, 80, "lab", "status", "--dir", str(lab.root), "--json"))
    tokens = [t for u in doc["data"]["uplinks"] for t in (u["ifname"], *u["addresses"], *u["faults"])]
    assert "cloud-closed" in tokens
    assert_readable(in_lab(lab, 80, "lab", "status", "--dir", str(lab.root)), tokens)


LONG_PROXY = "proxy-gateway-fleet-17.branch-office.example-corporation.intern"  # 63 characters


def test_config_show_without_columns_is_80_wide_and_keeps_values_whole(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    local(state, None, "config", "static", "--ip", "198.51.100.23", "--netmask", "255.255.255.0",
          "--gateway", "198.51.100.1", "--dns", "198.51.100.53", "--dns", "203.0.113.253", "--interface", "eth0")
    short = ["198.51.100.23", "255.255.255.0", "198.51.100.1", "198.51.100.53", "203.0.113.253", "static.interface"]
    assert_readable(local(state, None, "config", "show"), short)  # piped: rich's default 80 columns
    local(state, None, "config", "proxy", "--address", LONG_PROXY, "--port", "3128", "--username", "fleet",
          "--password", "secret")
    out = local(state, None, "config", "show")
    assert_readable(out, [*short, LONG_PROXY, "3128"])
    assert "secret" not in out


def test_daemon_status_at_80_columns(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    reason = "tcp: cloud 198.19.0.10:443 did not accept a TCP connection in 3.0 s"
    uplinks = [
        {"ifname": "enp0s31f6", "identifier": "eth0", "class": "ethernet", "health": "failed", "active": False,
         "failures": 3, "last_reason": reason},
        {"ifname": "wlp2s0", "identifier": "wl0", "class": "wifi", "health": "degraded", "active": False,
         "failures": 1, "last_reason": "dns: DNS 192.168.100.254 did not answer in 2.0 s"},
        {"ifname": "wwp0s20f0u6", "identifier": "cell0", "class": "cell", "health": "up", "active": True,
         "failures": 0, "last_reason": "the cloud cloud.imp.lab:443 answered"},
    ]
    switches = [{"at": time.time() - 60, "from": "enp0s31f6", "to": "wlp2s0", "reason": f"enp0s31f6 failed: {reason}",
                 "took_s": 0.1234, "verified": True}]
    state.write_text(json.dumps({"schema_version": 1, "daemon": {
        "running": False, "pid": 1, "mode": "automatic", "phase": "connected", "active": "wwp0s20f0u6",
        "uplinks": uplinks, "switches": switches}}))
    tokens = ["enp0s31f6", "wlp2s0", "wwp0s20f0u6", "198.19.0.10:443", "192.168.100.254", "cloud.imp.lab:443",
              "failed", "degraded", "123"]
    assert_readable(local(state, 80, "daemon", "--status"), tokens)
    wide = local(state, 200, "daemon", "--status")
    assert_readable(wide, tokens, width=200)
    assert any(reason in line for line in wide.splitlines())  # the table, a row per uplink


def test_nic_check_at_80_columns(tmp_path: Path) -> None:
    nic = tmp_path / "nic.json"
    nic.write_text(json.dumps({"interface": "eth0", "staticconfig": {
        "ip": "198.51.100.23", "netmask": "255.255.255.0", "gateway": "198.51.100.1",
        "dns": ["198.51.100.53", "203.0.113.253"]},
        "proxyconfig": {"type": "http", "address": LONG_PROXY, "port": 3128}}))
    out = local(tmp_path / "state.json", 80, "nic", "check", str(nic))
    assert_readable(out, ["198.51.100.23", "198.51.100.53", "203.0.113.253", LONG_PROXY, "staticconfig.gateway"])
