"""Ending the sessions of an uplink the gateway leaves: its own sockets and the flows it forwards.

- The gateway's sockets: a SOCK_DIAG_BY_FAMILY dump of TCP and UDP sockets
  (both families) over NETLINK_SOCK_DIAG, then SOCK_DESTROY for those
  `impctl.model.sockdiag.to_end` picks. ~1 ms for a handful of sockets.
- Forwarded flows: a conntrack dump over nfnetlink (`impctl.model.ctwire`,
  1,500 entries in ~50 ms) and a delete for each entry
  `impctl.model.sessions.conntrack_to_end` picks. With masquerade
  the kernel drops such entries itself when the output interface changes;
  with SNAT to a fixed address or the same output interface it does not,
  and the LAN device's flow would hang.
- LAN devices of the established TCP flows deleted: one SYN each, on the
  LAN port at layer 2, so they hear of it now instead of at their next
  retransmission (`impctl.model.lannudge` says why and how). Not before
  the LAN's resolver answers through the new primary: see `lan_resolver_follows`.

Errors (no CAP_NET_ADMIN, a kernel without SOCK_DESTROY or conntrack, a
reply that does not parse) become lines in `SessionsEnded.errors`: ending
sessions is best effort and never stops a switch.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from impctl.model import ctwire, dnswire, lannudge, sockdiag
from impctl.model.errors import ImpctlError
from impctl.model.sessions import Address, SessionsEnded, conntrack_to_end

_RECV_BYTES = 65536
_TIMEOUT_S = 1.0
# A gateway has a few hundred sockets and a few thousand conntrack entries; this bounds a runaway reply.
_MAX_ITEMS = 1_000_000
_ARP_TABLE = "/proc/net/arp"
_SIOCGIFADDR = 0x8915
# A resolv.conf that never lists a live server first must not hold the nudges for long.
_LAN_DNS_WAIT_S = 2.5
_LAN_DNS_TRY_S = 0.25


class _Netlink:
    """One netlink socket, blocking with a timeout: every request here is answered in milliseconds.

    Blocking on purpose: it runs inside the daemon's event loop for a few
    milliseconds at a switch, and a timeout bounds it if the kernel never answers.
    """

    def __init__(self, protocol: int) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self._sock.settimeout(_TIMEOUT_S)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = int.from_bytes(os.urandom(2), "little")

    def close(self) -> None:
        self._sock.close()

    def request(self, build: Callable[[int], bytes]) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._sock.send(build(self._seq))
        return self._seq

    def recv(self) -> bytes:
        return self._sock.recv(_RECV_BYTES)


T = TypeVar("T")


def _dump(nl: _Netlink, build: Callable[[int], bytes], replies: Callable[[bytes], Iterable[Any]],
          item: Callable[[Any], T | None], what: str) -> list[T]:
    """Every item of one dump request; a reply that does not parse raises the codec's error."""
    seq = nl.request(build)
    found: list[T] = []
    while True:
        for reply in replies(nl.recv()):
            if reply.seq != seq:
                continue  # a late answer to an earlier request
            if reply.done:
                return found
            if reply.error is not None:
                raise OSError(-reply.error, os.strerror(-reply.error))
            value = item(reply)
            if value is not None:
                found.append(value)
                if len(found) > _MAX_ITEMS:
                    raise OSError(errno.E2BIG, f"more than {_MAX_ITEMS} {what} in one dump")


def _dump_sockets(nl: _Netlink, family: int, protocol: int, states: int) -> list[sockdiag.DiagSocket]:
    return _dump(nl, functools.partial(sockdiag.dump_request, family, protocol, states),
                 functools.partial(_diag_replies, protocol=protocol), lambda r: r.sock, "sockets")


def _acked(nl: _Netlink, seq: int, parse: Callable[[bytes], Iterable[Any]]) -> int:
    """0, or the errno the kernel answered request `seq` with."""
    while True:
        for reply in parse(nl.recv()):
            if reply.seq == seq and reply.error is not None:
                return int(-reply.error)


def _diag_replies(data: bytes, protocol: int) -> Iterable[sockdiag.Reply]:
    return sockdiag.parse_replies(data, protocol)


