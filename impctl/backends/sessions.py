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

Errors (no CAP_NET_ADMIN, a kernel without SOCK_DESTROY or conntrack, a
reply that does not parse) become lines in `SessionsEnded.errors`: ending
sessions is best effort and never stops a switch.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from impctl.model import ctwire, sockdiag
from impctl.model.sessions import Address, SessionsEnded, conntrack_to_end

_RECV_BYTES = 65536
_TIMEOUT_S = 1.0
# A gateway has a few hundred sockets and a few thousand conntrack entries; this bounds a runaway reply.
_MAX_ITEMS = 1_000_000


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


def _end_conntrack(addresses: frozenset[Address], errors: list[str]) -> int:
    deleted = 0
    try:
        nl = _Netlink(ctwire.NETLINK_NETFILTER)
    except OSError as err:
        errors.append(f"conntrack: cannot open nfnetlink: {_text(err)}")
        return 0
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
                    deleted += 1
                elif code != errno.ENOENT:  # expired meanwhile
                    errors.append(f"conntrack: deleting {entry.orig_src} -> {entry.reply_dst}: {os.strerror(code)}")
    except (OSError, ctwire.CtWireError) as err:
        errors.append(f"conntrack: {_text(err)}")
    finally:
        nl.close()
    return deleted


async def end_sessions(ifname: str, addresses: Iterable[str]) -> SessionsEnded:
    """End the gateway's sockets on `addresses` and the forwarded flows NAT'd to them.

    `addresses` are the uplink's ("198.18.1.50/24", as DeviceInfo lists
    them): the last it had, since NM may already have removed them from a
    lost link while the sockets still use them.
    """
    started = time.monotonic()
    wanted = sockdiag.local_addresses(addresses)
    errors: list[str] = []
    if not wanted:
        return SessionsEnded(ifname, 0, 0, 0.0)
    sockets = _end_sockets(wanted, errors)
    flows = _end_conntrack(wanted, errors)
    return SessionsEnded(ifname, sockets, flows, time.monotonic() - started, tuple(errors))


def _proto(protocol: int) -> str:
    return "tcp" if protocol == socket.IPPROTO_TCP else "udp"


def _family(family: int) -> str:
    return "ipv4" if family == socket.AF_INET else "ipv6"


def _text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
