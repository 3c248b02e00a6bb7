"""What NM/MM report → impOS result codes, and the inventory built from NM's devices."""

from __future__ import annotations

import pytest

from impctl.model.attempt import (
    Activation,
    activation_code,
    cloud_code,
    modem_activation_reason,
    modem_code,
    modem_summary,
)
from impctl.model.codes import ResultCode
from impctl.model.config import Config
from impctl.model.inventory import (
    DeviceInfo,
    MMModemState,
    MMRegistrationState,
    ModemInfo,
    NMDeviceState,
    NMDeviceType,
    access_technology_names,
    build_inventory,
)

R = ResultCode


def modem(**kw: object) -> ModemInfo:
    base: dict[str, object] = {
        "path": "/org/freedesktop/ModemManager1/Modem/0", "state": int(MMModemState.REGISTERED),
        "sim_present": True, "registration": int(MMRegistrationState.HOME),
    }
    base.update(kw)
    return ModemInfo(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (None, R.NO_MODEM),
        (modem(state=-1, failed_reason=2, sim_present=False), R.SIM_ERROR),  # SIM missing
        (modem(state=-1, failed_reason=3), R.SIM_ERROR),  # SIM error
        (modem(state=-1, failed_reason=1), R.NO_MODEM),  # failed, unknown reason
        (modem(state=int(MMModemState.LOCKED), sim_locked=True), R.SIM_ERROR),
        (modem(state=int(MMModemState.ENABLED), sim_locked=True), R.SIM_ERROR),
        (modem(state=int(MMModemState.ENABLED), sim_present=False), R.SIM_ERROR),
        (modem(state=int(MMModemState.SEARCHING), registration=int(MMRegistrationState.SEARCHING)), R.NO_REGISTRATION),
        (modem(state=int(MMModemState.ENABLED), registration=int(MMRegistrationState.IDLE)), R.NO_REGISTRATION),
        (modem(state=int(MMModemState.ENABLED), registration=int(MMRegistrationState.UNKNOWN)), R.NO_REGISTRATION),
        (modem(state=int(MMModemState.ENABLED), registration=int(MMRegistrationState.DENIED)), R.REGISTRATION_DENIED),
        (modem(state=int(MMModemState.ENABLED), registration=int(MMRegistrationState.EMERGENCY_ONLY)),
         R.NO_REGISTRATION),
        (modem(state=int(MMModemState.ENABLED), registration=99), R.NO_REGISTRATION),  # newer MM
        (modem(), None),
        (modem(registration=int(MMRegistrationState.ROAMING)), None),
        (modem(state=int(MMModemState.CONNECTED), bearer_connected=True), None),
        (modem(state=int(MMModemState.DISABLED), registration=int(MMRegistrationState.IDLE)), None),
        (modem(state=42, registration=int(MMRegistrationState.HOME)), None),  # unknown state, registered
    ],
)
def test_modem_code(info: ModemInfo | None, expected: ResultCode | None) -> None:
    assert modem_code(info) == expected


def test_a_disabled_modem_is_judged_on_registration_after_the_attempt() -> None:
    info = modem(state=int(MMModemState.DISABLED), registration=int(MMRegistrationState.IDLE))
    assert modem_code(info) is None
    assert modem_code(info, after_attempt=True) == R.NO_REGISTRATION


@pytest.mark.parametrize(
    ("cls", "activation", "expected"),
    [
        ("ethernet", Activation(False, furthest_state=int(NMDeviceState.CONFIG)), R.NO_LINK),
        ("wifi", Activation(False, furthest_state=int(NMDeviceState.CONFIG), reason=11), R.NO_WIFI),
        ("wifi", Activation(False, furthest_state=int(NMDeviceState.NEED_AUTH), reason=7), R.NO_WIFI),
        ("wifi", Activation(False, reason=53), R.NO_WIFI),  # SSID not found
        ("ethernet", Activation(False, furthest_state=int(NMDeviceState.IP_CONFIG), reason=17), R.NO_IP_ADDRESS),
        ("ethernet", Activation(False, furthest_state=int(NMDeviceState.IP_CONFIG), timed_out=True), R.NO_IP_ADDRESS),
        ("ethernet", Activation(False, error_name="org.freedesktop.NetworkManager.Device.NotAllowed"), R.NO_LINK),
        ("ethernet", Activation(False, furthest_state=int(NMDeviceState.PREPARE), reason=4242), R.NO_LINK),
        ("cell", Activation(False, reason=45), R.SIM_ERROR),
        ("cell", Activation(False, reason=31), R.REGISTRATION_DENIED),
        ("cell", Activation(False, reason=32), R.NO_REGISTRATION),
        ("cell", Activation(False, reason=43), R.NO_MODEM),
        ("cell", Activation(False, reason=27), R.NO_PPP_CONNECTION),
        ("cell", Activation(False, furthest_state=int(NMDeviceState.IP_CONFIG), reason=5), R.NO_PPP_CONNECTION),
    ],
)
def test_activation_code(cls: str, activation: Activation, expected: ResultCode) -> None:
    assert activation_code(cls, activation, is_modem=cls == "cell") == expected


def test_no_link_reads_as_such_for_wired() -> None:
    from impctl.model.attempt import Attempt

    a = Attempt("eth0", "eth0", "ethernet", R.NO_LINK, "no carrier")
    assert a.code_name == "NO_LINK"
    assert Attempt("wl0", "wlan0", "wifi", R.NO_WIFI, "").code_name == "NO_WIFI"


