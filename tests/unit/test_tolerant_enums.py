"""NM/MM enum values impctl does not know (a newer NetworkManager's) never crash it."""

from __future__ import annotations

import json
from enum import IntEnum

import pytest

from impctl.model.config import Config
from impctl.model.inventory import (
    DeviceInfo,
    MMModemState,
    MMRegistrationState,
    NMActiveConnectionState,
    NMDeviceState,
    NMDeviceType,
    TolerantIntEnum,
    build_inventory,
    class_of_device,
    name_of,
)

ENUMS = [NMDeviceType, NMDeviceState, MMModemState, MMRegistrationState, NMActiveConnectionState]


@pytest.mark.parametrize("enum", ENUMS)
def test_an_unknown_value_is_a_pseudo_member(enum: type[TolerantIntEnum]) -> None:
    value = enum(999)
    assert isinstance(value, enum)
    assert value.name == "UNKNOWN_999"
    assert value == 999
    assert int(value) == 999
    assert value is enum(999)  # made once, then found
    assert 999 not in [int(m) for m in enum]  # not listed as a member
    assert json.dumps({"state": value}) == '{"state": 999}'
    assert name_of(enum, 999) == "UNKNOWN_999"


def test_known_values_are_the_members() -> None:
    assert NMDeviceState(100) is NMDeviceState.ACTIVATED
    assert MMModemState(-1) is MMModemState.FAILED
    assert name_of(MMRegistrationState, 3) == "DENIED"


def test_a_value_that_is_not_an_int_still_raises() -> None:
    with pytest.raises(ValueError):
        NMDeviceState("activated")
    with pytest.raises(ValueError):
        NMDeviceState(True)  # bool is an int subclass, but no NM state


def test_name_of_also_names_an_unknown_value_of_a_plain_intenum() -> None:
    class Plain(IntEnum):
        ONE = 1

    assert name_of(Plain, 7) == "UNKNOWN_7"


def test_a_device_in_a_state_from_a_newer_nm_reads_and_lists() -> None:
    dev = DeviceInfo(ifname="eth0", nm_type=NMDeviceType(1), nm_state=NMDeviceState(125), iface_class="")
    assert dev.nm_state_name == "UNKNOWN_125"
    assert not dev.connected
    (listed,) = build_inventory([dev], Config())
    assert listed.identifier == "eth0"


def test_a_device_type_from_a_newer_nm_is_not_an_uplink() -> None:
    dev = DeviceInfo(ifname="x0", nm_type=NMDeviceType(99), nm_state=NMDeviceState.ACTIVATED, iface_class="")
    assert dev.nm_type_name == "UNKNOWN_99"
    assert class_of_device(dev, {}) is None
    assert build_inventory([dev], Config()) == []
