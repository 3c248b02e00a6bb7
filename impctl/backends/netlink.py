"""Kernel facts about one interface over netlink: link, IPv4 and IPv6 addresses,
default gateways, byte counters.

The probe's reads (link, addresses, routes) each go over a NETLINK_ROUTE socket of
their own, with the kernel filtering under strict checking and the few fixed-layout
messages decoded here; counters and the link list go through pyroute2, whose generic
decoder costs milliseconds of CPU per request (the probe is CPU-bound: see
bench/probe_dualstack_bench.py).

Read-only: nothing here changes a link, an address or a route. NetlinkError
(and OSError from the socket) are converted at this edge into project errors;
an interface that does not exist is `NoSuchInterface`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyroute2 import AsyncIPRoute

from impctl.model.errors import NoSuchInterface, ServiceUnavailable
from impctl.model.netfacts import Counters, IPv4Facts, IPv6Facts, LinkState


def _netlink_errors() -> tuple[type[BaseException], ...]:
    """What a netlink request may raise; pyroute2 is imported on first need.

    Importing pyroute2 costs ~0.1 s, a fifth of impctl's start-up, and most
    commands never open a netlink socket. An `except` clause evaluates this
    only when an exception reaches it.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    return (NetlinkError, OSError)

# A netlink request is answered in well under a millisecond; this much means it never will be.
REQUEST_TIMEOUT_S = 2.0
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
RT_SCOPE_UNIVERSE = 0


def _gateway6(routes: list[Any], index: int) -> str | None:
    route = _default_route(routes, index)
    return None if route is None else str(route.get("RTA_GATEWAY") or "::")


def _default_route(routes: list[Any], index: int) -> Any | None:
    """The lowest-metric default route leaving through interface `index`, of any table
    (policy routing may keep uplinks' routes outside main)."""
    best: tuple[int, Any] | None = None
    for r in routes:
        if r["dst_len"] != 0 or r.get("type", RTN_UNICAST) != RTN_UNICAST:
            continue
        if int(_attr(r, "RTA_OIF", r.get("oif", -1))) != index:
            continue
        metric = int(_attr(r, "RTA_PRIORITY", 0))
        if best is None or metric < best[0]:
            best = (metric, r)
    return best[1] if best else None


def _error(err: BaseException, what: str, ifname: str) -> Exception:
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    if code in (errno.ENODEV, errno.ENOENT):
        return NoSuchInterface(f"no interface {ifname!r} in this network namespace")
    return ServiceUnavailable(f"netlink: cannot read {what} of {ifname}: {err}")


async def _collect(reply: Any) -> list[Any]:
    # pyroute2 0.9 answers "get" with a list and "dump" with an async iterator.
    if hasattr(reply, "__aiter__"):
        return [m async for m in reply]
    return list(reply)


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    value = msg.get(name)
    return default if value is None else value