def _end_sockets(addresses: frozenset[Address], errors: list[str]) -> int:
    ended = 0
    try:
        nl = _Netlink(sockdiag.NETLINK_SOCK_DIAG)
    except OSError as err:
        errors.append(f"sockets: cannot open NETLINK_SOCK_DIAG: {_text(err)}")
        return 0
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            for protocol, states in ((socket.IPPROTO_TCP, sockdiag.state_mask(sockdiag.TCP_ENDABLE)),
                                     (socket.IPPROTO_UDP, sockdiag.state_mask([sockdiag.TCP_ESTABLISHED]))):
                try:
                    listed = _dump_sockets(nl, family, protocol, states)
                except (OSError, sockdiag.DiagWireError) as err:
                    errors.append(f"sockets: listing {_proto(protocol)}/{_family(family)}: {_text(err)}")
                    continue
                for sock in sockdiag.to_end(listed, addresses):
                    seq = nl.request(functools.partial(sockdiag.destroy_request, sock))
                    code = _acked(nl, seq, functools.partial(_diag_replies, protocol=protocol))
                    if code == 0:
                        ended += 1
                    elif code != errno.ENOENT:  # closed meanwhile
                        errors.append(f"sockets: ending {_proto(protocol)} {sock.id.local}:{sock.id.sport}"
                                      f" -> {sock.id.remote}:{sock.id.dport}: {os.strerror(code)}")
    except (OSError, sockdiag.DiagWireError) as err:
        errors.append(f"sockets: {_text(err)}")
    finally:
        nl.close()
    return ended


def _dump_conntrack(nl: _Netlink, family: int) -> list[ctwire.Entry]:
    return _dump(nl, functools.partial(ctwire.dump_request, family), ctwire.parse_replies,
                 lambda r: r.entry, "conntrack entries")


def _end_conntrack(addresses: frozenset[Address], errors: list[str]) -> list[ctwire.Entry]:
    """The entries deleted."""
    deleted: list[ctwire.Entry] = []
    try:
        nl = _Netlink(ctwire.NETLINK_NETFILTER)
    except OSError as err:
        errors.append(f"conntrack: cannot open nfnetlink: {_text(err)}")
        return deleted
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                entries = _dump_conntrack(nl, family)
            except (OSError, ctwire.CtWireError) as err:
                if not (isinstance(err, OSError) and err.errno in (errno.ENOENT, errno.EOPNOTSUPP)):
                    errors.append(f"conntrack: listing {_family(family)}: {_text(err)}")
                continue  # ENOENT/EOPNOTSUPP: no conntrack in this namespace, nothing NAT'd
            for entry in entries:
                if not conntrack_to_end(entry.orig_src, entry.reply_dst, addresses):
                    continue
                code = _acked(nl, nl.request(functools.partial(ctwire.delete_request, entry)), ctwire.parse_replies)
                if code == 0:
                    deleted.append(entry)
                elif code != errno.ENOENT:  # expired meanwhile
                    errors.append(f"conntrack: deleting {entry.orig_src} -> {entry.reply_dst}: {os.strerror(code)}")
    except (OSError, ctwire.CtWireError) as err:
        errors.append(f"conntrack: {_text(err)}")
    finally:
        nl.close()
    return deleted


def _nudges(deleted: Sequence[ctwire.Entry], errors: list[str]) -> list[lannudge.Nudge]:
    """Whom to nudge: the devices of the established TCP flows deleted, found in the ARP table."""
    if not any(entry.tcp_established for entry in deleted):
        return []
    try:
        with open(_ARP_TABLE, encoding="ascii", errors="replace") as table:
            return lannudge.nudges(deleted, lannudge.arp_table(table.read()))
    except OSError as err:
        errors.append(f"nudge: reading {_ARP_TABLE}: {_text(err)}")
        return []


def _send_nudges(todo: list[lannudge.Nudge], errors: list[str]) -> int:
    """One SYN to each; how many were sent."""
    sent = 0
    try:
        # Protocol 0: send only, so the socket is never handed the LAN's packets.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except OSError as err:
        errors.append(f"nudge: cannot open a packet socket: {_text(err)}")
        return 0
    with sock:
        sock.setblocking(False)  # a full queue drops a nudge, it never holds the switch
        for nudge in todo:
            seq, ident = struct.unpack("=IH", os.urandom(6))
            try:
                sock.sendto(lannudge.syn_packet(nudge, seq, ident),
                            (nudge.ifname, lannudge.ETH_P_IP, 0, 0, nudge.mac))
                sent += 1
            except OSError as err:
                errors.append(f"nudge: {nudge.device}:{nudge.device_port} on {nudge.ifname}: {_text(err)}")
    return sent


