"""`impctl probe` of a real ModemManager modem (the lab's simulated modem, cell1 =
ttyUSB0): each SIM/registration state the modem plays gives its impOS code, from
ModemManager's own view; the other uplinks are unaffected."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from impctl.lab import Lab

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
