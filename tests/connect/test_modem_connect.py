"""Cellular result codes with real ModemManager and the lab's simulated modem (ttyUSB0, cell1).

Each SIM/registration state the modem can play maps to its impOS code; a
registered modem connects its net-port bearer (usb0, no PPP) and reaches the
cloud through the lab's carrier; a bearer the network refuses is
NO_PPP_CONNECTION with ModemManager's error, a carrier that passes nothing
PPP_NO_CONNECTIVITY, an unplugged modem NO_MODEM.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from impctl.lab import Lab
from impctl.lab.modem import AT_LOG_NAME
from impctl.lab.topology import BEARER_IP, CLOUD_HOST, MODEM_APN, MODEM_NET_IFNAME

pytestmark = [pytest.mark.lab, pytest.mark.modem]


CELL_NIC = {"interface": "cell1", "cellconfig": {"apn": MODEM_APN}}


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
    ("state", "code_name", "said"),
    [
        ("not-registered", "NO_REGISTRATION", "ModemManager: modem SEARCHING, 3GPP SEARCHING"),
        ("registration-denied", "REGISTRATION_DENIED", "3GPP DENIED"),
        ("sim-locked", "SIM_ERROR", "the SIM is locked (PIN/PUK required); ModemManager: modem LOCKED"),
        ("no-sim", "SIM_ERROR", "no SIM card in the modem; ModemManager: modem FAILED, failed reason sim-missing"),
    ],
)
def test_modem_state_maps_to_its_code_and_changes_nothing(modem_lab: Lab, state: str, code_name: str,
                                                          said: str) -> None:
    modem_lab.modem_state(state)
    before = routes(modem_lab)
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "20", nic=CELL_NIC)
    (attempt,) = doc["data"]["attempts"]
    assert (attempt["ifname"], attempt["code_name"]) == ("ttyUSB0", code_name), attempt
    assert said in attempt["reason"], attempt["reason"]  # what ModemManager said
    assert rc == 10 + attempt["code"]
    assert routes(modem_lab) == before


def test_refused_bearer_fails_at_the_bearer(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    modem_lab.fault("modem", "bearer-refused")
    before = routes(modem_lab)
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30", nic=CELL_NIC)
    (attempt,) = doc["data"]["attempts"]
    assert attempt["code_name"] == "NO_PPP_CONNECTION", attempt
    assert attempt["stage"] == "activation"
    # What ModemManager said: the bearer's connection error for +CME ERROR: 148.
    assert "bearer error MobileEquipment.GprsUnknown" in attempt["reason"], attempt["reason"]
    assert "modem REGISTERED" in attempt["reason"]
    assert rc == 22
    assert routes(modem_lab) == before
    state = json.loads(modem_lab.state_path.read_text())
    assert state["last_error"]["name"] == "NO_PPP_CONNECTION"


def test_no_apn_says_to_give_one(modem_lab: Lab) -> None:
    # No mobile-broadband-provider-info entry for the lab's operator: NM fails at once (reason 29).
    modem_lab.modem_state("registered")
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30", nic={"interface": "cell1"})
    (attempt,) = doc["data"]["attempts"]
    assert attempt["code_name"] == "NO_PPP_CONNECTION" and rc == 22, attempt
    assert "gsm-apn-failed" in attempt["reason"] and "cellconfig.apn" in attempt["reason"], attempt["reason"]


TLS_CLIENT = """
import socket, ssl, sys
host, ip, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
    print(tls.getsockname()[0], tls.version())
