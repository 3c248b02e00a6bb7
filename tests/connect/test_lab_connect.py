"""connectwith, connect, disconnect and status against the lab's real NetworkManager.

Each test starts from a reset lab: eth0, wlan0 and wwan0 (identifiers eth0,
wl0, cell0) active with the lab's profiles, metrics 100/600/700, no state file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from impctl.backends.gatewaylock import GatewayLock, lock_path_for
from impctl.lab import Lab

pytestmark = pytest.mark.lab

IDENT_TO_IFNAME = {"eth0": "eth0", "wl0": "wlan0", "cell0": "wwan0"}


def impctl(lab: Lab, *args: str, nic: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    argv = [sys.executable, "-m", "impctl", *args, *(["--nic", "-"] if nic is not None else []), "--json"]
    proc = lab.run(argv, input=json.dumps(nic) if nic is not None else None, timeout=90)
    print(proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode
    return proc.returncode, doc


def routes_by_dev(lab: Lab) -> dict[str, int]:
    return {r["dev"]: r.get("metric", 0) for r in lab.default_routes()}


def primary_dev(lab: Lab) -> str:
    routes = routes_by_dev(lab)
    return min(routes, key=lambda dev: routes[dev])


def nm_states(lab: Lab) -> dict[str, tuple[str, str]]:
    out = lab.nmcli("-t", "-f", "DEVICE,STATE,CONNECTION", "device").stdout
    return {p[0]: (p[1], p[2]) for p in (line.split(":", 2) for line in out.splitlines()) if len(p) == 3}


def keyfiles(lab: Lab) -> set[str]:
    return {p.name for p in lab.keyfile_dir.iterdir()}


def test_connectwith_each_uplink_in_turn_moves_the_primary_route(lab: Lab) -> None:
    before = keyfiles(lab)
    previous: str | None = None
    for ident in ("eth0", "wl0", "cell0"):
        ifname = IDENT_TO_IFNAME[ident]
        rc, doc = impctl(lab, "connectwith", nic={"interface": ident})
        assert rc == 0, doc
        (attempt,) = doc["data"]["attempts"]
        assert attempt["code_name"] == "SERVER_CONNECTED"
        assert attempt["ifname"] == ifname
        assert primary_dev(lab) == ifname
        states = nm_states(lab)
        assert states[ifname] == ("connected", f"impctl-{ifname}")
        if previous is not None and previous != ifname:
            # impOS: the previous interface is disconnected and powered down.
            assert states[previous][0] == "disconnected"
            assert previous not in routes_by_dev(lab)
            assert attempt["details"]["previous_taken_down"] in IDENT_TO_IFNAME
        previous = ifname
    # Volatile profiles: nothing written to the keyfile directory.
    assert keyfiles(lab) == before
    state = json.loads(lab.state_path.read_text())
    assert state["pinned"] == {"interface": "cell0"}
    assert state["current"]["ifname"] == "wwan0"


def test_connectwith_static_config(lab: Lab) -> None:
    eth = lab.uplink("eth0")
    prefix = eth.subnet.rsplit(".", 1)[0]
    nic = {
        "interface": "eth0",
        "staticconfig": {"ip": f"{prefix}.77", "netmask": "255.255.255.0",
                         "gateway": eth.router_ip, "dns": [eth.router_ip]},
    }
    rc, doc = impctl(lab, "connectwith", nic=nic)
    assert rc == 0, doc
    assert lab.addresses()["eth0"] == [f"{prefix}.77/24"]
    rc, status = impctl(lab, "status")
    assert rc == 0
    by_id = {i["identifier"]: i for i in status["data"]["interfaces"]}
    assert by_id["eth0"]["addresses"] == [f"{prefix}.77/24"]
    assert by_id["eth0"]["gateway"] == eth.router_ip
    assert by_id["eth0"]["dns"] == [eth.router_ip]
    assert by_id["eth0"]["active"] is True
    # config current hands the NIC back, reusable with connectwith --nic.
    rc, current = impctl(lab, "config", "current")
    assert rc == 0
    assert current["data"]["nic"] == nic


def test_failing_nic_leaves_the_current_uplink_untouched(lab: Lab) -> None:
    rc, _ = impctl(lab, "connectwith", nic={"interface": "eth0"})
    assert rc == 0
    routes = routes_by_dev(lab)
    addresses = lab.addresses()
    lab.fault("wlan0", "cloud-closed")
    rc, doc = impctl(lab, "connectwith", "--timeout", "20", nic={"interface": "wl0"})
    assert rc == 10 + 4, doc  # NO_SERVER
    (attempt,) = doc["data"]["attempts"]
    assert attempt["code_name"] == "NO_SERVER"
    assert attempt["stage"] == "cloud"
    assert primary_dev(lab) == "eth0"
    assert routes_by_dev(lab)["eth0"] == routes["eth0"]
    assert lab.addresses()["eth0"] == addresses["eth0"]
    states = nm_states(lab)
    assert states["eth0"] == ("connected", "impctl-eth0")
    # wlan0 got its lab profile back: the attempt left no trace.
    assert states["wlan0"] == ("connected", lab.uplink("wlan0").profile_id)
    state = json.loads(lab.state_path.read_text())
    assert state["current"]["ifname"] == "eth0"
    assert state["last_error"]["name"] == "NO_SERVER"


def test_connect_walks_the_sequence_past_a_faulted_uplink(lab: Lab) -> None:
    rc, _ = impctl(lab, "interfaces", "set", "wifi", "cell")
    assert rc == 0
    lab.fault("wlan0", "cloud-closed")
    lab.fault("eth0", "cloud-closed")  # the current (primary) uplink is broken too
    rc, doc = impctl(lab, "connect", "--timeout", "20")
    assert rc == 0, doc
    attempts = [(a["identifier"], a["code_name"]) for a in doc["data"]["attempts"]]
    assert attempts == [("wl0", "NO_SERVER"), ("cell0", "SERVER_CONNECTED")]
    assert doc["data"]["mode"] == "automatic"
    assert primary_dev(lab) == "wwan0"
    assert nm_states(lab)["eth0"][0] == "disconnected"
    # The index follows the walk: cell is the second entry of ["wifi", "cell"].
    rc, doc = impctl(lab, "interfaces", "get")
    assert doc["data"]["index"] == 1


def test_connect_when_connected_changes_nothing(lab: Lab) -> None:
    before = (nm_states(lab), routes_by_dev(lab))
    rc, doc = impctl(lab, "connect")
    assert rc == 0, doc
    assert doc["data"]["already_connected"] is True
    assert doc["data"]["attempts"] == []
    assert (nm_states(lab), routes_by_dev(lab)) == before


def test_connect_reports_every_failed_attempt_and_exits_with_the_last_code(lab: Lab) -> None:
    for u in lab.uplinks:
        lab.fault(u.ifname, "cloud-closed")
    before = nm_states(lab)
    rc, doc = impctl(lab, "connect", "--timeout", "20")
    attempts = [(a["identifier"], a["code_name"]) for a in doc["data"]["attempts"]]
    # cell0 is a veth with no modem behind it: it keeps the stage's code, as impctl probe reports it.
    assert attempts == [("eth0", "NO_SERVER"), ("wl0", "NO_SERVER"), ("cell0", "NO_SERVER")]
    assert rc == 10 + 4
    assert nm_states(lab) == before


def test_disconnect_takes_the_current_uplink_down(lab: Lab) -> None:
    rc, _ = impctl(lab, "connectwith", nic={"interface": "wl0"})
    assert rc == 0
    rc, doc = impctl(lab, "disconnect")
    assert rc == 0
    assert doc["data"] == {"was_connected": True, "identifier": "wl0", "ifname": "wlan0"}
    assert nm_states(lab)["wlan0"][0] == "disconnected"
    assert "wlan0" not in routes_by_dev(lab)
    rc, status = impctl(lab, "status")
    assert all(i["ifname"] != "wlan0" or not i["active"] for i in status["data"]["interfaces"])


def test_status_shows_every_interface(lab: Lab) -> None:
    rc, doc = impctl(lab, "status")
    assert rc == 0
    data = doc["data"]
    by_id = {i["identifier"]: i for i in data["interfaces"]}
    assert set(by_id) == {"eth0", "wl0", "cell0"}
    for ident, ifname in IDENT_TO_IFNAME.items():
        u = lab.uplink(ifname)
        info = by_id[ident]
        assert info["ifname"] == ifname
        assert info["class"] == u.cls
        assert info["nm_state"] == "ACTIVATED"
        assert info["gateway"] == u.router_ip
        assert info["dns"] == [u.router_ip]
        assert info["route_metric"] == u.metric
        assert info["addresses"] == lab.addresses()[ifname]
    assert data["primary"] == "eth0"
    assert by_id["eth0"]["active"] is True
    assert data["last_error"] is None


def test_unknown_interface_and_bad_nic_change_nothing(lab: Lab) -> None:
    before = (nm_states(lab), routes_by_dev(lab))
    rc, doc = impctl(lab, "connectwith", nic={"interface": "eth5"})
    assert rc == 6
    assert doc["error"]["kind"] == "no_such_interface"
    # A wificonfig for the lab's veth playing wifi: it is not WiFi hardware.
    rc, doc = impctl(lab, "connectwith", nic={"interface": "wl0", "wificonfig": {"ssid": "x", "key": None}})
    assert rc == 2
    assert doc["error"]["path"] == "wificonfig"
    assert (nm_states(lab), routes_by_dev(lab)) == before
    assert not lab.state_path.exists()


def test_cellular_identifier_without_a_modem_is_no_modem(lab: Lab) -> None:
    # cell0 is the veth playing cell; cell1 would be a second cellular interface: none here.
    before = (nm_states(lab), routes_by_dev(lab))
    rc, doc = impctl(lab, "connectwith", nic={"interface": "cell1"})
    assert rc == 10 + 8
    assert doc["data"]["attempts"][0]["code_name"] == "NO_MODEM"
    assert (nm_states(lab), routes_by_dev(lab)) == before


def test_proxy_stored_and_in_the_nic(lab: Lab) -> None:
    rc, _ = impctl(lab, "config", "proxy", "--address", lab.proxy_host, "--port", str(lab.proxy_port),
                   "--username", lab.proxy_user, "--password", "wrong-password")
    assert rc == 0
    rc, doc = impctl(lab, "connectwith", "--timeout", "20", nic={"interface": "wl0"})
    assert doc["data"]["attempts"][0]["code_name"] == "NOT_AUTHORISED"
    assert rc == 10 + 7
    nic = {"interface": "wl0", "proxyconfig": {"address": lab.proxy_host, "port": lab.proxy_port,
                                               "username": lab.proxy_user, "password": lab.proxy_password}}
    rc, doc = impctl(lab, "connectwith", "--timeout", "20", nic=nic)
    assert rc == 0, doc
    rc, current = impctl(lab, "config", "current")
    assert set(current["data"]["nic"]["proxyconfig"]["password"]) == {"encrypted"}
    for text in (json.dumps(doc), json.dumps(current), lab.state_path.read_text()):
        assert lab.proxy_password not in text
        assert "wrong-password" not in text


def test_manual_mode_connect_uses_the_pinned_interface_only(lab: Lab) -> None:
    rc, _ = impctl(lab, "connectwith", nic={"interface": "wl0"})
    assert rc == 0
    lab.fault("wlan0", "link-down")
    # cell0 still carries a default route and reaches the cloud, but impOS 42's manual
    # mode connects through the interface connectwith set, and reports its failure.
    assert "wwan0" in routes_by_dev(lab)
    rc, doc = impctl(lab, "connect")
    assert rc == 11, doc
    assert doc["data"]["mode"] == "manual"
    assert [a["ifname"] for a in doc["data"]["attempts"]] == ["wlan0"]
    assert doc["data"]["attempts"][0]["code_name"] == "NO_WIFI"


def test_a_second_connectwith_waits_for_the_first_and_says_so(lab: Lab, tmp_path: Path) -> None:
    # The first attempt's cloud check waits out its TCP timeout (a static NIC whose gateway
    # does not exist) while it holds the gateway.
    wlan = lab.uplink("wlan0")
    prefix = wlan.subnet.rsplit(".", 1)[0]
    slow = {"interface": "wl0", "staticconfig": {"ip": f"{prefix}.78", "netmask": "255.255.255.0",
                                                 "gateway": f"{prefix}.254", "dns": [wlan.router_ip]}}
    argv = [sys.executable, "-m", "impctl", "connectwith", "--nic", "-", "--json"]
    first_out = (tmp_path / "first.out").open("w+")
    first = subprocess.Popen(lab.exec_argv(argv), stdin=subprocess.PIPE, stdout=first_out,
                             stderr=subprocess.DEVNULL, text=True, env={**os.environ, **lab.env()})
    assert first.stdin is not None
    first.stdin.write(json.dumps(slow))
    first.stdin.close()
    lock = GatewayLock(lock_path_for(lab.state_path))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the first holds the gateway
        with lock.try_hold("test") as free:
            if not free:
                break
        time.sleep(0.01)
    else:
        raise AssertionError("the first connectwith never took the gateway lock")
    second = lab.run(argv, input=json.dumps({"interface": "eth0"}), timeout=120)
    first.wait(timeout=120)
    first_out.seek(0)
    first_doc = json.loads(first_out.read())
    # The first ended (rolled back) before the second touched anything.
    assert first_doc["data"]["attempts"][0]["code_name"] == "NO_SERVER"
    assert "waiting for impctl connectwith (pid " in second.stderr
    assert second.returncode == 0, second.stderr
    assert primary_dev(lab) == "eth0"
    assert json.loads(lab.state_path.read_text())["current"]["ifname"] == "eth0"
