"""Connection attempts and the impOS result code each failure maps to.

Pure: what NetworkManager and ModemManager reported (an `Activation`, a
`ModemInfo`) in, a `ResultCode` out. The mapping follows DESIGN.md: link or
association → NO_LINK/NO_WIFI, address → NO_IP_ADDRESS; for cellular, no
modem → NO_MODEM, SIM → SIM_ERROR, registration → NO_REGISTRATION or
REGISTRATION_DENIED, bearer → NO_PPP_CONNECTION, cloud → PPP_NO_CONNECTIVITY.
Unknown enum values from a newer NM/MM fall into the generic branch of their
stage instead of raising.
"""

from __future__ import annotations

from dataclasses import field, replace
from typing import Any

from impctl.model.codes import ResultCode, code_name
from impctl.model.inventory import MMModemState, MMRegistrationState, ModemInfo, NMDeviceState, name_of
from impctl.model.record import record


@record
class Activation:
    """What became of an NM activation request (filled by the D-Bus backend).

    `furthest_state` is the furthest NMDeviceState the device reached during
    the attempt, `reason` the NMDeviceStateReason of its failure (0: none),
    `error_name`/`error_text` an NM error reply refusing the request outright,
    `timed_out` True when NM decided nothing within the timeout.
    """

    activated: bool
    active_path: str | None = None
    profile_path: str | None = None
    furthest_state: int = 0
    reason: int = 0
    error_name: str | None = None
    error_text: str | None = None
    timed_out: bool = False
    elapsed_s: float = 0.0


# NMDeviceStateReason values (NetworkManager.h) that name a stage.
_REASON_NO_SECRETS = 7
_REASONS_LINK = frozenset({7, 8, 9, 10, 11, 40, 53})  # secrets, supplicant, carrier, SSID not found
_REASONS_IP = frozenset({5, 6, 15, 16, 17, 20, 21, 22})  # IP config, DHCP, autoip
_REASONS_SIM = frozenset({34, 45, 46, 47, 48, 59})  # PIN check, SIM missing/PIN/PUK/wrong, PIN incorrect
_REASONS_NOT_REGISTERED = frozenset({30, 32, 33})  # not searching, registration timeout/failed
_REASON_REGISTRATION_DENIED = 31
_REASONS_NO_MODEM = frozenset({43, 52})  # modem not found, ModemManager unavailable

_REGISTERED = frozenset(
    {
        MMRegistrationState.HOME,
        MMRegistrationState.ROAMING,
        MMRegistrationState.HOME_CSFB_NOT_PREFERRED,
        MMRegistrationState.ROAMING_CSFB_NOT_PREFERRED,
    }
)
# MM failed reasons: SIM_MISSING = 2, SIM_ERROR = 3
_FAILED_REASONS_SIM = frozenset({2, 3})
# Modem states in which MM has not looked for a network yet: NM enables the
# modem when it connects, so registration is judged after the attempt.
_NOT_YET_SEARCHING = frozenset(
    {MMModemState.UNKNOWN, MMModemState.INITIALIZING, MMModemState.DISABLED, MMModemState.DISABLING,
     MMModemState.ENABLING}
)


def link_code(iface_class: str) -> ResultCode:
    return ResultCode.NO_WIFI if iface_class == "wifi" else ResultCode.NO_LINK


def modem_code(modem: ModemInfo | None, *, after_attempt: bool = False) -> ResultCode | None:
    """The code a modem's state forbids a data connection with; None when it may connect.

    Before an attempt a modem that has not searched yet (disabled) passes,
    because connecting enables it; `after_attempt` judges its registration anyway.
    """
    if modem is None:
        return ResultCode.NO_MODEM
    if modem.state == MMModemState.FAILED:
        if modem.failed_reason in _FAILED_REASONS_SIM:
            return ResultCode.SIM_ERROR
        return ResultCode.NO_MODEM
    if modem.state == MMModemState.LOCKED or modem.sim_locked:
        return ResultCode.SIM_ERROR
    if not modem.sim_present and modem.state not in (MMModemState.UNKNOWN, MMModemState.INITIALIZING):
        return ResultCode.SIM_ERROR
    if modem.state >= MMModemState.REGISTERED and modem.state <= MMModemState.CONNECTED:
        if modem.registration == MMRegistrationState.DENIED:
            return ResultCode.REGISTRATION_DENIED
        return None
    if modem.registration == MMRegistrationState.DENIED:
        return ResultCode.REGISTRATION_DENIED
    if modem.registration is not None and modem.registration in _REGISTERED:
        return None
    if not after_attempt and modem.state in _NOT_YET_SEARCHING:
        return None
    # idle, searching, unknown, SMS/emergency-only, or a value from a newer MM
    return ResultCode.NO_REGISTRATION


