"""Netlink events for the daemon: links, IPv4 addresses and routes changing, as they happen.

One rtnetlink socket bound to the link, IPv4 address and IPv4 route
multicast groups, its messages parsed by pyroute2. The kernel sends a link-down 1-4 ms after a
carrier loss, so this is how the daemon learns of a dead uplink long before
any probe or NetworkManager would. Nothing here changes anything: read only.

Events carry `time.monotonic()` of their arrival. Address and route events
only say *that* something changed on an interface (`IPChanged`); the daemon
re-reads that interface's facts, since a burst of four or five route
messages describes one change. When the socket overflows (ENOBUFS: events
were lost) or fails, the watcher reopens it and emits `Resync`, so the
caller re-reads everything instead of trusting a stale picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from impctl.model.events import IPChanged, LinkChanged, LinkRemoved, NetEvent, Resync
from impctl.model.netfacts import DefaultRoute

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
# After a failure, wait this long before reopening (a failing socket must not spin).
REOPEN_DELAY_S = 0.2
RCVBUF_BYTES = 1 << 20
RECV_BYTES = 1 << 16
RT_TABLE_MAIN = 254
RTNH_F_LINKDOWN = 0x10


def _link_up(flags: int) -> bool:
    return bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)


class NetlinkWatcher:
    """Runs until cancelled, calling `emit` for every event (from the event loop, never blocking).

    A plain rtnetlink socket read with `loop.add_reader` and parsed with
    pyroute2's marshal: no reader task or async generator left behind
    when the daemon stops.
    """

    def __init__(self, emit: Callable[[NetEvent], None]) -> None:
        self._emit = emit
        self._names: dict[int, str] = {}
        self._link_up: dict[str, bool] = {}
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl  # only the daemon needs pyroute2 here

        self._marshal = MarshalRtnl()

    def ifname(self, index: int) -> str | None:
        return self._names.get(index)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            failed: asyncio.Future[str] = loop.create_future()
            try:
                sock = self._open()
            except OSError as err:
                self._emit(Resync(f"netlink: cannot subscribe: {err.strerror or err}", time.monotonic()))
                await asyncio.sleep(REOPEN_DELAY_S)
                continue
            try:
                # Subscribed first, then the names read: no link falls in between.
                self._names.update({index: name for index, name in socket.if_nameindex()})
                loop.add_reader(sock.fileno(), self._readable, sock, failed)
                if not first:
                    self._emit(Resync("netlink socket reopened", time.monotonic()))
                first = False
                reason = await failed
            finally:
                loop.remove_reader(sock.fileno())
                sock.close()
            # ENOBUFS: the kernel dropped events for us. Either way the picture is stale.
            self._emit(Resync(reason, time.monotonic()))
            await asyncio.sleep(REOPEN_DELAY_S)

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
        try:
            # Room for a burst (an NM restart re-adds every route) before ENOBUFS.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
        except OSError:
            sock.close()
            raise
        return sock

    def _readable(self, sock: socket.socket, failed: asyncio.Future[str]) -> None:
        now = time.monotonic()
        while True:
            try:
                data = sock.recv(RECV_BYTES)
            except BlockingIOError:
                return
            except OSError as err:
                if not failed.done():
                    failed.set_result(f"netlink: {err.strerror or err}")
                return
            try:
                messages = list(self._marshal.parse(data))
            except Exception as err:  # a message pyroute2 cannot parse must not kill the daemon
                if not failed.done():
                    failed.set_result(f"netlink: unparsable message: {err}")
                return
            for msg in messages:
                self._handle(msg, now)

    def _handle(self, msg: Any, now: float) -> None:
        event = msg.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            index = int(msg.get("index", 0))
            name = msg.get("IFLA_IFNAME") or self._names.get(index)
            if not name:
                return
            name = str(name)
            if event == "RTM_DELLINK":
                self._names.pop(index, None)
                self._link_up.pop(name, None)
                self._emit(LinkRemoved(name, now))
                return
            self._names[index] = name
            up = _link_up(int(msg.get("flags", 0)))
            # NEWLINK also reports statistics and other attribute changes: only
            # a change of the up/carrier state is an event for the daemon.
            if self._link_up.get(name) != up:
                self._link_up[name] = up
                self._emit(LinkChanged(name, index, up, now))
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self._names.get(int(msg.get("index", 0)))
            if name:
                self._emit(IPChanged(name, now))
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            if int(msg.get("dst_len", -1)) != 0:
                return  # only default routes say whether an uplink can carry traffic
            oif = msg.get("RTA_OIF")
            name = self._names.get(int(oif)) if oif is not None else None
            if name:
                self._emit(IPChanged(name, now))


@contextlib.asynccontextmanager
async def watching(emit: Callable[[NetEvent], None]) -> AsyncIterator[NetlinkWatcher]:
    """Run a NetlinkWatcher in a task for the duration of the block."""
    watcher = NetlinkWatcher(emit)
    task = asyncio.create_task(watcher.run(), name="netlink-watch")
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _ignores_linkdown(ifname: str) -> bool:
    """The kernel's rule: conf.all OR conf.<ifname> ignore_routes_with_linkdown."""
    for where in ("all", ifname):
        try:
            if Path(f"/proc/sys/net/ipv4/conf/{where}/ignore_routes_with_linkdown").read_text().strip() == "1":
                return True
        except OSError:
            continue
    return False


async def default_routes() -> list[DefaultRoute]:
    """The IPv4 default routes of the main table, as the kernel has them now."""
    from pyroute2 import AsyncIPRoute  # the dump only; events use the raw socket above

    names = {index: name for index, name in socket.if_nameindex()}
    out: list[DefaultRoute] = []
    try:
        async with AsyncIPRoute() as ipr:
            reply = await ipr.route("dump", family=socket.AF_INET)
            msgs = [m async for m in reply] if hasattr(reply, "__aiter__") else list(reply)
    except OSError:
        return out
    except Exception:  # NetlinkError: an unreadable table is "no routes known"
        return out
    for msg in msgs:
        if int(msg.get("dst_len", -1)) != 0 or int(msg.get("table", 0)) != RT_TABLE_MAIN:
            continue
        oif = msg.get("RTA_OIF")
        if oif is None or int(oif) not in names:
            continue
        name = names[int(oif)]
        linkdown = bool(int(msg.get("flags", 0)) & RTNH_F_LINKDOWN)
        out.append(DefaultRoute(name, int(msg.get("RTA_PRIORITY") or 0), linkdown,
                                linkdown and _ignores_linkdown(name)))
    return out
