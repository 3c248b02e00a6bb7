"""Cellular result codes with real ModemManager and the lab's simulated modem (ttyUSB0, cell1).

Each SIM/registration state the modem can play maps to its impOS code; a
registered modem connects its net-port bearer (usb0, no PPP) and reaches the
cloud through the lab's carrier; a bearer the network refuses is
NO_PPP_CONNECTION, for real.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from impctl.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.modem]


def impctl(lab: Lab, *args: str, nic: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    argv = [sys.executable, "-m", "impctl", *args, *(["--nic", "-"] if nic is not None else []), "--json"]
    proc = lab.run(argv, input=json.dumps(nic) if nic is not None else None, timeout=90)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode
    return proc.returncode, doc


def routes(lab: Lab) -> list[tuple[str, int]]:
    return sorted((r["dev"], r.get("metric", 0)) for r in lab.default_routes())


# Registration states first (quick), then the SIM states (each a modem replug in the lab).
@pytest.mark.parametrize(
    ("state", "code_name"),
    [
        ("not-registered", "NO_REGISTRATION"),
        ("registration-denied", "REGISTRATION_DENIED"),
        ("sim-locked", "SIM_ERROR"),
        ("no-sim", "SIM_ERROR"),
    ],
)
def test_modem_state_maps_to_its_code_and_changes_nothing(modem_lab: Lab, state: str, code_name: str) -> None:
    modem_lab.modem_state(state)
    before = routes(modem_lab)
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "20", nic={"interface": "cell1"})
    (attempt,) = doc["data"]["attempts"]
    assert (attempt["ifname"], attempt["code_name"]) == ("ttyUSB0", code_name), attempt
    assert rc == 10 + attempt["code"]
    assert routes(modem_lab) == before


def test_refused_bearer_fails_at_the_bearer(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    modem_lab.fault("modem", "bearer-refused")
    before = routes(modem_lab)
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30",
                     nic={"interface": "cell1", "cellconfig": {"apn": "internet"}})
    (attempt,) = doc["data"]["attempts"]
    assert attempt["code_name"] == "NO_PPP_CONNECTION", attempt
    assert attempt["stage"] == "activation"
    assert rc == 22
    assert routes(modem_lab) == before
    state = json.loads(modem_lab.state_path.read_text())
    assert state["last_error"]["name"] == "NO_PPP_CONNECTION"


def test_registered_modem_connects_its_bearer(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30",
                     nic={"interface": "cell1", "cellconfig": {"apn": "internet"}})
    (attempt,) = doc["data"]["attempts"]
    assert (attempt["ifname"], attempt["code_name"]) == ("ttyUSB0", "SERVER_CONNECTED"), attempt
    assert rc == 0
    # The bearer is ModemManager's, on the modem's net port.
    assert any(b["status"]["connected"] == "yes" and b["status"]["interface"] == "usb0"
               for b in modem_lab.modem_bearers())


def test_status_shows_the_modem(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    rc, doc = impctl(modem_lab, "status")
    assert rc == 0
    by_id = {i["identifier"]: i for i in doc["data"]["interfaces"]}
    cell = by_id["cell1"]
    assert cell["ifname"] == "ttyUSB0"
    assert cell["class"] == "cell"
    assert cell["nm_type"] == "MODEM"
    assert cell["cell"]["sim"] == "present"
    assert cell["cell"]["registration"] == "HOME"
    assert cell["cell"]["modem_state"] in ("REGISTERED", "ENABLED", "CONNECTED")
