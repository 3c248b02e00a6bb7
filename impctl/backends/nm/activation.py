"""Acting on NetworkManager: activation, deactivation, disconnect, route metrics.

Everything that changes a state and waits for it goes through one helper,
`watching` + `StateWatch.until`: subscribe to the object's StateChanged
*before* acting, act, read the state once, then wait for the wanted state
under `asyncio.timeout`. Subscribing first is what makes it race-free: a
state reached between the call and the read is either read or signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, cast

from impctl.backends.nm.bus import DBusCallError, Signal, SystemBus, match_rule, unwrap, variant
from impctl.backends.nm.defs import (
    NM,
    NM_ACTIVE,
    NM_DEVICE,
    NM_PATH,
    NM_SETTINGS_CONN,
    ActiveConnectionProps,
    DeviceProps,
    SettingsConnectionProps,
)
from impctl.backends.nm.devices import device_state
from impctl.model import nmsettings
from impctl.model.attempt import Activation
from impctl.model.errors import ImpctlError, NoSuchInterface, OperationTimeout
from impctl.model.inventory import NMActiveConnectionState, NMDeviceState
from impctl.model.netfacts import Priority

WireSettings = dict[str, dict[str, Any]]
"""A connection as sent on the bus: group -> key -> Variant."""

DEACTIVATE_TIMEOUT_S = 10.0
DOWN_STATES = frozenset({NMDeviceState.DISCONNECTED, NMDeviceState.UNAVAILABLE, NMDeviceState.UNMANAGED})
_AC_DONE = frozenset({NMActiveConnectionState.ACTIVATED, NMActiveConnectionState.DEACTIVATED})


# ---------------------------------------------------------------------------
# the wait-for-state helper


class StateWatch:
    """StateChanged signals of NM objects, subscribed before the caller acts."""

    def __init__(self, queue: asyncio.Queue[Signal]) -> None:
        self._queue = queue

    async def until(
        self, path: str, interface: str, state: int, done: Collection[int], timeout_s: float, what: str,
        observe: Callable[[Signal], None] | None = None,
    ) -> int:
        """Wait until `path`'s state (now `state`) is in `done`; returns it.

        Other objects' StateChanged go to `observe`. Raises OperationTimeout
        ("NetworkManager did not <what> in <n> s").
        """
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                while state not in done:
                    signal = await self._queue.get()
                    if signal.path == path and signal.interface == interface:
                        state = int(signal.body[0])
                    elif observe is not None:
                        observe(signal)
        except TimeoutError:
            raise OperationTimeout(f"NetworkManager did not {what} in {timeout_s:g} s") from None
        return state

    def drain(self, observe: Callable[[Signal], None]) -> None:
        """Hand the signals already queued to `observe`: `until` reads none when the state
        it was given is already done (a modem whose activation failed within a millisecond
        is DEACTIVATED by the first read), and the device's reason is among them."""
        while not self._queue.empty():
            observe(self._queue.get_nowait())


@contextlib.asynccontextmanager
async def watching(bus: SystemBus, *targets: tuple[str, str | None]) -> AsyncIterator[StateWatch]:
    """Subscribe to StateChanged of each (interface, path); path None: every object of it."""
    rules = [match_rule(interface, "StateChanged", path=path) for interface, path in targets]

    def accept(signal: Signal) -> bool:
        return signal.member == "StateChanged" and bool(signal.body) and any(
            signal.interface == interface and path in (None, signal.path) for interface, path in targets
        )

    async with bus.signals(rules, accept) as queue:
        yield StateWatch(queue)


async def act_then_wait(
    bus: SystemBus, path: str, interface: str, act: Callable[[], Awaitable[object]],
    read: Callable[[], Awaitable[int]], done: Collection[int], timeout_s: float, what: str,
) -> int:
    """Subscribe to `path`'s StateChanged, `act`, `read` the state, wait until it is in `done`."""
    async with watching(bus, (interface, path)) as watch:
        await act()
        return await watch.until(path, interface, await read(), done, timeout_s, what)


