from __future__ import annotations

import pytest

from impctl.model.errors import ValidationError
from impctl.model.identifiers import assign_identifiers, check_identifier, class_of, parse_specific, resolve


@pytest.mark.parametrize(
    ("text", "cls"),
    [("ethernet", "ethernet"), ("wifi", "wifi"), ("cell", "cell"), ("eth0", "ethernet"), ("wl1", "wifi"),
     ("cell1", "cell"), ("enp3s0", None), ("wlan0", None)],
)
def test_class_of(text: str, cls: str | None) -> None:
    assert class_of(text) == cls


def test_specific_parsing() -> None:
    spec = parse_specific("cell12")
    assert spec is not None and spec.iface_class == "cell" and spec.index == 12 and spec.text == "cell12"
    assert parse_specific("eth01") is None
    assert parse_specific("wlan0") is None


@pytest.mark.parametrize("bad", ["", "a" * 16, "eth/0", "has space", ".", "..", None, 5, ["eth0"]])
def test_check_identifier_refuses(bad: object) -> None:
    with pytest.raises(ValidationError) as err:
        check_identifier(bad)
    assert err.value.path == "interface"


def test_check_identifier_lowercases_impos_ids_but_not_ifnames() -> None:
    assert check_identifier("WL0") == "wl0"
    assert check_identifier("Eth9") == "eth9"  # an impOS id, whatever the case
    assert check_identifier("MyLink") == "MyLink"


def test_assignment_natural_order_per_class() -> None:
    devices = [("enp10s0", "ethernet"), ("enp2s0", "ethernet"), ("wlan0", "wifi"), ("wwan0", "cell")]
    assert assign_identifiers(devices) == {"enp2s0": "eth0", "enp10s0": "eth1", "wlan0": "wl0", "wwan0": "cell0"}


def test_assignment_honours_pins_and_skips_their_indices() -> None:
    devices = [("ttyUSB0", "cell"), ("wwan0", "cell"), ("eth0", "ethernet")]
    got = assign_identifiers(devices, {"cell0": "wwan0", "eth5": "missing0", "wl0": "eth0"})
    # wl0 -> eth0 is ignored: eth0 is not a WiFi interface; a pin to a missing ifname too.
    assert got == {"wwan0": "cell0", "ttyUSB0": "cell1", "eth0": "eth0"}


def test_resolve() -> None:
    classes = {"eth0": "ethernet", "eth1": "ethernet", "wlan0": "wifi"}
    assignment = assign_identifiers(classes.items())
    assert resolve("ethernet", assignment, classes) == ["eth0", "eth1"]
    assert resolve("eth1", assignment, classes) == ["eth1"]
    assert resolve("wl0", assignment, classes) == ["wlan0"]
    assert resolve("cell", assignment, classes) == []
    assert resolve("wlan0", assignment, classes) == ["wlan0"]
    assert resolve("nosuch0", assignment, classes) == []
