"""What the use cases need of the world, as Protocols.

The CLI builds the backends that satisfy these (impctl.backends) and passes
them in; tests pass hand-written fakes. Nothing here does I/O.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:  # annotations only: a command loads only the model it runs
    from impctl.model.attempt import Activation, CheckOutcome
    from impctl.model.inventory import DeviceInfo, Interfaces
    from impctl.model.netfacts import Priority
    from impctl.model.nic import ProxyConfig, Secret
    from impctl.model.nmsettings import Settings
    from impctl.model.sessions import SessionsEnded
    from impctl.model.state import State


class Trial(Protocol):
    """One connection attempt on one device, undone unless committed.

    Leaving the `Network.trial` context without `commit()` (a failed check,
    an exception, a cancellation) puts the device back as it was before the
    attempt; `commit()` keeps what the attempt activated.
    """

    async def activate(self, settings: Settings, timeout_s: float) -> Activation: ...

    def commit(self) -> None: ...


class Network(Protocol):
    """NetworkManager and ModemManager as connect, disconnect and status see them."""

    async def devices(self) -> list[DeviceInfo]: ...

    async def primary_ifname(self) -> str | None: ...

    def trial(self, device: DeviceInfo, timeout_s: float) -> contextlib.AbstractAsyncContextManager[Trial]: ...

    async def disconnect(self, device: DeviceInfo) -> bool: ...

    async def set_priority(self, device: DeviceInfo, priority: Priority) -> None: ...


class InterfaceReader(Protocol):
    """What status reads: every interface (uplinks and LAN ports) and the primary."""

    async def interfaces(self) -> Interfaces: ...

    async def primary_ifname(self) -> str | None: ...


class GatewayLock(Protocol):
    """One command at a time changes which uplink carries the gateway's traffic."""

    def hold(self, command: str) -> contextlib.AbstractContextManager[bool]:
        """Wait (saying so) until the gateway is free, then hold it; yields True."""
        ...

    def try_hold(self, command: str) -> contextlib.AbstractContextManager[bool]:
        """Hold the gateway if it is free; yields whether it was taken."""
        ...


class Store(Protocol):
    """The state file and the per-gateway key."""

    def transaction(self) -> contextlib.AbstractContextManager[State]: ...

    def load(self) -> State: ...

    def encrypt(self, secret: Secret | None) -> Secret | None: ...

    def decrypt(self, secret: Secret | None, path: str) -> str | None: ...


# (device, proxy, clear proxy password, timeout_s) -> outcome
class EndSessions(Protocol):
    """Ends the gateway's sockets on an uplink's addresses and the flows NAT'd to them (`parts` of it)."""

    async def __call__(self, ifname: str, addresses: Sequence[str], lan_dns_name: str = ...) -> SessionsEnded:
        """`lan_dns_name`: a name the LAN's resolver must answer before the nudges (the cloud's)."""


CloudCheck: TypeAlias = "Callable[[DeviceInfo, ProxyConfig | None, str | None, float], Awaitable[CheckOutcome]]"
