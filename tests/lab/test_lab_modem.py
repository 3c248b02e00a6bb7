"""The modem lab: real ModemManager sees the simulated modem, and each switch of its answers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from impctl.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.modem]


def mm_view(lab: Lab) -> dict[str, Any]:
    """ModemManager's own words, read with mmcli from inside the gateway."""
    proc = lab.run(["mmcli", "-J", "-m", "any"], check=True)
    modem = json.loads(proc.stdout)["modem"]
    return {
        "state": modem["generic"]["state"],
        "failed": modem["generic"].get("state-failed-reason"),
        "unlock": modem["generic"].get("unlock-required"),
        "registration": modem["3gpp"].get("registration-state"),
    }


def test_mm_and_nm_see_the_registered_modem(modem_lab: Lab) -> None:
    proc = modem_lab.run(["mmcli", "-J", "-m", "any"], check=True)
    modem = json.loads(proc.stdout)["modem"]
    assert modem["generic"]["primary-port"] == "ttyUSB0"
    assert modem["generic"]["plugin"] == "u-blox"
    assert sorted(modem["generic"]["ports"]) == ["ttyUSB0 (at)", "usb0 (net)"]
    assert modem["3gpp"]["imei"] == "490154203237518"
    assert mm_view(modem_lab) == {"state": "registered", "failed": "--", "unlock": "--",
                                  "registration": "home"}
    devices = modem_lab.nmcli("-t", "-f", "DEVICE,TYPE", "device").stdout.split()
    assert "ttyUSB0:gsm" in devices
    # The three uplinks are unaffected by the modem.
    for u in modem_lab.uplinks:
        assert modem_lab.uplink_healthy(u)
    assert 'cell1 = "ttyUSB0"' in modem_lab.config_path.read_text()


EXPECTED = {
    "not-registered": {"state": "searching", "failed": "--", "unlock": "--",
                       "registration": "searching"},
    "registration-denied": {"state": "enabled", "failed": "--", "unlock": "--",
                            "registration": "denied"},
    "registered": {"state": "registered", "failed": "--", "unlock": "--",
                   "registration": "home"},
    "sim-locked": {"state": "locked", "failed": "--", "unlock": "sim-pin"},
    "no-sim": {"state": "failed", "failed": "sim-missing"},
}


# Registration switches first (quick, unsolicited +CREG), then SIM switches (a replug each).
@pytest.mark.parametrize("state", ["not-registered", "registration-denied", "sim-locked", "no-sim"])
def test_modem_state_switch_is_seen_by_modemmanager(modem_lab: Lab, state: str) -> None:
    start = time.monotonic()
    modem_lab.modem_state(state)
    took = time.monotonic() - start
    seen = mm_view(modem_lab)
    expected = EXPECTED[state]
    assert {k: seen[k] for k in expected} == expected
    # Registration reaches MM unsolicited; a SIM change costs a re-probe of the modem.
    assert took < (2.0 if state in ("not-registered", "registration-denied") else 15.0)
    modem_lab.modem_state("registered")
    assert mm_view(modem_lab) == EXPECTED["registered"]


def test_modem_state_rejects_unknown_and_plain_lab_has_no_modem(modem_lab: Lab, lab: Lab) -> None:
    from impctl.model.errors import LabError

    with pytest.raises(LabError, match="unknown modem state"):
        modem_lab.modem_state("flying")
    with pytest.raises(LabError, match="has no modem"):
        lab.modem_state("registered")