async def active_state(bus: SystemBus, active_path: str) -> NMActiveConnectionState:
    """The active connection's state now (DEACTIVATED once NM has dropped it)."""
    props = cast(ActiveConnectionProps, await bus.get_all_or_empty(NM, active_path, NM_ACTIVE))
    return NMActiveConnectionState(int(props.get("State", NMActiveConnectionState.DEACTIVATED)))


# ---------------------------------------------------------------------------
# activation


def _variant(group: str, key: str, value: Any) -> Any:
    items = nmsettings.ITEM_SIGNATURES.get((group, key))
    if items is not None:
        value = [{k: variant(items[k], v) for k, v in item.items()} for item in value]
    return variant(nmsettings.signature_of(group, key), value)


def wire_settings(settings: nmsettings.Settings) -> WireSettings:
    return {group: {key: _variant(group, key, value) for key, value in values.items()}
            for group, values in settings.items()}


class _Progress:
    """How far the device got during an activation, and why it stopped."""

    def __init__(self, device_path: str, props: DeviceProps) -> None:
        self.device_path = device_path
        self.furthest = self._progress(int(props.get("State", 0)))
        reason = props.get("StateReason")
        self.reason = int(reason[1]) if reason else 0

    @staticmethod
    def _progress(state: int) -> int:
        # FAILED/DEACTIVATING come after ACTIVATED numerically but are not progress.
        return state if state <= NMDeviceState.ACTIVATED else 0

    def observe(self, signal: Signal) -> None:
        if signal.interface != NM_DEVICE or signal.path != self.device_path or len(signal.body) < 3:
            return
        new_state, _old, why = (int(x) for x in signal.body[:3])
        self.furthest = max(self.furthest, self._progress(new_state))
        if new_state in (NMDeviceState.FAILED, NMDeviceState.DISCONNECTED) and why:
            self.reason = why


