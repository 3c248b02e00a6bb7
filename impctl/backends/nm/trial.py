"""A connection attempt on one device that is undone unless committed (impctl.usecases.ports.Trial).

The undo is NetworkManager's own: entering the trial creates a checkpoint
of the device (CheckpointCreate with a rollback timeout a little above the
attempt's), committing destroys it, any other exit (a failed check, an
exception, a cancellation) rolls it back. NM holds the checkpoint, not
impctl: if impctl dies mid-attempt (kill -9, OOM, power to the CPU but not
the modem), NM rolls the device back by itself when the timeout expires.

Where NM refuses a checkpoint, the trial falls back to impctl's own
snapshot: the applied connection read before the attempt, re-activated
afterwards (see `_create_checkpoint` for when that happens). The fallback
cannot survive impctl dying, and cannot restore a volatile WiFi profile's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

from impctl.backends.nm.activation import (
    WireSettings,
    act_then_wait,
    activate,
    applied_connection,
    deactivate,
    profile_is_volatile,
    reactivate,
    wire_settings,
)
from impctl.backends.nm.bus import DBusCallError, SystemBus
from impctl.backends.nm.defs import (
    NM,
    NM_CHECKPOINT,
    NM_DEVICE,
    NM_PATH,
    NM_SETTINGS,
    NM_SETTINGS_CONN,
    NM_SETTINGS_PATH,
    CheckpointFlags,
    SettingsUpdate2Flags,
)
from impctl.backends.nm.devices import device_state
from impctl.model import nmsettings
from impctl.model.attempt import Activation
from impctl.model.errors import ImpctlError, NoSuchInterface, PermissionDenied
from impctl.model.inventory import DeviceInfo, NMDeviceState
from impctl.model.record import record

# The rollback timeout is the attempt's timeout plus this: the check after
# activation may take MIN_CHECK_TIMEOUT_S past it, then the metric and commit.
ROLLBACK_MARGIN_S = 10
# Profiles made after the checkpoint (the trial's volatile one) go with a rollback.
# Not DISCONNECT_NEW_DEVICES: NM accepts it only for a checkpoint of every device,
# and a rollback of every device would also undo what the daemon or a user did elsewhere.
CHECKPOINT_FLAGS = CheckpointFlags.DELETE_NEW_CONNECTIONS
# After an undo, how long to wait for the device's previous connection to be up again.
RESTORE_TIMEOUT_S = 15.0
CHECKPOINT_CALL_TIMEOUT_S = 10.0
# A killed impctl's checkpoint is waited out, polling this often, with this margin for NM's timer.
STALE_POLL_S = 0.5
STALE_MARGIN_S = 5.0


def rollback_timeout_s(attempt_timeout_s: float) -> int:
    return math.ceil(attempt_timeout_s) + ROLLBACK_MARGIN_S


class NMTrial:
    """The attempt's activation, remembered so that an undo without a checkpoint can take it down."""

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
    """An attempt on `device`: unless committed, NM puts the device back as it was,
    also when the body raises or is cancelled."""
    # First, so that the checkpoint (or the snapshot) sees the profile as volatile.
    volatile_uuid = await _volatile_profile_uuid(bus, device)
    checkpoint = await _create_checkpoint(bus, device, rollback_timeout_s(timeout_s))
    snapshot = await take_snapshot(bus, device) if checkpoint is None else None
    attempt = NMTrial(bus, device)
    try:
        yield attempt
    finally:
        if attempt.committed:
            if checkpoint is not None:
                # Not suppressed: a checkpoint left behind would undo the new uplink at its timeout.
                await _destroy_checkpoint(bus, checkpoint)
        else:
            # Best effort and shielded: an undo that fails must not hide why the attempt ended.
            with contextlib.suppress(Exception):
                await asyncio.shield(_undo(bus, device, attempt, checkpoint, snapshot, volatile_uuid))