def activation_code(iface_class: str, activation: Activation, *, is_modem: bool) -> ResultCode:
    """The code of a failed activation: which stage NM failed at, or why."""
    reason = activation.reason
    if is_modem or iface_class == "cell":
        if reason in _REASONS_SIM:
            return ResultCode.SIM_ERROR
        if reason == _REASON_REGISTRATION_DENIED:
            return ResultCode.REGISTRATION_DENIED
        if reason in _REASONS_NOT_REGISTERED:
            return ResultCode.NO_REGISTRATION
        if reason in _REASONS_NO_MODEM:
            return ResultCode.NO_MODEM
        return ResultCode.NO_PPP_CONNECTION  # the bearer (NM's "PPP") did not come up
    if reason in _REASONS_IP:
        return ResultCode.NO_IP_ADDRESS
    if reason in _REASONS_LINK:
        return link_code(iface_class)
    if activation.error_name is not None:
        # NM refused outright: the device is not available (no carrier, no radio).
        return link_code(iface_class)
    if activation.furthest_state >= NMDeviceState.IP_CONFIG:
        return ResultCode.NO_IP_ADDRESS
    return link_code(iface_class)


def cloud_code(iface_class: str, code: ResultCode, *, via_modem: bool = True) -> ResultCode:
    """A cloud-check failure through a cellular bearer is PPP_NO_CONNECTIVITY.

    A cell-class interface with no modem behind it (a USB stick that is an
    Ethernet device, a lab veth) keeps the network stage's own code, as
    `impctl probe` reports it: that names what actually failed.
    """
    if iface_class == "cell" and via_modem and code != ResultCode.SERVER_CONNECTED:
        return ResultCode.PPP_NO_CONNECTIVITY
    return code


@record
class CheckOutcome:
    """The cloud check through one interface: SERVER_CONNECTED or the failing stage's code."""

    code: ResultCode
    reason: str
    elapsed_s: float = 0.0


@record
class Attempt:
    """One connection attempt through one interface, as reported to the user."""

    identifier: str
    ifname: str | None
    iface_class: str
    code: ResultCode
    reason: str
    elapsed_s: float = 0.0
    stage: str = ""  # settings | modem | activation | cloud | done
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == ResultCode.SERVER_CONNECTED

    @property
    def code_name(self) -> str:
        return code_name(self.code, self.iface_class)

    def to_json(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "ifname": self.ifname,
            "class": self.iface_class,
            "code": int(self.code),
            "code_name": self.code_name,
            "stage": self.stage,
            "reason": self.reason,
            "elapsed_s": round(self.elapsed_s, 3),
            **({"details": self.details} if self.details else {}),
        }


# NMDeviceStateReason values of a modem's activation, with what they mean to the user.
_REASON_GSM_APN_FAILED = 29
_MODEM_REASONS = {
    1: "unknown",
    23: "modem-busy",
    25: "modem-no-carrier",
    26: "modem-dial-timeout",
    27: "modem-dial-failed",
    28: "modem-init-failed",
    _REASON_GSM_APN_FAILED: "gsm-apn-failed",
    30: "gsm-registration-not-searching",
    31: "gsm-registration-denied",
    32: "gsm-registration-timeout",
    33: "gsm-registration-failed",
    34: "gsm-pin-check-failed",
    36: "removed",
    43: "modem-not-found",
    45: "gsm-sim-not-inserted",
    46: "gsm-sim-pin-required",
    47: "gsm-sim-puk-required",
    48: "gsm-sim-wrong",
    52: "modem-manager-unavailable",
    57: "modem-failed",
    59: "sim-pin-incorrect",
}


def modem_summary(modem: ModemInfo) -> str:
    """What ModemManager says about the modem, in one clause (for reasons)."""
    parts = [f"modem {name_of(MMModemState, modem.state)}"]
    if modem.failed_reason_name and modem.failed_reason_name != "none":
        parts.append(f"failed reason {modem.failed_reason_name}")
    if modem.registration is not None:
        parts.append(f"3GPP {name_of(MMRegistrationState, modem.registration)}")
    if modem.access_technologies:
        parts.append("access " + "/".join(modem.access_technologies))
    parts.append(f"bearer connected{modem.bearer_place}" if modem.bearer_connected else "no bearer connected")
    if modem.bearer_error_description:
        parts.append(f"bearer error {modem.bearer_error_description}")
    return "ModemManager: " + ", ".join(parts)


def modem_activation_reason(ifname: str, activation: Activation, modem: ModemInfo | None,
                            before: ModemInfo | None = None) -> str:
    """Why a modem's activation failed: NM's reason, then what ModemManager says.

    `before`: the modem as read before the attempt. A bearer error is this attempt's only
    if a bearer was tried since (MM keeps a bearer, and its last error, across attempts).
    """
    if modem is not None and before is not None and modem.bearer_attempts <= before.bearer_attempts:
        modem = replace(modem, bearer_error=None, bearer_error_text=None)
    if activation.error_name:
        head = f"NetworkManager refused: {activation.error_text}"
    elif activation.timed_out:
        head = f"{ifname} did not connect in time (reached {name_of(NMDeviceState, activation.furthest_state)})"
    elif activation.reason == _REASON_GSM_APN_FAILED:
        # With no APN NM looks it up in mobile-broadband-provider-info; without that
        # database (or an entry for the operator) it fails at once with this reason.
        head = (f"{ifname}: NetworkManager found no APN for this SIM's operator (NM reason 29 gsm-apn-failed):"
                " give one in the NIC's cellconfig.apn")
    else:
        name = _MODEM_REASONS.get(activation.reason, str(activation.reason))
        head = f"{ifname}: the data bearer did not come up (NM reason {activation.reason} {name})"
    if modem is None:
        return f"{head}; ModemManager has no modem for {ifname} any more"
    return f"{head}; {modem_summary(modem)}"
