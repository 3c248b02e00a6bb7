"""The kernel's socket-diagnostics wire format (inet_diag over NETLINK_SOCK_DIAG), and which sockets to end.

Pure: bytes in, bytes out. `impctl.backends.sessions` sends these requests.
At a switch away from an uplink, the gateway's own sockets whose local
address belongs to that uplink are ended with SOCK_DESTROY (as Android's
netd does when a network goes away): their packets would otherwise keep
the old source address, which the new uplink's ISP drops (source
validation), and TCP would retransmit for ~15 minutes before the
application hears of it. The kernel answers the application's next call
with ECONNABORTED.

Layouts (linux/inet_diag.h, linux/netlink.h), native byte order except
ports and addresses, which are network order:

    nlmsghdr           u32 len, u16 type, u16 flags, u32 seq, u32 pid        (16)
    inet_diag_sockid   be16 sport, be16 dport, be32 src[4], be32 dst[4],
                       u32 if, u32 cookie[2]                                 (48)
    inet_diag_req_v2   u8 family, u8 protocol, u8 ext, u8 pad, u32 states,
                       inet_diag_sockid                                      (56)
    inet_diag_msg      u8 family, u8 state, u8 timer, u8 retrans,
                       inet_diag_sockid, u32 expires, rqueue, wqueue, uid,
                       inode                                                 (72)
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator

from impctl.model.record import record

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300

_NLMSGHDR = struct.Struct("=IHHII")
_SOCKID = struct.Struct("!HH16s16s")  # ports and addresses: network order
_SOCKID_TAIL = struct.Struct("=I8s")  # if, cookie: native
_REQ_HEAD = struct.Struct("=BBBBI")
_MSG_HEAD = struct.Struct("=BBBB")
_MSG_TAIL = struct.Struct("=IIIII")
SOCKID_LEN = _SOCKID.size + _SOCKID_TAIL.size
REQ_LEN = _REQ_HEAD.size + SOCKID_LEN
MSG_LEN = _MSG_HEAD.size + SOCKID_LEN + _MSG_TAIL.size

# TCP states (include/net/tcp_states.h) worth ending: every state with a peer.
# LISTEN is a server's (it has no peer to lose); TIME_WAIT and CLOSE are done.
TCP_ESTABLISHED = 1
TCP_ENDABLE = (1, 2, 3, 4, 5, 8, 9, 11)  # ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1/2 CLOSE_WAIT LAST_ACK CLOSING
ALL_STATES = 0xFFFFFFFF


def state_mask(states: Iterable[int]) -> int:
    mask = 0
    for s in states:
        mask |= 1 << s
    return mask


@record
class SockId:
    """One socket's identity as the kernel reports it; sent back unchanged to destroy it."""

    family: int
    sport: int
    dport: int
    src: bytes  # 16 bytes; an IPv4 address fills the first 4
    dst: bytes
    bound_ifindex: int  # SO_BINDTODEVICE's interface; 0 for a socket bound to no device
    cookie: bytes  # 8 bytes

    @property
    def local(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return _address(self.family, self.src)

    @property
    def remote(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return _address(self.family, self.dst)


@record
class DiagSocket:
    protocol: int  # IPPROTO_TCP or IPPROTO_UDP (the dump's)
    state: int
    id: SockId


def _address(family: int, raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw[:16])


def _pack_id(sid: SockId) -> bytes:
    return _SOCKID.pack(sid.sport, sid.dport, sid.src, sid.dst) + _SOCKID_TAIL.pack(sid.bound_ifindex, sid.cookie)


_NO_ID = SockId(0, 0, 0, bytes(16), bytes(16), 0, bytes(8))


def _message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags, seq, 0) + payload


def dump_request(family: int, protocol: int, states: int, seq: int) -> bytes:
    """Ask for every socket of `family`/`protocol` in one of `states` (a bit mask)."""
    payload = _REQ_HEAD.pack(family, protocol, 0, 0, states) + _pack_id(_NO_ID)
    return _message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, payload)


def destroy_request(sock: DiagSocket, seq: int) -> bytes:
    """End `sock` (SOCK_DESTROY), acknowledged: the kernel matches the id it dumped, cookie included."""
    payload = _REQ_HEAD.pack(sock.id.family, sock.protocol, 0, 0, ALL_STATES) + _pack_id(sock.id)
    return _message(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq, payload)


class DiagWireError(ValueError):
    """A reply that does not parse: the backend reports it, it never crashes the daemon."""


@record
class Reply:
    """One netlink message of a reply: a socket, an acknowledgement/error, or the end of a dump."""

    seq: int
    sock: DiagSocket | None = None
    error: int | None = None  # 0 is an acknowledgement; otherwise a negative errno
    done: bool = False


def parse_replies(data: bytes, protocol: int) -> Iterator[Reply]:
    """The messages of one recv() buffer (netlink packs several per datagram)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise DiagWireError(f"netlink message of length {length} at offset {offset} of {len(data)}")
        body = data[offset + _NLMSGHDR.size: offset + length]
        if kind == NLMSG_DONE:
            yield Reply(seq, done=True)
        elif kind == NLMSG_ERROR:
            if len(body) < 4:
                raise DiagWireError("netlink error message without its code")
            (code,) = struct.unpack_from("=i", body)
            yield Reply(seq, error=code)
        elif kind == SOCK_DIAG_BY_FAMILY:
            yield Reply(seq, sock=parse_socket(body, protocol))
        offset += (length + 3) & ~3  # NLMSG_ALIGN


def parse_socket(body: bytes, protocol: int) -> DiagSocket:
    if len(body) < MSG_LEN:
        raise DiagWireError(f"inet_diag_msg of {len(body)} bytes, expected {MSG_LEN}")
    family, state, _timer, _retrans = _MSG_HEAD.unpack_from(body)
    sport, dport, src, dst = _SOCKID.unpack_from(body, _MSG_HEAD.size)
    ifindex, cookie = _SOCKID_TAIL.unpack_from(body, _MSG_HEAD.size + _SOCKID.size)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise DiagWireError(f"inet_diag_msg of address family {family}")
    return DiagSocket(protocol, state, SockId(family, sport, dport, src, dst, ifindex, cookie))


def _plain(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # An AF_INET6 socket talking IPv4 reports ::ffff:a.b.c.d.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def local_addresses(cidrs: Iterable[str]) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """"198.18.1.50/24" (as DeviceInfo lists them) -> the addresses alone; unparsable entries are skipped."""
    out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for text in cidrs:
        try:
            out.add(ipaddress.ip_interface(text).ip)
        except ValueError:
            continue
    return frozenset(out)


def to_end(sockets: Iterable[DiagSocket],
           addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> list[DiagSocket]:
    """The sockets to end when the uplink holding `addresses` is left.

    Those whose local address is one of the uplink's, with a peer (TCP in
    an endable state, UDP connected), and not bound to a device: a socket
    bound with SO_BINDTODEVICE (impctl's own probes, an application using
    a standby on purpose) routes through its device whatever the default
    route, so it keeps working and is left alone.
    """
    chosen = []
    for s in sockets:
        if s.id.bound_ifindex != 0 or _plain(s.id.local) not in addresses:
            continue
        if s.protocol == socket.IPPROTO_TCP and s.state not in TCP_ENDABLE:
            continue
        if s.protocol == socket.IPPROTO_UDP and (s.state != TCP_ESTABLISHED or s.id.dport == 0):
            continue
        chosen.append(s)
    return chosen