async def _create_checkpoint(bus: SystemBus, device: DeviceInfo, rollback_s: int) -> str | None:
    """A checkpoint of `device`'s current state; None where NM will not make one.

    NM refuses with InvalidArguments ("... already in use", "overlaps") when
    another checkpoint covers the device. Under the gateway lock that is
    either a killed impctl's (whose rollback is due within one rollback
    timeout) or another tool's (nmstate's): for the first, wait until NM has
    rolled it back, since a trial started over it would be undone when it
    expires; for the second, ALLOW_OVERLAPPING would make the two rollbacks
    fight over the device, so the snapshot undoes this attempt instead.
    UnknownMethod comes from a daemon without the API (python-dbusmock's
    networkmanager template, NM < 1.12); PermissionDenied where polkit grants
    network-control but not checkpoint-rollback. In all these the snapshot
    undoes the attempt.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rollback_s
    vanished = 0
    while True:
        try:
            (path,) = await bus.call(
                NM, NM_PATH, NM, "CheckpointCreate", "aouu",
                [[device.nm_path], rollback_s, int(CHECKPOINT_FLAGS)],
                timeout_s=CHECKPOINT_CALL_TIMEOUT_S, what=f"creating a checkpoint of {device.ifname}",
            )
            return str(path)
        except PermissionDenied:
            return None
        except DBusCallError as err:
            if not err.error_name.endswith(".InvalidArguments"):
                return None
        pending = await _pending_rollback_s(bus, device)
        if pending is None:
            # Rolled back between the refusal and the look (try again), or refused for another reason.
            vanished += 1
            if vanished > 2:
                return None
            continue
        if loop.time() + pending > deadline + STALE_MARGIN_S:
            return None  # not a killed impctl's: another tool's, due later than any of ours
        await asyncio.sleep(min(STALE_POLL_S, max(pending, 0.0) + 0.1))


async def _pending_rollback_s(bus: SystemBus, device: DeviceInfo) -> float | None:
    """Seconds until the checkpoint covering `device` rolls back by itself (None: none found)."""
    manager = await bus.get_all(NM, NM_PATH, NM)
    now_ms = time.clock_gettime(time.CLOCK_BOOTTIME) * 1000  # NM's Created is CLOCK_BOOTTIME ms
    due: list[float] = []
    for path in manager.get("Checkpoints", []):
        props = await bus.get_all_or_empty(NM, str(path), NM_CHECKPOINT)
        if device.nm_path not in [str(d) for d in props.get("Devices", [])]:
            continue
        timeout_s = int(props.get("RollbackTimeout", 0))
        if timeout_s == 0:
            return math.inf  # never rolls back by itself: certainly not a trial of impctl's
        due.append((int(props.get("Created", 0)) + timeout_s * 1000 - now_ms) / 1000)
    return min(due) if due else None


async def _destroy_checkpoint(bus: SystemBus, checkpoint: str) -> None:
    await bus.call(NM, NM_PATH, NM, "CheckpointDestroy", "o", [checkpoint],
                   timeout_s=CHECKPOINT_CALL_TIMEOUT_S, what="keeping the new connection (CheckpointDestroy)")


async def _undo(bus: SystemBus, device: DeviceInfo, attempt: NMTrial, checkpoint: str | None,
                snapshot: Snapshot | None, volatile_uuid: str | None) -> None:
    if checkpoint is not None:
        await _rollback(bus, device, checkpoint, volatile_uuid)
        return
    if attempt.active_path is not None:
        await deactivate(bus, attempt.active_path)
    if snapshot is not None:
        await restore(bus, snapshot)


async def _rollback(bus: SystemBus, device: DeviceInfo, checkpoint: str, volatile_uuid: str | None) -> None:
    """CheckpointRollback; if the device was connected before, wait until it is again."""

    async def act() -> None:
        await bus.call(NM, NM_PATH, NM, "CheckpointRollback", "o", [checkpoint],
                       timeout_s=CHECKPOINT_CALL_TIMEOUT_S, what="rolling back the attempt")
        if volatile_uuid is not None:
            # Before the wait, which may time out on a slow uplink: the profile must not stay on disk.
            await _make_volatile_again(bus, volatile_uuid)

    if device.active_path is None:
        await act()
        return
    await act_then_wait(bus, device.nm_path, NM_DEVICE, act, lambda: device_state(bus, device.nm_path),
                        {NMDeviceState.ACTIVATED}, RESTORE_TIMEOUT_S, f"bring {device.ifname} back")


async def _volatile_profile_uuid(bus: SystemBus, device: DeviceInfo) -> str | None:
    """The UUID of the device's active profile if that profile is volatile (in memory only).

    impctl's own profiles are always volatile. One found on disk is what NM's
    timeout rollback of a killed impctl left (it re-adds the profile to disk,
    see `_make_volatile_again`); it goes back to memory here, the next time
    impctl tries that device.
    """
    profile_path, uuid = device.extra.get("profile_path"), device.extra.get("profile_uuid")
    if not device.active_path or not profile_path or not uuid:
        return None
    if await profile_is_volatile(bus, profile_path):
        return uuid
    if not (device.active_profile or "").startswith(nmsettings.PROFILE_PREFIX):
        return None  # a profile of the user's: it stays where it is
    try:
        await _make_volatile_again(bus, uuid)
    except ImpctlError:
        return None
    return uuid


async def _make_volatile_again(bus: SystemBus, uuid: str) -> None:
    """Put a rolled-back volatile profile back in memory only.

    The previous profile was volatile (impctl's own, say), so NM deleted it
    when the attempt replaced it; the rollback re-adds it, but NM 1.42
    writes the re-added profile to disk (/etc/NetworkManager/system-connections).
    Update2 with no settings keeps them and moves the profile back to
    memory, volatile as it was (deleted again once deactivated).
    """
    (path,) = await bus.call(NM, NM_SETTINGS_PATH, NM_SETTINGS, "GetConnectionByUuid", "s", [uuid],
                             what="finding the restored profile")
    flags = SettingsUpdate2Flags.IN_MEMORY_ONLY | SettingsUpdate2Flags.VOLATILE | SettingsUpdate2Flags.NO_REAPPLY
    await bus.call(NM, path, NM_SETTINGS_CONN, "Update2", "a{sa{sv}}ua{sv}", [{}, int(flags), {}],
                   what="keeping the restored profile in memory")


# ---------------------------------------------------------------------------
# the fallback: impctl's own snapshot


@record
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
