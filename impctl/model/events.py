"""Events the failover daemon reacts to, as plain data: kernel link/address
changes (from netlink) and NetworkManager signals (from D-Bus).

Events carry `time.monotonic()` of their arrival where timing matters.
"""

from __future__ import annotations

from impctl.model.record import record


@record
class LinkChanged:
    ifname: str
    index: int
    up: bool  # administratively up and carrier (IFF_UP and IFF_LOWER_UP)
    at: float


@record
class IPChanged:
    ifname: str
    at: float


@record
class LinkRemoved:
    ifname: str
    at: float


@record
class Resync:
    """Events may have been lost: re-read every interface."""

    reason: str
    at: float


NetEvent = LinkChanged | IPChanged | LinkRemoved | Resync


@record
class NMSignal:
    """A NetworkManager signal the daemon reacts to."""

    kind: str  # "device-state" | "nm-started" | "nm-stopped" | "devices-changed"
    path: str = ""  # the device, for device-state
    new_state: int = 0  # NMDeviceState
    old_state: int = 0
    reason: int = 0  # NMDeviceStateReason