def _port_address(ifname: str) -> str | None:
    """The gateway's IPv4 address on a LAN port, where NM's dnsmasq answers its devices."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            ifreq = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", ifname.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(ifreq[20:24])


async def _answers(server: str, name: str, timeout_s: float) -> bool:
    """Whether `server` answers an A query for `name` within `timeout_s` (any answer but SERVFAIL).

    Not the probe's query (impctl.backends.probe_net): that one resends the same question
    halfway, which dnsmasq takes for a client's retry and sends to its next server.
    """
    loop = asyncio.get_running_loop()
    txid = int.from_bytes(os.urandom(2), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_sendto(sock, dnswire.build_query(name, txid), (server, 53))
            async with asyncio.timeout(timeout_s):
                while True:
                    data, _ = await loop.sock_recvfrom(sock, 4096)
                    try:
                        answer = dnswire.parse_response(data, txid=txid, name=name)
                    except ImpctlError:
                        continue  # not the answer to this query
                    return answer.rcode != 2
        except (OSError, TimeoutError):
            return False


async def lan_resolver_follows(ifnames: Iterable[str], name: str) -> float | None:
    """Until each LAN port's resolver answers a fresh query; seconds waited, None if one never did.

    NM's dnsmasq on a shared LAN port (`--strict-order`) asks the first server
    of the gateway's resolv.conf and never retries on its own; while that is
    the dead uplink's, each lookup of its devices waits out the device's own
    retry (glibc: 5 s). dnsmasq follows the file at once (inotify), but NM
    rewrites it only after the switch (66-108 ms after the Reapply in the
    lab), and the gateway's wait for that may have given up (`dns-order`). A
    nudged device reconnects at once, by name: so not before its resolver
    answers a name it cannot have cached (answered: its first server is alive).
    """
    started = time.monotonic()
    for ifname in sorted(set(ifnames)):
        server = _port_address(ifname)
        if server is None:
            continue  # no IPv4 address, so no dnsmasq of NM's there
        # A new name each time: dnsmasq takes the same question again for a client's retry and
        # sends it to its next server, which would answer while the first is still the dead one.
        while not await _answers(server, f"impctl-{os.urandom(4).hex()}.{name}", _LAN_DNS_TRY_S):
            if time.monotonic() - started > _LAN_DNS_WAIT_S:
                return None
    return time.monotonic() - started


async def end_sessions(ifname: str, addresses: Iterable[str], lan_dns_name: str = "") -> SessionsEnded:
    """End the gateway's sockets on `addresses` and the forwarded flows NAT'd to them.

    `addresses` are the uplink's ("198.18.1.50/24", as DeviceInfo lists
    them): the last it had, since NM may already have removed them from a
    lost link while the sockets still use them. The devices of the flows
    are nudged, with `lan_dns_name` (the cloud's) not before their resolver
    answers.

    Called once the system resolver asks the new primary first, not before:
    a flow's NAT entry kept until then makes the kernel drop (with the
    entry) a device's packet that takes the new route early, and the device
    retries at its next retransmission, when the resolver is right. Deleted
    before, that packet gets the device reset by the cloud at once, and its
    reconnection asks the dead uplink's resolver (lab: 7 of 20 LAN devices
    waited 5 s after a link loss).
    """
    started = time.monotonic()
    wanted = sockdiag.local_addresses(addresses)
    errors: list[str] = []
    if not wanted:
        return SessionsEnded(ifname, 0, 0, 0.0)
    flows = _end_conntrack(wanted, errors)
    nudged, lan_dns_s = 0, None
    todo = _nudges(flows, errors)
    if todo:
        if lan_dns_name:
            lan_dns_s = await lan_resolver_follows((n.ifname for n in todo), lan_dns_name)
            if lan_dns_s is None:
                errors.append(f"nudge: the LAN's resolver did not answer within {_LAN_DNS_WAIT_S} s;"
                              " nudged anyway")
        nudged = _send_nudges(todo, errors)
    sockets = _end_sockets(wanted, errors)
    return SessionsEnded(ifname, sockets, len(flows), time.monotonic() - started, tuple(errors), nudged,
                         None if lan_dns_s is None else round(lan_dns_s * 1000, 1))


def _proto(protocol: int) -> str:
    return "tcp" if protocol == socket.IPPROTO_TCP else "udp"


def _family(family: int) -> str:
    return "ipv4" if family == socket.AF_INET else "ipv6"


def _text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
