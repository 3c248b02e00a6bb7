"""The one D-Bus error map: D-Bus error names to the project's errors, one line each."""

from __future__ import annotations

import pytest

from impctl.backends.nm.bus import DBusCallError, map_error
from impctl.model.errors import (
    ImpctlError,
    NoSuchInterface,
    OperationTimeout,
    PermissionDenied,
    ServiceUnavailable,
)

NM = "org.freedesktop.NetworkManager"


@pytest.mark.parametrize(("name", "text", "kind", "exit_code"), [
    ("org.freedesktop.DBus.Error.ServiceUnknown", "no owner", ServiceUnavailable, 5),
    ("org.freedesktop.DBus.Error.NameHasNoOwner", "", ServiceUnavailable, 5),
    ("org.freedesktop.NetworkManager.PermissionDenied", "not authorized", PermissionDenied, 4),
    ("org.freedesktop.DBus.Error.AccessDenied", "denied", PermissionDenied, 4),
    ("org.freedesktop.DBus.Error.NoReply", "", OperationTimeout, 7),
    ("org.freedesktop.NetworkManager.UnknownDevice", "gone", NoSuchInterface, 6),
    ("org.freedesktop.DBus.Error.UnknownMethod", "No such interface on object at path /x", NoSuchInterface, 6),
    ("org.freedesktop.DBus.Error.UnknownMethod", "Unknown method CheckpointCreate", DBusCallError, 1),
    ("org.freedesktop.NetworkManager.InvalidArguments", "device already in use", DBusCallError, 1),
])
def test_error_names_map_to_the_projects_errors(name: str, text: str, kind: type[ImpctlError],
                                                exit_code: int) -> None:
    error = map_error(name, text, NM, "activating the connection")
    assert type(error) is kind
    assert int(error.exit_code) == exit_code
    assert "\n" not in error.message
    if isinstance(error, DBusCallError):
        assert error.error_name == name
        assert error.message.startswith("NetworkManager: activating the connection failed: ")


def test_a_service_traceback_becomes_its_last_line() -> None:
    text = ("Traceback (most recent call last):\n  File \"mock.py\", line 1, in f\n"
            "dbus.exceptions.UnknownMethodException: Unknown method: CheckpointCreate\n")
    error = map_error("org.freedesktop.DBus.Error.UnknownMethod", text, NM, "creating a checkpoint")
    assert error.message == ("NetworkManager: creating a checkpoint failed: dbus.exceptions.UnknownMethodException:"
                             " Unknown method: CheckpointCreate (org.freedesktop.DBus.Error.UnknownMethod)")


def test_the_service_is_named_and_told_how_to_start() -> None:
    error = map_error("org.freedesktop.DBus.Error.ServiceUnknown", "", "org.freedesktop.ModemManager1", "x")
    assert error.message == "ModemManager is not running on the system bus"
    assert error.hint is not None and "DBUS_SYSTEM_BUS_ADDRESS" in error.hint
