"""`impctl probe` of a real ModemManager modem (the lab's simulated modem, cell1 =
ttyUSB0): each SIM/registration state the modem plays gives its impOS code, from
ModemManager's own view; the other uplinks are unaffected."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from impctl.lab import Lab
from impctl.lab.topology import BEARER_IP, MODEM_APN, MODEM_NET_IFNAME

pytestmark = [pytest.mark.lab, pytest.mark.modem]


def probe(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.run([sys.executable, "-m", "impctl", "probe", "--json", *args], timeout=60)
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode, proc.stderr
    return proc.returncode, doc["data"]


def test_modem_states_give_the_cellular_codes(modem_lab: Lab) -> None:
    # registered, no bearer up (probe brings none up): the bearer stage fails
    modem_lab.modem_state("registered")
    rc, data = probe(modem_lab)
    by_id = {i["identifier"]: i for i in data["interfaces"]}
    cell = by_id["cell1"]
    assert cell["ifname"] == "ttyUSB0" and cell["class"] == "cell"
    assert cell["code_name"] == "NO_PPP_CONNECTION" and cell["code"] == 12
    assert [s["name"] for s in cell["stages"]] == ["modem", "sim", "registration", "bearer"]
    assert [s["ok"] for s in cell["stages"]] == [True, True, True, False]
    assert "HOME" in cell["stages"][2]["detail"]
    # the veth uplinks, cell0 included, still reach the cloud
    assert {k: v["code_name"] for k, v in by_id.items() if k != "cell1"} == \
        {"eth0": "SERVER_CONNECTED", "wl0": "SERVER_CONNECTED", "cell0": "SERVER_CONNECTED"}
    assert rc == 9
    rc, _ = probe(modem_lab, "cell1")
    assert rc == 22

    # registration switches (quick), then SIM switches (a modem replug each)
    for state, code_name, failed_stage in [
        ("not-registered", "NO_REGISTRATION", "registration"),
        ("registration-denied", "REGISTRATION_DENIED", "registration"),
        ("sim-locked", "SIM_ERROR", "sim"),
        ("no-sim", "SIM_ERROR", "sim"),
    ]:
        modem_lab.modem_state(state)
        rc, data = probe(modem_lab, "cell1")
        (cell,) = data["interfaces"]
        assert (state, cell["code_name"]) == (state, code_name), cell
        assert cell["stages"][-1]["name"] == failed_stage and not cell["stages"][-1]["ok"]
        assert rc == 10 + cell["code"]


CELL_NIC = {"interface": "cell1", "cellconfig": {"apn": MODEM_APN}}


def connect_cell(lab: Lab) -> None:
    proc = lab.run([sys.executable, "-m", "impctl", "connectwith", "--nic", "-", "--json"],
                   input=json.dumps(CELL_NIC), timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bearer_faults_give_their_codes_with_modemmanagers_words(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    connect_cell(modem_lab)
    rc, data = probe(modem_lab, "cell1")
    (cell,) = data["interfaces"]
    assert (cell["code_name"], rc) == ("SERVER_CONNECTED", 0), cell
    assert cell["ifname"] == MODEM_NET_IFNAME  # the bearer's IP interface, not the AT port
    assert cell["stages"][3]["detail"] == f"data bearer connected on {MODEM_NET_IFNAME} ({BEARER_IP}/24)"
    assert cell["stages"][2]["detail"] == "registered (HOME, operator impctl lab, umts, signal 64%)"

    # the carrier passes nothing: the bearer is up, the cloud unreachable
    modem_lab.fault("modem", "carrier-blackhole")
    rc, data = probe(modem_lab, "cell1")
    (cell,) = data["interfaces"]
    assert (cell["code_name"], rc) == ("PPP_NO_CONNECTIVITY", 23), cell
    assert [s["ok"] for s in cell["stages"][:4]] == [True, True, True, True]

    # the network deactivates the context (+CGEV: NW DEACT): ModemManager's error is named
    modem_lab.modem_state("registered")
    connect_cell(modem_lab)
    modem_lab.fault("modem", "bearer-dropped")
    rc, data = probe(modem_lab, "cell1")
    (cell,) = data["interfaces"]
    assert (cell["code_name"], rc) == ("NO_PPP_CONNECTION", 22), cell
    assert "last bearer error MobileEquipment.Unknown" in cell["reason"], cell["reason"]


def test_an_unplugged_modem_is_no_modem(modem_lab: Lab) -> None:
    modem_lab.modem_state("unplugged")
    rc, data = probe(modem_lab, "cell1")
    (cell,) = data["interfaces"]
    assert (cell["identifier"], cell["code_name"], cell["code"], rc) == ("cell1", "NO_MODEM", 8, 18), cell
    assert cell["stages"][0]["name"] == "modem" and not cell["stages"][0]["ok"]
    # with another uplink named too: both are probed, the modem still NO_MODEM
    rc, data = probe(modem_lab, "eth0", "cell1")
    assert [(i["identifier"], i["code_name"]) for i in data["interfaces"]] == \
        [("eth0", "SERVER_CONNECTED"), ("cell1", "NO_MODEM")]
    assert rc == 9