class Netlink:
    """Read-only netlink queries.

    `link_state`, `ipv4` and `ipv6` open a socket per request (~20 us) and need no
    lock, so the concurrent probes of one run and their two families never wait for
    each other. `counters` and `ifnames` use one pyroute2 socket per instance, opened
    on first use (opening one costs ~2 ms of CPU). Requests on it are
    serialised with a lock (each takes well under a millisecond) because
    overlapping dumps on one pyroute2 socket are not safe. The socket belongs
    to the event loop that opened it; on another loop a new one is opened.
    `aclose()` closes it (process exit does too).
    """

    # pyroute2 0.9 leaves the acknowledgement of every "get" in its socket's queue, for
    # ever (about 2 KiB of RSS per request in a daemon that probes every 2 s): a socket
    # is closed after this many requests, and the next request opens a new one.
    REQUESTS_PER_SOCKET = 50

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._requests = 0

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncIPRoute]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._ipr, self._loop, self._lock = None, loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            if self._ipr is None:
                from pyroute2 import AsyncIPRoute

                self._ipr = AsyncIPRoute(strict_check=True)
                self._requests = 0
            try:
                # pyroute2 waits for ever for an answer that never comes; the daemon must not.
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    yield self._ipr
            except TimeoutError:
                await self.aclose()
                raise ServiceUnavailable(f"netlink: no answer within {REQUEST_TIMEOUT_S:g} s") from None
            except _netlink_errors():
                # A socket that failed mid-request may hold stale replies: start afresh.
                await self.aclose()
                raise
            self._requests += 1
            if self._requests >= self.REQUESTS_PER_SOCKET:
                await self.aclose()

    async def aclose(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            with contextlib.suppress(Exception):
                ipr.close()

    async def _link(self, ipr: AsyncIPRoute, ifname: str) -> Any:
        msgs = await _collect(await ipr.link("get", ifname=ifname))
        if not msgs:
            raise NoSuchInterface(f"no interface {ifname!r} in this network namespace")
        return msgs[0]

    async def link_state(self, ifname: str) -> LinkState:
        """Flags, carrier, operstate and kind of the link, read like the addresses below
        (a socket of its own, decoded here): pyroute2's decoding of a whole link message
        and its lock made the probe's link stages 2-5 ms, one after another."""
        if not 0 < len(ifname.encode()) < 16:  # IFNAMSIZ: the kernel would answer EINVAL
            raise NoSuchInterface(f"no interface {ifname!r} in this network namespace")
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                bodies = await _request(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0)
                                        + _rtattr(IFLA_IFNAME, ifname.encode() + b"\0"), dump=False)
        except TimeoutError:
            raise ServiceUnavailable(f"netlink: no answer within {REQUEST_TIMEOUT_S:g} s") from None
        except OSError as err:
            raise _error(err, "the link", ifname) from None
        if not bodies:
            raise NoSuchInterface(f"no interface {ifname!r} in this network namespace")
        body = bodies[0]
        _family, _pad, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
        attrs = _rtattrs(body, _IFINFOMSG.size)
        linkinfo = attrs.get(IFLA_LINKINFO)
        raw_kind = _rtattrs(linkinfo, 0).get(IFLA_INFO_KIND) if linkinfo is not None else None
        kind = raw_kind.rstrip(b"\0").decode(errors="replace") if raw_kind is not None else None
        carrier_attr = attrs.get(IFLA_CARRIER)
        carrier = bool(carrier_attr[0]) if carrier_attr else bool(flags & IFF_LOWER_UP)
        operstate = attrs.get(IFLA_OPERSTATE)
        return LinkState(
            ifname=ifname,
            index=index,
            admin_up=bool(flags & IFF_UP),
            carrier=carrier and bool(flags & IFF_LOWER_UP),
            operstate=_OPERSTATES.get(operstate[0], "UNKNOWN") if operstate else "UNKNOWN",
            kind=kind,
        )

    async def _addresses_and_routes(self, ifname: str, family: int, what: str) -> tuple[int, list[_Msg], list[_Msg]]:
        """The interface's index, and its addresses and (unicast) routes of one family.

        Read over a netlink socket of its own and decoded here, not by pyroute2: its
        generic decoder costs ~1-3 ms of CPU per read (a dual-stack probe of three uplinks
        makes six), the probe's largest CPU cost; these few fixed-layout messages
        decode in microseconds. No lock either: each read has its own socket.
        """
        # The index by ioctl: decoding a whole link message costs ~1 ms of CPU.
        try:
            index = socket.if_nametoindex(ifname)
        except OSError:
            raise NoSuchInterface(f"no interface {ifname!r} in this network namespace") from None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                addrs = await _dump(RTM_GETADDR, struct.pack("=BBBBI", family, 0, 0, 0, index))
                # Only this interface's unicast routes (filtered by the kernel under strict
                # checking): no local, broadcast or multicast route, nor another interface's.
                routes = await _dump(RTM_GETROUTE, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0,
                                                                RTN_UNICAST, 0)
                                     + _rtattr(RTA_OIF, struct.pack("=I", index)))
        except TimeoutError:
            raise ServiceUnavailable(f"netlink: no answer within {REQUEST_TIMEOUT_S:g} s") from None
        except OSError as err:
            raise _error(err, what, ifname) from None
        return index, [_address(m) for m in addrs], [_route(m) for m in routes]

    async def ipv4(self, ifname: str) -> IPv4Facts:
        index, addrs, routes = await self._addresses_and_routes(ifname, socket.AF_INET, "IPv4 addresses and routes")
        addresses: list[str] = []
        for a in addrs:
            if int(a.get("index", -1)) != index:
                continue
            flags = int(_attr(a, "IFA_FLAGS", a.get("flags", 0)))
            if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
                continue
            addr = a.get("IFA_LOCAL") or a.get("IFA_ADDRESS")
            if addr:
                addresses.append(f"{addr}/{a['prefixlen']}")
        route = _default_route(routes, index)
        if route is None:
            return IPv4Facts(addresses=tuple(addresses), gateway=None, default_route_linkdown=False)
        return IPv4Facts(addresses=tuple(addresses),
                         gateway=route.get("RTA_GATEWAY") or "0.0.0.0",  # on-link default: no via
                         default_route_linkdown=bool(int(route.get("flags", 0)) & 0x10))  # RTNH_F_LINKDOWN

    async def ipv6(self, ifname: str) -> IPv6Facts:
        """Global IPv6 addresses and the IPv6 default route through `ifname`."""
        index, addrs, routes = await self._addresses_and_routes(ifname, socket.AF_INET6, "IPv6 addresses and routes")
        mine = [a for a in addrs if int(a.get("index", -1)) == index]
        addresses: list[str] = []
        for a in mine:
            flags = int(_attr(a, "IFA_FLAGS", a.get("flags", 0)))
            if int(a.get("scope", 0)) != RT_SCOPE_UNIVERSE or flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
                continue
            addr = a.get("IFA_ADDRESS") or a.get("IFA_LOCAL")
            if addr:
                addresses.append(f"{addr}/{a['prefixlen']}")
        return IPv6Facts(addresses=tuple(addresses), gateway=_gateway6(routes, index), enabled=bool(mine))

    async def counters(self, ifname: str) -> Counters:
        try:
            async with self._session() as ipr:
                msg = await self._link(ipr, ifname)
        except _netlink_errors() as err:
            raise _error(err, "the counters", ifname) from None
        stats = msg.get("IFLA_STATS64") or msg.get("IFLA_STATS") or {}
        return Counters(
            rx_bytes=int(stats.get("rx_bytes", 0)),
            tx_bytes=int(stats.get("tx_bytes", 0)),
            rx_packets=int(stats.get("rx_packets", 0)),
            tx_packets=int(stats.get("tx_packets", 0)),
        )

    async def ifnames(self) -> list[str]:
        """Every link of this namespace but loopback (for a fallback inventory)."""
        try:
            async with self._session() as ipr:
                msgs = await _collect(await ipr.link("dump"))
        except _netlink_errors() as err:
            raise ServiceUnavailable(f"netlink: cannot list links: {err}") from None
        return [str(m.get("IFLA_IFNAME")) for m in msgs if not int(m["flags"]) & 0x8]  # IFF_LOOPBACK


