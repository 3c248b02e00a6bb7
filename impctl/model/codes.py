"""impOS result codes and impctl's exit codes.

The names and values are those of server.connect()/server.connectwith(); impOS
gives NO_WIFI and NO_LINK the same value 1, so the enum keeps NO_WIFI as the
canonical member and NO_LINK as its alias, and `code_name` picks the right
name for the interface class.
"""

from __future__ import annotations

from enum import IntEnum


class ResultCode(IntEnum):
    NOT_CONNECTED = 0
    NO_WIFI = 1
    NO_LINK = 1  # impOS gives both names the value 1: an alias of NO_WIFI
    NO_IP_ADDRESS = 2
    NOT_RESOLVED = 3
    NO_SERVER = 4
    SERVER_CONNECTED = 5
    NO_PROXY = 6
    NOT_AUTHORISED = 7
    NO_MODEM = 8
    SIM_ERROR = 9
    NO_REGISTRATION = 10
    REGISTRATION_DENIED = 11
    NO_PPP_CONNECTION = 12
    PPP_NO_CONNECTIVITY = 13


def code_name(code: ResultCode, iface_class: str | None = None) -> str:
    """The impOS name of a code; value 1 reads NO_LINK on wired interfaces."""
    if code == ResultCode.NO_WIFI and iface_class != "wifi":
        return "NO_LINK"
    return code.name


class ExitCode(IntEnum):
    """Process exit codes. Documented in the README; scripts branch on them."""

    OK = 0
    FAILURE = 1  # an unexpected internal failure (a bug): reported in one line
    BAD_INPUT = 2  # usage, invalid NIC, invalid identifier, invalid option value
    STATE_ERROR = 3  # state or config file unreadable, corrupt, newer schema, not writable
    NOT_PERMITTED = 4  # needs root, or D-Bus access denied
    SERVICE_UNAVAILABLE = 5  # NetworkManager/ModemManager/D-Bus not running or not answering
    NO_SUCH_INTERFACE = 6  # the identifier names no interface of this gateway
    TIMEOUT = 7  # an operation did not finish within its timeout
    LAB_ERROR = 8  # the lab could not be built, is missing a package, or is not up
    SOME_FAILED = 9  # several interfaces probed, at least one did not reach the cloud
    # 10 + ResultCode: a connection attempt's outcome (10 NOT_CONNECTED … 23 PPP_NO_CONNECTIVITY)
    RESULT_BASE = 10


def exit_code_for(code: ResultCode) -> int:
    """Exit status for a connection outcome: 0 when connected, else 10 + code."""
    if code == ResultCode.SERVER_CONNECTED:
        return int(ExitCode.OK)
    return int(ExitCode.RESULT_BASE) + int(code)