def test_cloud_failure_through_cellular_is_ppp_no_connectivity() -> None:
    assert cloud_code("cell", R.NO_SERVER) == R.PPP_NO_CONNECTIVITY
    assert cloud_code("cell", R.NOT_RESOLVED) == R.PPP_NO_CONNECTIVITY
    assert cloud_code("cell", R.SERVER_CONNECTED) == R.SERVER_CONNECTED
    assert cloud_code("wifi", R.NOT_RESOLVED) == R.NOT_RESOLVED
    # a cell-class interface without a modem keeps the stage's code, as impctl probe does
    assert cloud_code("cell", R.NO_SERVER, via_modem=False) == R.NO_SERVER


def dev(ifname: str, nm_type: int, **kw: object) -> DeviceInfo:
    return DeviceInfo(ifname=ifname, nm_type=nm_type, nm_state=100, iface_class="", **kw)  # type: ignore[arg-type]


def test_build_inventory_classes_overrides_identifiers_and_order() -> None:
    raw = [
        dev("wwan0", int(NMDeviceType.VETH)),
        dev("wlan0", int(NMDeviceType.VETH)),
        dev("eth10", int(NMDeviceType.ETHERNET)),
        dev("eth2", int(NMDeviceType.ETHERNET)),
        dev("lo", int(NMDeviceType.LOOPBACK)),
        dev("br0", int(NMDeviceType.BRIDGE)),
        dev("weird0", 4242),  # a device type from a newer NM
        dev("eth9", int(NMDeviceType.ETHERNET), managed=False),
        dev("ttyUSB2", int(NMDeviceType.MODEM)),
    ]
    config = Config(classes={"wlan0": "wifi", "wwan0": "cell"}, identifiers={"cell0": "wwan0"})
    inv = build_inventory(raw, config)
    assert [(d.identifier, d.ifname, d.iface_class) for d in inv] == [
        ("eth0", "eth2", "ethernet"),
        ("eth1", "eth10", "ethernet"),
        ("wl0", "wlan0", "wifi"),
        ("cell0", "wwan0", "cell"),
        ("cell1", "ttyUSB2", "cell"),
    ]


def test_build_inventory_class_override_of_unknown_type() -> None:
    inv = build_inventory([dev("x0", 4242)], Config(classes={"x0": "ethernet"}))
    assert [(d.identifier, d.iface_class) for d in inv] == [("eth0", "ethernet")]


def test_status_daemon_view_is_not_running_once_its_process_is_gone() -> None:
    import os
    import subprocess

    from impctl.backends.process import pid_alive
    from impctl.model.state import daemon_view_from_json
    from impctl.usecases.status import daemon_view

    assert daemon_view(None, pid_alive) is None
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    doc = {"running": True, "pid": gone.pid, "active": "eth0", "mode": "automatic", "phase": "connected"}
    view = daemon_view(daemon_view_from_json(doc), pid_alive)
    assert view is not None and view["running"] is False and view["active"] == "eth0"
    alive = daemon_view(daemon_view_from_json({**doc, "pid": os.getpid()}), pid_alive)
    assert alive is not None and alive["running"] is True


GPRS_UNKNOWN = "org.freedesktop.ModemManager1.Error.MobileEquipment.GprsUnknown"


def test_access_technology_names_are_mmclis() -> None:
    assert access_technology_names(0) == ()
    assert access_technology_names(1 << 5) == ("umts",)  # MM_MODEM_ACCESS_TECHNOLOGY_UMTS
    assert access_technology_names((1 << 14) | (1 << 15)) == ("lte", "5gnr")
    assert access_technology_names(1 << 30) == ("bit30",)  # a newer MM's bit does not crash


def test_the_modem_summary_names_state_failed_reason_bearer_and_error() -> None:
    failed = modem(state=int(MMModemState.FAILED), failed_reason=2, sim_present=False, registration=None)
    assert modem_summary(failed) == "ModemManager: modem FAILED, failed reason sim-missing, no bearer connected"
    up = modem(state=int(MMModemState.CONNECTED), access_technologies=("lte",), bearer_connected=True,
               bearer_interface="usb0", bearer_address="198.18.64.2/24")
    assert modem_summary(up) == ("ModemManager: modem CONNECTED, 3GPP HOME, access lte, "
                                 "bearer connected on usb0 (198.18.64.2/24)")


def test_a_refused_bearer_is_named_with_modemmanagers_error() -> None:
    before = modem(bearer_attempts=1)
    after = modem(bearer_attempts=2, bearer_error=GPRS_UNKNOWN, bearer_error_text="Unspecified GPRS error")
    reason = modem_activation_reason("ttyUSB0", Activation(activated=False, reason=1), after, before)
    assert reason.startswith("ttyUSB0: the data bearer did not come up (NM reason 1 unknown); ")
    assert reason.endswith("bearer error MobileEquipment.GprsUnknown (Unspecified GPRS error)")
    # no bearer tried since: the error is an earlier attempt's, not this one's
    stale = modem_activation_reason("ttyUSB0", Activation(activated=False, reason=1), after, after)
    assert "GprsUnknown" not in stale


def test_no_apn_asks_for_one() -> None:
    reason = modem_activation_reason("ttyUSB0", Activation(activated=False, reason=29), modem(), modem())
    assert "gsm-apn-failed" in reason and "cellconfig.apn" in reason
    assert activation_code("cell", Activation(activated=False, reason=29), is_modem=True) == R.NO_PPP_CONNECTION


def test_a_modem_gone_during_the_attempt_says_so() -> None:
    reason = modem_activation_reason("ttyUSB0", Activation(activated=False, reason=36), None)
    assert reason.endswith("ModemManager has no modem for ttyUSB0 any more")
