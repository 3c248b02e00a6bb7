"""The kernel's conntrack table over nfnetlink (ctnetlink): a dump, and deletes of entries from it.

Pure: bytes in, bytes out; `impctl.backends.sessions` sends them. Parsed by
hand, and only what impctl decides on (the original source and the reply
destination) and what a nudge to a LAN device needs (the original tuple,
the TCP state): a gateway opening ten connections a second has over a thousand
entries (TIME_WAIT lasts 120 s), which a general netlink decoder takes
hundreds of milliseconds to turn into objects. A delete sends back the
entry's original tuple (and zone) as the dump gave them, byte for byte.

    nlmsghdr   u32 len, u16 type, u16 flags, u32 seq, u32 pid            (16)
    nfgenmsg   u8 family, u8 version, be16 res_id                         (4)
    nlattr     u16 len, u16 type (0x8000: nested), value, padded to 4
    CTA_TUPLE_ORIG / CTA_TUPLE_REPLY > CTA_TUPLE_IP > CTA_IP_V4_SRC/DST, CTA_IP_V6_SRC/DST
                                     > CTA_TUPLE_PROTO > CTA_PROTO_NUM, CTA_PROTO_SRC/DST_PORT
    CTA_PROTOINFO > CTA_PROTOINFO_TCP > CTA_PROTOINFO_TCP_STATE
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator

from impctl.model.record import record

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0  # what a dump answers with
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
MSG_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
MSG_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
MSG_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_PROTOINFO = 4
CTA_ZONE = 18
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
TCP_CONNTRACK_ESTABLISHED = 3  # enum tcp_conntrack (linux/netfilter/nf_conntrack_tcp.h)
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class CtWireError(ValueError):
    """A reply that does not parse: the backend reports it, it never crashes the daemon."""


@record
class Entry:
    family: int
    orig_src: Address | None
    reply_dst: Address | None
    orig_tuple: bytes  # the CTA_TUPLE_ORIG attribute, header included, as dumped
    zone: bytes  # the CTA_ZONE attribute as dumped, or b""
    # The original direction's destination and transport: a LAN device's flow is
    # (device, sport) -> (orig_dst, dport); what a nudge to the device needs.
    orig_dst: Address | None = None
    proto: int | None = None
    sport: int | None = None
    dport: int | None = None
    tcp_state: int | None = None  # enum tcp_conntrack, for TCP entries

    @property
    def tcp_established(self) -> bool:
        return self.proto == socket.IPPROTO_TCP and self.tcp_state == TCP_CONNTRACK_ESTABLISHED


@record
class Reply:
    seq: int
    entry: Entry | None = None
    error: int | None = None  # 0: acknowledged; else a negative errno
    done: bool = False


def _message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags, seq, 0) + payload


def dump_request(family: int, seq: int) -> bytes:
    return _message(MSG_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, _NFGENMSG.pack(family, 0, 0))


def delete_request(entry: Entry, seq: int) -> bytes:
    payload = _NFGENMSG.pack(entry.family, 0, 0) + _padded(entry.orig_tuple) + _padded(entry.zone)
    return _message(MSG_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, payload)


def _padded(attr: bytes) -> bytes:
    return attr + bytes(-len(attr) % 4)


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, value start, attribute end) of each attribute in data[start:end]."""
    offset = start
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            raise CtWireError(f"netlink attribute of length {length} at offset {offset}")
        yield kind & NLA_TYPE_MASK, offset + _NLATTR.size, offset + length
        offset += (length + 3) & ~3


def _tuple_address(data: bytes, start: int, end: int, want: tuple[int, int]) -> Address | None:
    for kind, vstart, vend in _attrs(data, start, end):
        if kind != CTA_TUPLE_IP:
            continue
        for ip_kind, istart, iend in _attrs(data, vstart, vend):
            if ip_kind == want[0] and iend - istart == 4:
                return ipaddress.IPv4Address(data[istart:iend])
            if ip_kind == want[1] and iend - istart == 16:
                return ipaddress.IPv6Address(data[istart:iend])
    return None


def _tuple_proto(data: bytes, start: int, end: int) -> tuple[int | None, int | None, int | None]:
    """(protocol, source port, destination port) of a tuple; ports only for protocols with them."""
    proto = sport = dport = None
    for kind, vstart, vend in _attrs(data, start, end):
        if kind != CTA_TUPLE_PROTO:
            continue
        for p_kind, pstart, pend in _attrs(data, vstart, vend):
            if p_kind == CTA_PROTO_NUM and pend - pstart == 1:
                proto = data[pstart]
            elif p_kind == CTA_PROTO_SRC_PORT and pend - pstart == 2:
                sport = int.from_bytes(data[pstart:pend], "big")
            elif p_kind == CTA_PROTO_DST_PORT and pend - pstart == 2:
                dport = int.from_bytes(data[pstart:pend], "big")
    return proto, sport, dport


def _tcp_state(data: bytes, start: int, end: int) -> int | None:
    for kind, vstart, vend in _attrs(data, start, end):
        if kind != CTA_PROTOINFO_TCP:
            continue
        for t_kind, tstart, tend in _attrs(data, vstart, vend):
            if t_kind == CTA_PROTOINFO_TCP_STATE and tend - tstart == 1:
                return data[tstart]
    return None


def parse_entry(data: bytes, start: int, end: int) -> Entry:
    if end - start < _NFGENMSG.size:
        raise CtWireError("conntrack message without its nfgenmsg")
    family = data[start]
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise CtWireError(f"conntrack entry of address family {family}")
    orig_src = reply_dst = orig_dst = None
    proto = sport = dport = tcp_state = None
    orig_tuple = zone = b""
    for kind, vstart, vend in _attrs(data, start + _NFGENMSG.size, end):
        if kind == CTA_TUPLE_ORIG:
            orig_tuple = data[vstart - _NLATTR.size: vend]
            orig_src = _tuple_address(data, vstart, vend, (CTA_IP_V4_SRC, CTA_IP_V6_SRC))
            orig_dst = _tuple_address(data, vstart, vend, (CTA_IP_V4_DST, CTA_IP_V6_DST))
            proto, sport, dport = _tuple_proto(data, vstart, vend)
        elif kind == CTA_TUPLE_REPLY:
            reply_dst = _tuple_address(data, vstart, vend, (CTA_IP_V4_DST, CTA_IP_V6_DST))
        elif kind == CTA_PROTOINFO:
            tcp_state = _tcp_state(data, vstart, vend)
        elif kind == CTA_ZONE:
            zone = data[vstart - _NLATTR.size: vend]
    if not orig_tuple:
        raise CtWireError("conntrack entry without its original tuple")
    return Entry(family, orig_src, reply_dst, orig_tuple, zone, orig_dst, proto, sport, dport, tcp_state)


def parse_replies(data: bytes) -> Iterator[Reply]:
    """The messages of one recv() buffer."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise CtWireError(f"netlink message of length {length} at offset {offset} of {len(data)}")
        body_start, end = offset + _NLMSGHDR.size, offset + length
        if kind == NLMSG_DONE:
            yield Reply(seq, done=True)
        elif kind == NLMSG_ERROR:
            if end - body_start < 4:
                raise CtWireError("netlink error message without its code")
            (code,) = struct.unpack_from("=i", data, body_start)
            yield Reply(seq, error=code)
        elif kind == MSG_NEW:
            yield Reply(seq, entry=parse_entry(data, body_start, end))
        offset += (length + 3) & ~3