async def activate(
    bus: SystemBus, settings: WireSettings, device_path: str, *, timeout_s: float
) -> Activation:
    """AddAndActivateConnection2 with persist=volatile; wait for ACTIVATED or failure.

    Nothing is written to disk: the profile lives in memory only and NM
    deletes it once it is deactivated. On a timeout, or when interrupted,
    the attempt is deactivated before returning.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with watching(bus, (NM_ACTIVE, None), (NM_DEVICE, device_path)) as watch:
        try:
            (conn_path, active_path, _result) = await bus.call(
                NM, NM_PATH, NM, "AddAndActivateConnection2", "a{sa{sv}}ooa{sv}",
                [settings, device_path, "/", {"persist": variant("s", "volatile")}],
                timeout_s=max(1.0, min(timeout_s, 30.0)), what="activating the connection",
            )
        except DBusCallError as exc:
            # NM refused (device unavailable, no carrier, invalid settings ...).
            return Activation(activated=False, error_name=exc.error_name, error_text=exc.message,
                              elapsed_s=loop.time() - start)
        try:
            state = await active_state(bus, active_path)
            progress = _Progress(device_path, cast(DeviceProps, await bus.get_all_or_empty(NM, device_path, NM_DEVICE)))
            timed_out = False
            try:
                state = NMActiveConnectionState(await watch.until(
                    active_path, NM_ACTIVE, state, _AC_DONE, start + timeout_s - loop.time(),
                    "activate the connection", observe=progress.observe))
            except OperationTimeout:
                timed_out = True
                await deactivate(bus, active_path)
            watch.drain(progress.observe)
        except BaseException:
            # Interrupted (Ctrl-C, NM gone, a bug): the attempt must not stay behind.
            with contextlib.suppress(Exception):
                await deactivate(bus, active_path, timeout_s=2.0)
            raise
    activated = state == NMActiveConnectionState.ACTIVATED and not timed_out
    return Activation(
        activated=activated, active_path=active_path, profile_path=conn_path,
        furthest_state=NMDeviceState.ACTIVATED if activated else progress.furthest,
        reason=0 if activated else progress.reason, timed_out=timed_out, elapsed_s=loop.time() - start,
    )


# ---------------------------------------------------------------------------
# taking down


async def deactivate(bus: SystemBus, active_path: str, *, timeout_s: float = DEACTIVATE_TIMEOUT_S) -> bool:
    """DeactivateConnection and wait until it is gone; False if it was not active anymore."""

    async def act() -> None:
        await bus.call(NM, NM_PATH, NM, "DeactivateConnection", "o", [active_path],
                       what="deactivating the connection")

    try:
        await act_then_wait(bus, active_path, NM_ACTIVE, act, lambda: active_state(bus, active_path),
                            {NMActiveConnectionState.DEACTIVATED}, timeout_s, f"deactivate {active_path}")
    except (NoSuchInterface, DBusCallError):
        return False  # already gone (NM: ConnectionNotActive)
    return True


async def disconnect_device(bus: SystemBus, device_path: str, *, timeout_s: float = DEACTIVATE_TIMEOUT_S) -> bool:
    """Device.Disconnect and wait until it is down; False if it was not connected.

    Unlike DeactivateConnection this also blocks autoconnect on the device
    until impctl (or a user) activates it again: impOS powers the previous
    interface down, and a persistent profile must not bring it straight back.
    """

    async def act() -> None:
        await bus.call(NM, device_path, NM_DEVICE, "Disconnect", what="disconnecting the interface")

    try:
        await act_then_wait(bus, device_path, NM_DEVICE, act, lambda: device_state(bus, device_path),
                            DOWN_STATES, timeout_s, f"disconnect {device_path}")
    except DBusCallError as exc:
        if exc.error_name.endswith(".NotActive"):
            return False
        raise
    return True


# ---------------------------------------------------------------------------
# profiles and metrics


async def reactivate(bus: SystemBus, profile_path: str, device_path: str) -> bool:
    """Best effort: bring a saved profile back up on its device (no wait)."""
    try:
        await bus.call(NM, NM_PATH, NM, "ActivateConnection", "ooo", [profile_path, device_path, "/"],
                       what="re-activating the previous connection")
    except ImpctlError:
        return False
    return True


async def profile_is_volatile(bus: SystemBus, profile_path: str) -> bool:
    props = cast(SettingsConnectionProps, await bus.get_all_or_empty(NM, profile_path, NM_SETTINGS_CONN))
    return bool(props.get("Unsaved", False)) or str(props.get("Filename", "")) == ""


async def applied_connection(bus: SystemBus, device_path: str) -> tuple[WireSettings, int]:
    """What is applied on the device now (Variants kept, to send back) and its version id."""
    (applied, version) = await bus.call(NM, device_path, NM_DEVICE, "GetAppliedConnection", "u", [0],
                                        what="reading the applied connection")
    return applied, int(version)


async def set_priority(bus: SystemBus, device_path: str, priority: Priority) -> None:
    """Change the device's IPv4 route metric and DNS priority in place, in one Device.Reapply.

    Not written to disk. One Reapply for both, so resolv.conf and the route
    move together: NM rewrites resolv.conf in DNS-priority order, and route
    metrics alone do not reorder it (with equal priorities the device
    reapplied last goes last).
    """
    applied, version = await applied_connection(bus, device_path)
    ipv4 = applied.setdefault("ipv4", {})
    ipv4["route-metric"] = variant("x", priority.route_metric)
    ipv4["dns-priority"] = variant("i", priority.dns_priority)
    # `version` makes NM refuse the change if the connection was re-applied meanwhile.
    await bus.call(NM, device_path, NM_DEVICE, "Reapply", "a{sa{sv}}tu", [applied, version, 0],
                   what="changing the route metric and DNS priority")


async def profile_priority(bus: SystemBus, profile_path: str | None) -> Priority:
    """The route metric and DNS priority a profile asks for (-1 and 0: NM's defaults)."""
    if not profile_path:
        return Priority()
    (settings,) = await bus.call(NM, profile_path, NM_SETTINGS_CONN, "GetSettings", what="reading the profile")
    ipv4 = unwrap(settings).get("ipv4", {})
    return Priority(int(ipv4.get("route-metric", -1)), int(ipv4.get("dns-priority", 0)))
