"""Ending the sessions of an uplink the gateway leaves: its own sockets and the flows it forwards.

- The gateway's sockets: a SOCK_DIAG_BY_FAMILY dump of TCP and UDP sockets
  (both families) over NETLINK_SOCK_DIAG, then SOCK_DESTROY for those
  `impctl.model.sockdiag.to_end` picks. ~1 ms for a handful of sockets.
- Forwarded flows: a conntrack dump (pyroute2, nfnetlink) and a delete for
  each entry `impctl.model.sessions.conntrack_to_end` picks. With masquerade
  the kernel drops such entries itself when the output interface changes;
  with SNAT to a fixed address or the same output interface it does not,
  and the LAN device's flow would hang.

Errors (no CAP_NET_ADMIN, a kernel without SOCK_DESTROY or conntrack, a
reply that does not parse) become lines in `SessionsEnded.errors`: ending
sessions is best effort and never stops a switch.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time
from collections.abc import Iterable

from impctl.model import sockdiag
from impctl.model.sessions import Address, SessionsEnded, conntrack_to_end

_RECV_BYTES = 65536
_TIMEOUT_S = 1.0
# A dump of a gateway's sockets is a few hundred at most; this bounds a runaway reply.
_MAX_SOCKETS = 100_000


class _DiagSocket:
    """One NETLINK_SOCK_DIAG socket, blocking with a timeout (every request is answered in ~1 ms)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, sockdiag.NETLINK_SOCK_DIAG)
        self._sock.settimeout(_TIMEOUT_S)
        self._sock.bind((0, 0))
        self._seq = int.from_bytes(os.urandom(2), "little")

    def close(self) -> None:
        self._sock.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def dump(self, family: int, protocol: int, states: int) -> list[sockdiag.DiagSocket]:
        seq = self._next_seq()
        self._sock.send(sockdiag.dump_request(family, protocol, states, seq))
        found: list[sockdiag.DiagSocket] = []
        while True:
            for reply in sockdiag.parse_replies(self._sock.recv(_RECV_BYTES), protocol):
                if reply.seq != seq:
                    continue  # a late answer to an earlier request
                if reply.done:
                    return found
                if reply.error is not None:
                    raise OSError(-reply.error, os.strerror(-reply.error))
                if reply.sock is not None:
                    found.append(reply.sock)
                    if len(found) > _MAX_SOCKETS:
                        raise sockdiag.DiagWireError(f"more than {_MAX_SOCKETS} sockets in one dump")

    def destroy(self, sock: sockdiag.DiagSocket) -> int:
        """0, or the errno the kernel answered (ENOENT: the socket closed meanwhile)."""
        seq = self._next_seq()
        self._sock.send(sockdiag.destroy_request(sock, seq))
        while True:
            for reply in sockdiag.parse_replies(self._sock.recv(_RECV_BYTES), sock.protocol):
                if reply.seq == seq and reply.error is not None:
                    return -reply.error


def _end_sockets(addresses: frozenset[Address], errors: list[str]) -> int:
    ended = 0
    try:
        diag = _DiagSocket()
    except OSError as err:
        errors.append(f"sockets: cannot open NETLINK_SOCK_DIAG: {err.strerror or err}")
        return 0
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            for protocol, states in ((socket.IPPROTO_TCP, sockdiag.state_mask(sockdiag.TCP_ENDABLE)),
                                     (socket.IPPROTO_UDP, sockdiag.state_mask([sockdiag.TCP_ESTABLISHED]))):
                try:
                    listed = diag.dump(family, protocol, states)
                except (OSError, sockdiag.DiagWireError) as err:
                    errors.append(f"sockets: listing {_proto(protocol)}/{_family(family)}: {_text(err)}")
                    continue
                for sock in sockdiag.to_end(listed, addresses):
                    code = diag.destroy(sock)
                    if code == 0:
                        ended += 1
                    elif code != errno.ENOENT:
                        errors.append(f"sockets: ending {_proto(protocol)} {sock.id.local}:{sock.id.sport}"
                                      f" -> {sock.id.remote}:{sock.id.dport}: {os.strerror(code)}")
    except (OSError, sockdiag.DiagWireError) as err:
        errors.append(f"sockets: {_text(err)}")
    finally:
        diag.close()
    return ended


def _parsed(text: object) -> Address | None:
    try:
        return ipaddress.ip_address(str(text)) if text else None
    except ValueError:
        return None


async def _end_conntrack(addresses: frozenset[Address], errors: list[str]) -> int:
    try:
        from pyroute2.conntrack import AsyncConntrack
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as err:  # a pyroute2 without conntrack: the sockets are still ended
        errors.append(f"conntrack: {err}")
        return 0
    deleted = 0
    try:
        ct = AsyncConntrack()
    except OSError as err:
        errors.append(f"conntrack: cannot open nfnetlink: {_text(err)}")
        return 0
    try:
        doomed = []
        async for entry in await ct.dump_entries():
            if conntrack_to_end(_parsed(entry.tuple_orig.saddr), _parsed(entry.tuple_reply.daddr), addresses):
                doomed.append(entry)
        for entry in doomed:
            try:
                await ct.delete(entry)
                deleted += 1
            except NetlinkError as err:
                if err.code != errno.ENOENT:  # expired meanwhile
                    errors.append(f"conntrack: deleting {entry.tuple_orig.saddr} -> {entry.tuple_orig.daddr}: {err}")
    except (NetlinkError, OSError) as err:
        errors.append(f"conntrack: {_text(err)}")
    finally:
        ct.close()
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
    flows = await _end_conntrack(wanted, errors)
    return SessionsEnded(ifname, sockets, flows, time.monotonic() - started, tuple(errors))


def _proto(protocol: int) -> str:
    return "tcp" if protocol == socket.IPPROTO_TCP else "udp"


def _family(family: int) -> str:
    return "ipv4" if family == socket.AF_INET else "ipv6"


def _text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
