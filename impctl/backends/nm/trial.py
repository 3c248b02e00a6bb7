"""A connection attempt on one device that is undone unless committed (impctl.usecases.ports.Trial).

Before the attempt impctl snapshots the device (the applied connection and
its profile); an uncommitted exit (a failed check, an exception, a
cancellation) takes the attempt down and re-activates what was there. It
cannot restore a volatile WiFi profile's key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from impctl.backends.nm.activation import (
    WireSettings,
    activate,
    applied_connection,
    deactivate,
    profile_is_volatile,
    reactivate,
    wire_settings,
)
from impctl.backends.nm.bus import DBusCallError, SystemBus
from impctl.model import nmsettings
from impctl.model.attempt import Activation
from impctl.model.errors import NoSuchInterface
from impctl.model.inventory import DeviceInfo

RESTORE_TIMEOUT_S = 15.0


class NMTrial:
    """The attempt's activation, remembered so that the undo can take it down."""

    def __init__(self, bus: SystemBus, device: DeviceInfo) -> None:
        self._bus = bus
        self._device = device
        self.active_path: str | None = None
        self.committed = False

    async def activate(self, settings: nmsettings.Settings, timeout_s: float) -> Activation:
        activation = await activate(self._bus, wire_settings(settings), self._device.nm_path, timeout_s=timeout_s)
        self.active_path = activation.active_path
        return activation

    def commit(self) -> None:
        self.committed = True


@contextlib.asynccontextmanager
async def trial(bus: SystemBus, device: DeviceInfo, timeout_s: float) -> AsyncIterator[NMTrial]:
    """An attempt on `device`: unless committed, its activation is taken down and the
    device gets back what it had, also when the body raises or is cancelled."""
    snapshot = await take_snapshot(bus, device)
    attempt = NMTrial(bus, device)
    try:
        yield attempt
    finally:
        if not attempt.committed:
            # Best effort and shielded: an undo that fails must not hide why the attempt ended.
            with contextlib.suppress(Exception):
                await asyncio.shield(_undo(bus, attempt, snapshot))


async def _undo(bus: SystemBus, attempt: NMTrial, snapshot: Snapshot | None) -> None:
    if attempt.active_path is not None:
        await deactivate(bus, attempt.active_path)
    if snapshot is not None:
        await restore(bus, snapshot)


# ---------------------------------------------------------------------------
# the snapshot


@dataclass(frozen=True)
class Snapshot:
    """How a device was connected before an attempt, to put it back if the attempt fails."""

    device_path: str
    profile_path: str
    volatile: bool
    applied: WireSettings


async def take_snapshot(bus: SystemBus, device: DeviceInfo) -> Snapshot | None:
    profile_path = device.extra.get("profile_path")
    if not device.active_path or not profile_path:
        return None
    try:
        applied, _version = await applied_connection(bus, device.nm_path)
    except (DBusCallError, NoSuchInterface):
        return None
    volatile = await profile_is_volatile(bus, profile_path)
    return Snapshot(device.nm_path, profile_path, volatile, applied)


async def restore(bus: SystemBus, snapshot: Snapshot, timeout_s: float = RESTORE_TIMEOUT_S) -> bool:
    """Best effort: the saved profile again, or (volatile, so deleted) a copy of what was applied.

    NM does not hand secrets back in the applied connection, so a
    volatile WiFi profile with a key cannot be restored this way.
    """
    if not snapshot.volatile and await reactivate(bus, snapshot.profile_path, snapshot.device_path):
        return True
    result = await activate(bus, snapshot.applied, snapshot.device_path, timeout_s=timeout_s)
    return result.activated
