"""What the kernel says about an interface and its routes, as plain values.

Backends (netlink, netwatch, the probe's sockets) produce these; use cases
and the failover policy consume them without knowing how they were read.
"""

from __future__ import annotations

import base64
import ipaddress

from impctl.model.record import record


@record
class LinkState:
    ifname: str
    index: int
    admin_up: bool
    carrier: bool
    operstate: str  # UP, DOWN, LOWERLAYERDOWN, DORMANT, UNKNOWN ...
    kind: str | None  # veth, ... (None for physical NICs)


@record
class IPv4Facts:
    addresses: tuple[str, ...]  # "198.18.1.50/24", usable (not tentative/DAD-failed)
    gateway: str | None  # via of a default route leaving through the interface
    default_route_linkdown: bool  # that route is flagged linkdown by the kernel


@record
class IPv6Facts:
    addresses: tuple[str, ...]  # global-scope "2001:db8:1::50/64", usable (not tentative/DAD-failed)
    gateway: str | None  # via of a default route leaving through the interface (fe80::...)
    enabled: bool  # the interface has any IPv6 address (link-local counts): IPv6 is not disabled on it


@record
class Counters:
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int


@record
class Priority:
    """Where an uplink stands among the others: its IPv4 default-route metric and DNS priority.

    Values as NetworkManager's profile properties: a route metric of -1 and a DNS
    priority of 0 mean NM's defaults (per device type; 100, or 50 for a VPN).
    Lower wins for both; NM orders resolv.conf by the DNS priority only.
    """

    route_metric: int = -1
    dns_priority: int = 0


@record
class DefaultRoute:
    ifname: str
    metric: int
    linkdown: bool
    # The kernel skips it: linkdown and net.ipv4.conf.{all,IF}.ignore_routes_with_linkdown=1.
    ignored: bool = False


def kernel_primary(routes: list[DefaultRoute]) -> str | None:
    """Where unbound traffic goes: the default route with the lowest metric the kernel uses.

    A linkdown route counts unless ignore_routes_with_linkdown makes the kernel skip
    it (Debian's default is 0: a dead link's route wins until NM removes it).
    """
    usable = [r for r in routes if not r.ignored]
    return min(usable, key=lambda r: r.metric).ifname if usable else None


@record
class Resolved:
    name: str
    address: str  # the first A record
    addresses: tuple[str, ...]
    server: str | None  # the DNS server that answered; None for an IP literal
    rtt_ms: float


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def proxy_authorization(username: str | None, password: str | None) -> str | None:
    """The Proxy-Authorization header value for HTTP basic credentials."""
    if username is None:
        return None
    token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
    return f"Basic {token}"