# ------------------------------------------------- addresses and routes, decoded here

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 4, 5, 6, 15
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_CARRIER = 3, 16, 18, 33
IFLA_INFO_KIND = 1
# RFC 2863 operational states, named as `ip link` and pyroute2 name them.
_OPERSTATES = {0: "UNKNOWN", 1: "NOTPRESENT", 2: "DOWN", 3: "LOWERLAYERDOWN", 4: "TESTING", 5: "DORMANT",
               6: "UP"}
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
_DUMP_ATTEMPTS = 3
_RECV_BUF = 65536
# An edge gateway's interface has a handful of routes; this bounds a runaway dump.
_MAX_MESSAGES = 1_000_000
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_IFINFOMSG = struct.Struct("=BBHiII")
_RTATTR = struct.Struct("=HH")

# A decoded message, keyed as pyroute2 keys its own (what the readers above expect).
_Msg = dict[str, Any]


def _rtattr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _rtattrs(data: bytes, offset: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        attrs.setdefault(kind & _NLA_TYPE_MASK, data[offset + _RTATTR.size:offset + length])
        offset += (length + 3) & ~3
    return attrs


def _ip(family: int, raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return socket.inet_ntop(family, raw)
    except (ValueError, OSError):
        return None  # not an address of the family (a malformed attribute): as if absent


def _u32(raw: bytes | None) -> int | None:
    return struct.unpack("=I", raw[:4])[0] if raw is not None and len(raw) >= 4 else None


def _address(body: bytes) -> _Msg:
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(body)
    attrs = _rtattrs(body, _IFADDRMSG.size)
    return {"family": family, "prefixlen": prefixlen, "flags": flags, "scope": scope, "index": index,
            "IFA_ADDRESS": _ip(family, attrs.get(IFA_ADDRESS)), "IFA_LOCAL": _ip(family, attrs.get(IFA_LOCAL)),
            "IFA_FLAGS": _u32(attrs.get(IFA_FLAGS))}


def _route(body: bytes) -> _Msg:
    family, dst_len, _src_len, _tos, table, _proto, scope, kind, flags = _RTMSG.unpack_from(body)
    attrs = _rtattrs(body, _RTMSG.size)
    table_attr = _u32(attrs.get(RTA_TABLE))
    return {"family": family, "dst_len": dst_len, "table": table if table_attr is None else table_attr,
            "scope": scope, "type": kind, "flags": flags, "RTA_OIF": _u32(attrs.get(RTA_OIF)),
            "RTA_GATEWAY": _ip(family, attrs.get(RTA_GATEWAY)), "RTA_PRIORITY": _u32(attrs.get(RTA_PRIORITY))}


async def _dump(request: int, header: bytes) -> list[bytes]:
    """The bodies of a NETLINK_ROUTE dump's messages, asked under strict checking (the
    kernel applies the request's filters); raises OSError with the kernel's errno.
    A dump the kernel marks interrupted (the table changed meanwhile) is asked again."""
    for _ in range(_DUMP_ATTEMPTS):
        bodies, interrupted = await _exchange(request, header, dump=True)
        if not interrupted:
            break
    return bodies


async def _request(request: int, header: bytes, *, dump: bool) -> list[bytes]:
    bodies, _interrupted = await _exchange(request, header, dump=dump)
    return bodies


async def _exchange(request: int, header: bytes, *, dump: bool) -> tuple[list[bytes], bool]:
    """One request on a socket of its own: a dump's messages up to NLMSG_DONE, or a
    get's one answer; whether the kernel flagged the dump interrupted."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE) as sock:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))
        seq = 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        await loop.sock_sendall(sock, _NLMSGHDR.pack(_NLMSGHDR.size + len(header), request, flags, seq, 0)
                                + header)
        bodies: list[bytes] = []
        interrupted = False
        while True:
            data = await loop.sock_recv(sock, _RECV_BUF)
            if not data:
                raise OSError(errno.EPIPE, "netlink socket closed mid-answer")
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, msg_flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError(errno.EBADMSG, "malformed netlink message")
                body = data[offset + _NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                interrupted = interrupted or bool(msg_flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE:
                    return bodies, interrupted
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return bodies, interrupted
                if kind in (RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE):
                    bodies.append(body)
                    if len(bodies) > _MAX_MESSAGES:
                        raise OSError(errno.E2BIG, f"more than {_MAX_MESSAGES} messages in one dump")
                    if not dump:
                        return bodies, interrupted