"""


def tls_from_gateway(lab: Lab) -> tuple[str, str]:
    """A TLS connection to the cloud from the gateway namespace, unbound (the default route
    decides): the local address it went out with and the TLS version."""
    proc = lab.run([sys.executable, "-c", TLS_CLIENT, CLOUD_HOST, lab.cloud_ip, str(lab.cloud_port),
                    str(lab.cloud_dir / "ca.pem")], timeout=20)
    assert proc.returncode == 0, proc.stderr
    local, version = proc.stdout.split()
    return local, version


def usb0_addresses(lab: Lab) -> list[str]:
    proc = lab.run(["ip", "-j", "-4", "addr", "show", "dev", MODEM_NET_IFNAME], check=True)
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(proc.stdout) for a in link["addr_info"]]


def at_log(lab: Lab) -> list[str]:
    path = lab.modem_control.with_name(AT_LOG_NAME)
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()] if path.exists() else []


def test_registered_modem_connects_its_bearer_and_ethernet_takes_it_down(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30", nic=CELL_NIC)
    (attempt,) = doc["data"]["attempts"]
    assert (attempt["ifname"], attempt["code_name"]) == ("ttyUSB0", "SERVER_CONNECTED"), attempt
    assert rc == 0
    # The bearer is ModemManager's, on the modem's net port.
    assert any(b["status"]["connected"] == "yes" and b["status"]["interface"] == "usb0"
               for b in modem_lab.modem_bearers())
    # It keeps its address and the default route after connectwith (NM 1.42 removes both
    # when a connected modem is Reapplied), and real traffic goes out through it.
    assert usb0_addresses(modem_lab) == [f"{BEARER_IP}/24"]
    primary = min(modem_lab.default_routes(), key=lambda r: r.get("metric", 0))
    assert primary["dev"] == MODEM_NET_IFNAME, modem_lab.default_routes()
    assert primary.get("metric") == attempt["details"]["route_metric"]
    assert "eth0" not in {r["dev"] for r in modem_lab.default_routes()}  # the previous uplink is down
    time.sleep(1.0)  # anything that would strip the address (a late Reapply) has happened by now
    assert usb0_addresses(modem_lab) == [f"{BEARER_IP}/24"]
    local, version = tls_from_gateway(modem_lab)
    assert local == BEARER_IP and version.startswith("TLS")
    status = json.loads(modem_lab.run([sys.executable, "-m", "impctl", "status", "--json"]).stdout)
    cell = {i["identifier"]: i for i in status["data"]["interfaces"]}["cell1"]
    assert cell["cell"]["modem_state"] == "CONNECTED", cell

    # connectwith Ethernet: the bearer goes down, as the modem's AT log shows.
    logged = len(at_log(modem_lab))
    rc, doc = impctl(modem_lab, "connectwith", nic={"interface": "eth0"})
    assert rc == 0 and doc["data"]["attempts"][0]["details"]["previous_taken_down"] == "cell1", doc
    assert not any(b["status"]["connected"] == "yes" for b in modem_lab.modem_bearers())
    assert "AT+CGACT=0,1" in at_log(modem_lab)[logged:], at_log(modem_lab)[logged:]
    assert MODEM_NET_IFNAME not in {r["dev"] for r in modem_lab.default_routes()}
    local, _ = tls_from_gateway(modem_lab)
    assert local.startswith("198.18.1."), local  # eth0's ISP


def test_carrier_blackhole_is_ppp_no_connectivity_and_rolls_back(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    modem_lab.fault("modem", "carrier-blackhole")
    before = routes(modem_lab)
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30", nic=CELL_NIC)
    (attempt,) = doc["data"]["attempts"]
    assert (attempt["code_name"], attempt["stage"], rc) == ("PPP_NO_CONNECTIVITY", "cloud", 23), attempt
    # the bearer was up: the reason says where it was
    assert f"bearer connected on {MODEM_NET_IFNAME} ({BEARER_IP}/24)" in attempt["reason"], attempt["reason"]
    assert routes(modem_lab) == before
    assert not any(b["status"]["connected"] == "yes" for b in modem_lab.modem_bearers())


def test_an_unplugged_modem_is_no_modem_for_connectwith_and_connect(modem_lab: Lab) -> None:
    modem_lab.modem_state("registered")
    rc, _ = impctl(modem_lab, "connectwith", "--timeout", "30", nic=CELL_NIC)
    assert rc == 0  # pinned to cell1 (manual mode)
    modem_lab.fault("modem", "unplugged")
    rc, doc = impctl(modem_lab, "connectwith", "--timeout", "30", nic=CELL_NIC)
    (attempt,) = doc["data"]["attempts"]
    assert (attempt["code_name"], rc) == ("NO_MODEM", 18), attempt
    rc, doc = impctl(modem_lab, "connect", "--timeout", "30")
    assert (doc["data"]["code_name"], rc) == ("NO_MODEM", 18), doc["data"]
    assert doc["data"]["attempts"][-1]["identifier"] == "cell1"


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
    assert cell["cell"]["access_technologies"] == ["umts"]  # the simulated modem's +COPS: ...,2
    assert cell["cell"]["bearer"]["connected"] is False

    rc, _ = impctl(modem_lab, "connectwith", "--timeout", "30", nic=CELL_NIC)
    assert rc == 0
    rc, doc = impctl(modem_lab, "status")
    cell = {i["identifier"]: i for i in doc["data"]["interfaces"]}["cell1"]["cell"]
    assert cell["bearer"] == {"connected": True, "interface": MODEM_NET_IFNAME, "address": f"{BEARER_IP}/24",
                              "error": None, "error_text": None}, cell
    assert cell["ip_interface"] == MODEM_NET_IFNAME
    human = modem_lab.run(["env", "COLUMNS=200", sys.executable, "-m", "impctl", "status"]).stdout
    assert f"umts, SIM present, signal 64%, modem connected, bearer up on {MODEM_NET_IFNAME} {BEARER_IP}/24" \
        in human, human
