"""Which sessions end when the gateway leaves an uplink, and what ending them did.

Pure. The daemon, connectwith and connect decide here; `impctl.backends.sessions`
does it (SOCK_DESTROY for the gateway's own sockets, conntrack deletes for
the flows it forwards for LAN devices).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence

from impctl.model.record import record

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@record
class SessionsEnded:
    """What ending the sessions of one left uplink did."""

    ifname: str
    sockets: int  # the gateway's own sockets ended (SOCK_DESTROY)
    conntrack: int  # forwarded flows whose conntrack entry was deleted
    took_s: float
    errors: tuple[str, ...] = ()  # what could not be done, one line each
    nudged: int = 0  # LAN devices of those flows sent a SYN to hear of it now (impctl.model.lannudge)
    # The wait for the LAN's resolver to answer through the new primary before the nudges.
    lan_dns_ms: float | None = None

    @property
    def total(self) -> int:
        return self.sockets + self.conntrack


def end_on_switch(*, failback: bool, left_class: str, failback_classes: Collection[str]) -> bool:
    """Whether a switch away from an uplink of `left_class` ends its sessions.

    A switch because the uplink failed always does: nothing on it works any
    more. A failback leaves an uplink that still works, but without source
    routing on the gateway its sessions' packets now leave through the new
    primary with the old uplink's source address, which a source-validating
    ISP drops: they hang until TCP gives up (~15 min). So by default a
    failback ends them for every class; `daemon.end_sessions_on_failback`
    narrows that to the classes listed (for gateways whose own policy
    routing keeps such sessions working).
    """
    return not failback or left_class in failback_classes


def nameservers(text: str) -> list[str]:
    """The `nameserver` lines of a resolv.conf, in order (what glibc asks, first to last)."""
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
    return servers


def resolver_follows(servers: Sequence[str], primary_dns: Collection[str], uplinks_dns: Collection[str]) -> bool:
    """Whether the system resolver asks the primary uplink's DNS servers first.

    True as well when its first server is none of the uplinks' (a local
    resolver, systemd-resolved's stub, a static file): then the order of
    the uplinks' servers is not in resolv.conf and there is nothing to
    wait for.
    """
    if not servers or servers[0] not in uplinks_dns:
        return True
    return servers[0] in primary_dns


def conntrack_to_end(orig_src: Address | None, reply_dst: Address | None, addresses: Collection[Address]) -> bool:
    """A forwarded flow NAT'd to one of the left uplink's addresses (its replies come back to that address).

    The gateway's own flows (original source is the uplink's address) are
    left to SOCK_DESTROY: deleting their entry would break a socket
    deliberately bound to that uplink under a stateful firewall.
    """
    if orig_src is None or reply_dst is None:
        return False
    return reply_dst in addresses and orig_src not in addresses
