"""`NMClient`: NetworkManager and ModemManager for every use case, over one bus connection.

It satisfies `impctl.usecases.ports.Network` (connect, disconnect, status)
and `impctl.usecases.daemon.Network` (the failover daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from impctl.backends.nm import devices
from impctl.backends.nm.bus import CONNECT_TIMEOUT_S, SystemBus, system_bus
from impctl.model.errors import OperationTimeout

if TYPE_CHECKING:
    from impctl.backends.nm.trial import NMTrial
    from impctl.model.config import Config
    from impctl.model.events import NMSignal
    from impctl.model.inventory import DeviceInfo, Interfaces
    from impctl.model.netfacts import Priority

# activation, trial and signals are imported where they are used: `status`
# and `interfaces get` only read, and each module loaded costs start-up time
# (bench/startup_bench.py).


class NMClient:
    """NM and MM as the use cases see them; the CLI makes one per command (or daemon connection)."""

    def __init__(self, bus: SystemBus, config: Config) -> None:
        self._bus = bus
        self._config = config

    @classmethod
    async def connect(cls, config: Config, timeout_s: float = CONNECT_TIMEOUT_S) -> NMClient:
        return cls(await SystemBus.connect(timeout_s), config)

    def set_config(self, config: Config) -> None:
        self._config = config

    def close(self) -> None:
        self._bus.close()

    async def disconnected(self) -> None:
        """Return when the bus connection is lost."""
        await self._bus.disconnected()

    # ---- reading

    async def devices(self) -> list[DeviceInfo]:
        return await devices.read_devices(self._bus, self._config)

    async def interfaces(self) -> Interfaces:
        """The uplinks (as `devices`) and the LAN ports, in one read."""
        return await devices.read_interfaces(self._bus, self._config)

    async def primary_ifname(self) -> str | None:
        path = await devices.primary_device_path(self._bus)
        return await devices.device_ifname(self._bus, path) if path is not None else None

    async def profile_priority(self, device: DeviceInfo) -> Priority:
        """The route metric and DNS priority the device's profile asks for (NM's defaults: -1, 0).

        What the daemon puts back on an uplink it no longer makes primary.
        """
        from impctl.backends.nm import activation

        return await activation.profile_priority(self._bus, device.extra.get("profile_path"))

    # ---- acting

    def trial(self, device: DeviceInfo, timeout_s: float) -> contextlib.AbstractAsyncContextManager[NMTrial]:
        """A checkpointed attempt on `device` (impctl.backends.nm.trial)."""
        from impctl.backends.nm.trial import trial

        return trial(self._bus, device, timeout_s)

    async def disconnect(self, device: DeviceInfo) -> bool:
        from impctl.backends.nm import activation

        return await activation.disconnect_device(self._bus, device.nm_path)

    async def set_priority(self, device: DeviceInfo, priority: Priority) -> None:
        from impctl.backends.nm import activation

        await activation.set_priority(self._bus, device.nm_path, priority)

    def signals(self, emit: Callable[[NMSignal], None]) -> contextlib.AbstractAsyncContextManager[None]:
        from impctl.backends.nm.signals import nm_signals

        return nm_signals(self._bus, emit)


async def read_inventory(config: Config, *, timeout_s: float = 5.0, ipv6_method: bool = False) -> list[DeviceInfo]:
    """Open the system bus, read the gateway's interfaces, close the bus.

    Returns every NM-managed device of class ethernet, wifi or cell (after
    the config's [classes] overrides), ordered by class (ethernet, wifi, cell)
    then identifier, each with its identifier (eth0/wl0/cell0 ..., config pins
    honoured), NM state, IPv4 addresses, gateway, DNS servers, active profile,
    default-route metric, WiFi SSID/signal, and for modems a ModemInfo.

    Raises ServiceUnavailable (NM or the bus not running), PermissionDenied,
    OperationTimeout (nothing within `timeout_s`). `ipv6_method`: also each active
    device's applied ipv6.method, as extra["ipv6_method"] (the dual-stack probe's question
    whether IPv6 is meant to work there).
    """
    try:
        async with asyncio.timeout(timeout_s):
            async with system_bus(min(timeout_s, CONNECT_TIMEOUT_S)) as bus:
                found = await NMClient(bus, config).devices()
                return await devices.with_ipv6_methods(bus, found) if ipv6_method else found
    except TimeoutError:
        raise OperationTimeout(f"reading the interfaces took longer than {timeout_s:g} s") from None
