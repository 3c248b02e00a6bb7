"""The typed state (schema 2), its one Mode, and the migration from version 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impctl.backends.statefile import load_state, write_state
from impctl.model.errors import StateError
from impctl.model.nic import Secret
from impctl.model.state import (
    SCHEMA_VERSION,
    CurrentUplink,
    Mode,
    Pin,
    State,
    state_from_dict,
)

# A state file as impctl 0.1 (schema 1) wrote it after `config wifi/static/proxy`,
# `interfaces set`, a connectwith with an extended NIC and a daemon run.
TOKEN = "gAAAAABnAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
VERSION_1 = {
    "schema_version": 1,
    "sequence": ["wifi", "ethernet"],
    "sequence_index": 1,
    "pinned": {"interface": "eth0", "staticconfig": {"ip": "198.18.1.60", "netmask": "255.255.255.0",
                                                     "gateway": "198.18.1.1", "dns": ["198.18.1.1"]}},
    "stored": {
        "wifi": {"ssid": "plant-floor", "key": {"encrypted": TOKEN}},
        "static": {"ip": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1", "dns": ["10.0.0.1"],
                   "interface": "eth1"},
        "proxy": {"type": "http", "address": "proxy.example", "port": 3128, "username": "u",
                  "password": {"encrypted": TOKEN}},
    },
    "current": {"identifier": "eth0", "ifname": "eth0", "class": "ethernet", "since": 1764600000.5,
                "nic": {"interface": "eth0", "staticconfig": {"ip": "198.18.1.60", "netmask": "255.255.255.0",
                                                             "gateway": "198.18.1.1", "dns": ["198.18.1.1"]}}},
    "last_error": {"code": 4, "name": "NO_SERVER", "identifier": "wl0", "ifname": "wlan0",
                   "reason": "cloud did not answer", "at": 1764600000.0},
    "last_results": {"wl0": {"code": 4}},
    "daemon": {"daemon_state_version": 1, "mode": "manual", "phase": "connected", "active": "eth0",
               "lost_reason": None, "failback": True, "running": False, "pid": 4242,
               "uplinks": [{"ifname": "eth0", "identifier": "eth0", "class": "ethernet", "health": "healthy",
                            "active": True, "link": True, "ip_ready": True, "failures": 0, "last_code": 5,
                            "last_reason": None, "last_probe_at": 1764600001.0, "usable_since": 1764600000.0,
                            "losses": 0}],
               "switches": [{"at": 1764600002.0, "from": "wlan0", "to": "eth0", "reason": "failback",
                             "took_s": 0.058, "verified": True}],
               "settings": {"probe_interval_s": 2.0}},
}


def test_version_1_file_migrates_without_losing_anything(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(VERSION_1))
    state = load_state(path)
    assert state.mode is Mode.MANUAL
    assert state.pinned is not None and state.pinned.interface == "eth0"
    assert state.pinned.nic is not None and state.pinned.nic.staticconfig is not None
    assert state.pinned.nic.staticconfig.ip == "198.18.1.60"
    assert state.stored.wifi is not None and state.stored.wifi.config.ssid == "plant-floor"
    assert state.stored.wifi.config.key == Secret(encrypted=TOKEN)
    assert state.stored.static is not None and state.stored.static.interface == "eth1"
    assert state.stored.proxy is not None and state.stored.proxy.config.password == Secret(encrypted=TOKEN)
    assert state.current == CurrentUplink("eth0", "eth0", "ethernet", 1764600000.5, by="connect",
                                          nic=state.pinned.nic)
    assert state.disconnected_at is None
    assert state.daemon is not None and state.daemon.active == "eth0" and state.daemon.pid == 4242
    assert state.daemon.switches[0].took_s == 0.058
    # Written back as version 2, and read again to the same state.
    write_state(path, state)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert doc["stored"] == VERSION_1["stored"]
    assert doc["pinned"] == VERSION_1["pinned"]
    assert doc["daemon"]["switches"] == VERSION_1["daemon"]["switches"]  # type: ignore[index]
    assert load_state(path) == state


@pytest.mark.parametrize(("pinned", "sequence", "mode"), [
    (None, [], Mode.LEGACY),
    (None, ["cell"], Mode.AUTOMATIC),
    (Pin("wl0"), ["cell"], Mode.MANUAL),
])
def test_mode_is_computed_in_one_place(pinned: Pin | None, sequence: list[str], mode: Mode) -> None:
    assert State(sequence=sequence, pinned=pinned).mode is mode


@pytest.mark.parametrize(("doc", "names"), [
    ({"schema_version": 2, "pinned": {"interface": "eth0", "wificonfig": 3}}, "pinned"),
    ({"schema_version": 2, "stored": {"wifi": {"ssid": ""}}}, "stored.wifi"),
    ({"schema_version": 2, "stored": {"cell": {}}}, "stored.cell"),
    ({"schema_version": 2, "current": {"ifname": "eth0"}}, "current.identifier"),
    ({"schema_version": 2, "disconnected_at": "yesterday"}, "disconnected_at"),
    ({"schema_version": 3}, "schema version 3"),
])
def test_a_wrong_field_is_named(doc: dict[str, object], names: str) -> None:
    with pytest.raises(StateError, match=names.replace(".", r"\.")):
        state_from_dict(doc)


def test_a_malformed_daemon_view_is_dropped_not_fatal() -> None:
    # The daemon rewrites its view within seconds; a bad one must not lock the user out.
    state = state_from_dict({"schema_version": 2, "sequence": ["cell"], "daemon": {"uplinks": "nope"}})
    assert state.daemon is None and state.sequence == ["cell"]
