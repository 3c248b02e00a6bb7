"""NetworkManager's signals for the failover daemon, as `impctl.model.events.NMSignal`."""

from __future__ import annotations

from collections.abc import Callable

from impctl.backends.nm.bus import Signal, Subscription, SystemBus, match_rule
from impctl.backends.nm.defs import DBUS, DBUS_PATH, NM, NM_DEVICE, NM_PATH
from impctl.model.events import NMSignal
from impctl.model.inventory import NMDeviceState

DAEMON_RULES = [
    match_rule(NM_DEVICE, "StateChanged"),
    match_rule(NM, "DeviceAdded", path=NM_PATH),
    match_rule(NM, "DeviceRemoved", path=NM_PATH),
    # NetworkManager (re)starting or stopping: its bus name changes owner.
    match_rule(DBUS, "NameOwnerChanged", path=DBUS_PATH, sender=DBUS, arg0=NM),
]


def nm_signal(signal: Signal) -> NMSignal | None:
    """The daemon's view of a signal; None for one it does not care about."""
    body = signal.body
    if signal.member == "StateChanged" and signal.interface == NM_DEVICE and len(body) >= 3:
        return NMSignal("device-state", signal.path, NMDeviceState(int(body[0])), NMDeviceState(int(body[1])),
                        int(body[2]))
    if signal.member in ("DeviceAdded", "DeviceRemoved") and signal.interface == NM:
        return NMSignal("devices-changed", str(body[0]) if body else "")
    if signal.member == "NameOwnerChanged" and signal.interface == DBUS and len(body) == 3 and body[0] == NM:
        return NMSignal("nm-started" if body[2] else "nm-stopped")
    return None


def nm_signals(bus: SystemBus, emit: Callable[[NMSignal], None]) -> Subscription:
    """Call `emit` for every NM device state change, device added/removed and NM (re)start.

    The match rules live in the bus daemon, not in NM, so they keep working
    across a restart of NetworkManager.
    """

    def on_signal(signal: Signal) -> None:
        converted = nm_signal(signal)
        if converted is not None:
            emit(converted)

    return bus.subscribe(DAEMON_RULES, on_signal)
