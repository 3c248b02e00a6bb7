"""ModemManager's bearer properties (GetAll of org.freedesktop.ModemManager1.Bearer, MM 1.20,
unwrapped) into ModemInfo's bearer facts. The values are those the lab's ModemManager gave
(`busctl introspect … /org/freedesktop/ModemManager1/Bearer/0`); the lab tests read the real ones."""

from __future__ import annotations

from typing import Any, cast

from impctl.backends.nm.defs import BearerProps
from impctl.backends.nm.devices import _bearer_facts

CONNECTED: dict[str, Any] = {
    "Connected": True, "Interface": "usb0", "ConnectionError": ["", ""],
    "Ip4Config": {"method": 2, "address": "198.18.64.2", "prefix": 24, "dns1": "198.18.64.1",
                  "gateway": "198.18.64.1"},
    "Stats": {"attempts": 1, "failed-attempts": 0, "duration": 30},
}
REFUSED: dict[str, Any] = {
    "Connected": False, "Interface": "", "Ip4Config": {"method": 0},
    "ConnectionError": ["org.freedesktop.ModemManager1.Error.MobileEquipment.GprsUnknown",
                        "Unspecified GPRS error"],
    "Stats": {"attempts": 5, "failed-attempts": 2},
}


def facts(*bearers: dict[str, Any]) -> dict[str, Any]:
    return _bearer_facts([cast(BearerProps, b) for b in bearers])


def test_a_connected_bearer_gives_its_interface_and_address() -> None:
    assert facts(REFUSED, CONNECTED) == {
        "bearer_attempts": 6, "bearer_interface": "usb0", "bearer_address": "198.18.64.2/24",
        "bearer_error": None, "bearer_error_text": None,
    }


def test_a_refused_bearer_gives_modemmanagers_error() -> None:
    assert facts(REFUSED) == {
        "bearer_attempts": 5, "bearer_interface": None, "bearer_address": None,
        "bearer_error": "org.freedesktop.ModemManager1.Error.MobileEquipment.GprsUnknown",
        "bearer_error_text": "Unspecified GPRS error",
    }


def test_no_bearer_and_an_older_modemmanager_read_as_nothing() -> None:
    empty = {"bearer_attempts": 0, "bearer_interface": None, "bearer_address": None,
             "bearer_error": None, "bearer_error_text": None}
    assert facts() == empty
    assert facts({"Connected": False}) == empty  # MM < 1.18: no ConnectionError, no Stats
