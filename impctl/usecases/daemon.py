"""`impctl daemon`: keep the gateway connected to its cloud, failing over in about a second.

One asyncio loop, no polling. Everything that happens arrives in one inbox:

* netlink events (`impctl.backends.netwatch`): a carrier loss 1-4 ms after it
  happens; address and route changes make the daemon re-read that uplink;
* NetworkManager signals (device state, devices added/removed, NM itself
  starting or stopping) and the loss of the D-Bus connection;
* probe results: the active uplink is probed periodically (a silent upstream
  loss), standbys sparingly, a new primary once to verify it;
* stop and reload requests (SIGTERM, SIGHUP: the CLI wires them).

Between events the loop sleeps until the policy's next deadline (a probe
falling due, a failback hold ending) or the systemd watchdog's next ping.
The decisions are `impctl.model.failover.FailoverPolicy`'s; this module
carries them out:

* a switch is a change of route metrics through NM, without reconnecting:
  the new primary gets `primary_route_metric` and `primary_dns_priority` in
  one Device.Reapply (resolv.conf follows the DNS priority, not the metric),
  the uplink it replaces gets its profile's values back. The new primary is
  verified by a probe bound to it before it is declared connected;
* once the kernel routes through the new primary, the sessions of the uplink
  left are ended (`impctl.model.sessions`): the gateway's own sockets on its
  addresses (SOCK_DESTROY) and the LAN flows NAT'd to it (conntrack), so
  applications reconnect through the new primary at once instead of
  retransmitting with a source address the new ISP drops;
* every event is one log line (logfmt: `event=switch from=eth0 to=wlan0
  reason=... took_ms=...`), the daemon's view goes to the state file
  (`state.daemon`) for `impctl status`, and hook scripts run on a switch.

NetworkManager restarting, or the bus connection dropping, does not stop
the daemon: netlink events and probes carry on, NM calls fail and are
logged, and the daemon reconnects and re-applies the routes it wants.

Hooks: every executable of `[daemon] hooks_dir`, in name order, with
IMPCTL_EVENT (switch | lost | recovered), IMPCTL_FROM / IMPCTL_TO (ifnames),
IMPCTL_FROM_ID / IMPCTL_TO_ID (identifiers), IMPCTL_REASON and, for a
switch, IMPCTL_TOOK_MS; run after the new primary is verified, in the
background, 30 s at most each.

Probe traffic per uplink and day (bytes counted on the lab's uplink; a real
cloud's certificate chain makes the TLS figure larger): a periodic or
standby probe (DNS + TCP connect + close, no TLS) is 574 B, a verification
probe (with the TLS handshake) 3055 B. With the default [daemon] settings:

    active Ethernet/WiFi, every 2 s     43 200 probes  ~24.8 MB/day
    active cellular, every 60 s          1 440 probes  ~0.8 MB/day
    standby Ethernet/WiFi, every 60 s    1 440 probes  ~0.8 MB/day
    standby cellular, every 900 s           96 probes  ~55 kB/day

plus one verification probe per switch. A down uplink sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from impctl.model.config import Config
from impctl.model.errors import ConfigError, ImpctlError, ServiceUnavailable
from impctl.model.events import IPChanged, LinkChanged, LinkRemoved, NetEvent, NMSignal, Resync
from impctl.model.failover import (
    Action,
    Connected,
    FailoverPolicy,
    HealthChange,
    Lost,
    Phase,
    ProbeRequest,
    Purpose,
    Switch,
    UplinkSpec,
    pinned_uplink,
    plan_uplinks,
)
from impctl.model.inventory import DeviceInfo, NMDeviceState
from impctl.model.netfacts import Counters, DefaultRoute, IPv4Facts, LinkState, Priority, kernel_primary
from impctl.model.probe import InterfaceProbe
from impctl.model.record import record
from impctl.model.sessions import end_on_switch
from impctl.model.state import CurrentUplink, State, daemon_view_from_json
from impctl.usecases.metrics import DaemonMetrics, MetricsExport, serving
from impctl.usecases.ports import EndSessions, GatewayLock
from impctl.usecases.probe import ProbeProxy
from impctl.usecases.resolver import WAIT_S as RESOLVER_WAIT_S
from impctl.usecases.resolver import wait_resolver

# Reconnecting to the bus / NM: first retry after this, doubling up to the max.
RECONNECT_FIRST_S = 0.25
RECONNECT_MAX_S = 5.0
# The daemon's view is written at most this often (unless a switch happened).
PUBLISH_MIN_INTERVAL_S = 1.0
# With nothing changing, the view is still rewritten this often (updated_at, last probe
# times): a write is an fsync, and every probe of an idle gateway would wear its flash.
PUBLISH_IDLE_INTERVAL_S = 60.0
# After a switch, the view is written this much later (the verification is usually back by then).
SWITCH_PUBLISH_DELAY_S = 0.2
# Waiting for NetworkManager's D-Bus calls on the hot path.
NM_CALL_TIMEOUT_S = 5.0
# NM syncs the kernel's routes shortly after Reapply returns: wait this long at most.
KERNEL_ROUTE_TIMEOUT_S = 2.0
# While an impctl command holds the gateway, a pending switch is tried again this often.
GATEWAY_RETRY_S = 0.25
# After netlink failed to answer, an uplink's facts are read again this much later.
NETLINK_RETRY_S = 0.5
# Addresses remembered per uplink for ending its sessions (an uplink has one or two).
MAX_SEEN_ADDRESSES = 16



# ---------------------------------------------------------------- what the daemon is given


class Network(Protocol):
    """NetworkManager for the daemon (impctl.backends.nm.NMClient)."""

    def set_config(self, config: Config) -> None: ...

    async def devices(self) -> list[DeviceInfo]: ...

    async def set_priority(self, device: DeviceInfo, priority: Priority) -> None: ...

    async def profile_priority(self, device: DeviceInfo) -> Priority: ...

    def signals(self, emit: Callable[[NMSignal], None]) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def disconnected(self) -> None: ...

    def close(self) -> None: ...


class Links(Protocol):
    async def link_state(self, ifname: str) -> LinkState: ...

    async def ipv4(self, ifname: str) -> IPv4Facts: ...


class Notifier(Protocol):
    watchdog_s: float | None

    def ready(self, status: str | None = None) -> bool: ...

    def watchdog(self) -> bool: ...

    def stopping(self, status: str | None = None) -> bool: ...

    def reloading(self) -> bool: ...

    def status(self, text: str) -> bool: ...


ProbeFn = Callable[[DeviceInfo, Config, ProbeProxy | None, float], Awaitable[InterfaceProbe]]
"""probe_interface with its backends bound: (device, config, proxy, deadline) -> result."""
WatchFn = Callable[[Callable[[NetEvent], None]], contextlib.AbstractAsyncContextManager[Any]]
HookFn = Callable[[str, Mapping[str, str], Callable[..., None]], Awaitable[None]]
"""(hooks_dir, environment, log(event, **fields)) -> runs every executable of the directory
(impctl.backends.hooks.run_hook_dir)."""


@dataclass
class Deps:
    connect_network: Callable[[Config], Awaitable[Network]]
    links: Links
    routes: Callable[[], Awaitable[list[DefaultRoute]]]
    watch: WatchFn
    probe: ProbeFn
    notifier: Notifier
    load_config: Callable[[], Config]
    load_state: Callable[[], State]
    # Applies a change to the state file (locked read-modify-write).
    update_state: Callable[[Callable[[State], None]], None]
    proxies: Callable[[State, Sequence[DeviceInfo]], dict[str, ProbeProxy]]
    run_hooks: HookFn
    log: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    # connectwith/connect/disconnect hold it while they change the gateway; the daemon's
    # switches wait for them. None: nothing else changes this gateway (tests of the loop).
    gateway: GatewayLock | None = None
    # None: the daemon ends no sessions (tests of the loop without root).
    end_sessions: EndSessions | None = None
    # The system resolver's servers in order (impctl.backends.resolvconf); None: not waited for.
    resolver: Callable[[], Sequence[str]] | None = None
    # Fleet metrics (impctl.usecases.metrics): the exporter, made only if a [daemon] metrics_*
    # setting asks for one, and the kernel's byte counters of an interface.
    metrics: Callable[[], MetricsExport] | None = None
    counters: Callable[[str], Awaitable[Counters]] | None = None


# ---------------------------------------------------------------- inbox items


@record
class ProbeDone:
    ifname: str
    purpose: Purpose
    result: InterfaceProbe | None
    error: str | None
    at: float


@record
class IPFacts:
    ifname: str
    ready: bool
    link_up: bool | None
    at: float


@record
class Control:
    what: str  # "stop" | "reload" | "bus-lost" | "routes-applied"
    ifname: str | None = None


Item = NetEvent | NMSignal | ProbeDone | IPFacts | Control


def logfmt(event: str, **fields: object) -> str:
    """One journal-friendly line: `event=switch from=eth0 to=wlan0 reason="..."`.

    A value with a line break (an error message from a library) keeps to the one line: `\\n`.
    """
    parts = [f"event={event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = (f"{value:.1f}" if abs(value) >= 1 else f"{value:.3f}") if isinstance(value, float) else str(value)
        if text == "" or any(c in text for c in ' "=\\\n\r'):
            text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
            text = f'"{text}"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class Coalescer:
    """Background work that is asked for in bursts: "busy, run again".

    `request()` starts `work` unless it is running; asked while it runs, it runs
    once more when it is done, however often it was asked meanwhile. For work
    that acts on the latest facts (NM's device list, the route metrics the
    policy wants, one uplink's addresses): a burst of requests costs at most
    two runs, and the last one starts after the last request. `work` handles
    its own errors; its task comes from `spawn`, so whoever owns the tasks
    cancels it at shutdown.
    """

    def __init__(self, work: Callable[[], Awaitable[None]],
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]) -> None:
        self._work = work
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self._again = False

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def request(self) -> None:
        if self.busy:
            self._again = True
        else:
            self._task = self._spawn(self._run())

    async def _run(self) -> None:
        again = True
        while again:
            self._again = False
            await self._work()
            again = self._again


def ip_ready(facts: IPv4Facts) -> bool:
    return bool(facts.addresses) and facts.gateway is not None and not facts.default_route_linkdown


# ---------------------------------------------------------------- the daemon


class Daemon:
    def __init__(self, deps: Deps) -> None:
        self.d = deps
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self.config, self.state = self._load()
        self.network: Network | None = None
        self.devices: dict[str, DeviceInfo] = {}
        self.proxies: dict[str, ProbeProxy] = {}
        self.policy = FailoverPolicy(self.config.daemon, [])
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ip_readers: dict[str, Coalescer] = {}
        self._profile_priorities: dict[str, Priority] = {}
        # Every address seen on an uplink since its sessions were last ended: a lost link's
        # addresses are gone from NM and the kernel, but its sockets still use them.
        self._seen_addresses: dict[str, set[str]] = {}
        # Uplinks switched away from, whose sessions end once the kernel routes elsewhere.
        self._leaving: dict[str, str] = {}  # ifname -> the switch's reason
        self._lifted: set[str] = set()  # uplinks the daemon gave the primary metric
        self._routes = Coalescer(self._route_pass, functools.partial(self._spawn, name="routes"))
        self._gateway_busy = False
        self._refresh = Coalescer(self._refresh_devices, functools.partial(self._spawn, name="refresh"))
        self._publish_due = math.inf
        self._last_publish = -math.inf
        self._next_watchdog = math.inf
        self._stopping = False
        self._started_wall = deps.wall()
        self._nm_up = False
        self._signals = contextlib.AsyncExitStack()  # NM's signal subscription
        self._kernel_routes_changed = asyncio.Event()
        self.metrics = DaemonMetrics(deps.metrics, deps.counters, lambda: self.policy, lambda: self.devices,
                                     self.log, self._spawn, deps.clock, deps.wall, self._started_wall)

    # ---- requests from outside (signal handlers) -----------------------------------------

    def request_stop(self) -> None:
        self.inbox.put_nowait(Control("stop"))

    def request_reload(self) -> None:
        self.inbox.put_nowait(Control("reload"))

    def _put(self, item: Item) -> None:
        self.inbox.put_nowait(item)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def log(self, event: str, **fields: object) -> None:
        self.d.log(logfmt(event, **fields))

    # ---- the main loop ---------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; returns the exit status (0 after a clean stop)."""
        self.log("start", pid=os.getpid(), mode=self.state.mode.value,
                 sequence=",".join(self.state.sequence) or "default")
        watchdog = self.d.notifier.watchdog_s
        if watchdog:
            self._next_watchdog = self.d.clock()
        async with self.d.watch(self._put), serving(self.metrics, self.config.daemon):
            try:
                if await self._connect_network(first=True):
                    await self._initial_facts()
                    self._apply(self.policy.start(self.d.clock()))
                    self.d.notifier.ready(self._status_text())
                    self.log("ready", active=self.policy.active, phase=self.policy.phase.value)
                    await self._loop()
                else:  # stopped before NetworkManager ever answered
                    self.d.notifier.stopping("stopping")
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._publish(final=True)
                await self._unsubscribe()
                if self.network is not None:
                    self.network.close()
        self.log("stopped")
        return 0

    async def _loop(self) -> None:
        while not self._stopping:
            now = self.d.clock()
            self._start_probes(now)
            if now >= self._next_watchdog:
                self.d.notifier.watchdog()
                assert self.d.notifier.watchdog_s is not None
                self._next_watchdog = now + self.d.notifier.watchdog_s / 2
            if now >= self._publish_due:
                self._publish()
            deadline = min(self.policy.next_deadline(now), self._next_watchdog, self._publish_due)
            timeout = None if deadline == math.inf else max(0.0, deadline - self.d.clock())
            try:
                item = await asyncio.wait_for(self.inbox.get(), timeout)
            except TimeoutError:
                self._apply(self.policy.decide(self.d.clock()))
                continue
            await self._handle(item)
            # Drain what arrived meanwhile before sleeping again (a burst of route events).
            while not self.inbox.empty() and not self._stopping:
                await self._handle(self.inbox.get_nowait())

    async def _handle(self, item: Item) -> None:
        if isinstance(item, LinkChanged):
            if item.ifname in self.policy.uplinks:
                self.log("link", ifname=item.ifname, state="up" if item.up else "down")
                self._apply(self.policy.on_link(item.ifname, item.up, item.at))
                self._refresh_ip(item.ifname)
        elif isinstance(item, IPChanged):
            self._kernel_routes_changed.set()
            if item.ifname in self.policy.uplinks:
                self._refresh_ip(item.ifname)
        elif isinstance(item, IPFacts):
            if item.link_up is not None:
                self._apply(self.policy.on_link(item.ifname, item.link_up, item.at))
            self._apply(self.policy.on_ip(item.ifname, item.ready, item.at))
        elif isinstance(item, LinkRemoved):
            if item.ifname in self.policy.uplinks:
                self._apply(self.policy.on_link(item.ifname, False, item.at))
                self._want_refresh()
        elif isinstance(item, Resync):
            self.log("resync", reason=item.reason)
            for name in self.policy.uplinks:
                self._refresh_ip(name)
        elif isinstance(item, ProbeDone):
            self._probe_done(item)
        elif isinstance(item, NMSignal):
            self._nm_signal(item)
        elif isinstance(item, Control):
            await self._control(item)

    # ---- actions ------------------------------------------------------------------------------

    def _apply(self, actions: Sequence[Action]) -> None:
        self.metrics.tally.on_actions(actions, self.d.clock())
        for action in actions:
            if isinstance(action, Switch):
                since = self.d.clock() - action.cause_at
                self.log("switch", **{"from": action.from_ifname, "to": action.to_ifname},
                         reason=action.reason, since_cause_ms=round(since * 1000, 1))
                self._leave(action)
                # Once they are in place, the policy hears of it (routes-applied):
                # the verification waits for that.
                self._routes.request()
                # Off the hot path: the state file is written (fsync) once the switch settled.
                self._publish_soon(SWITCH_PUBLISH_DELAY_S)
            elif isinstance(action, Connected):
                self.log("connected", ifname=action.ifname, **{"from": action.from_ifname},
                         reason=action.reason, took_ms=round(action.took_s * 1000, 1))
                self.d.notifier.status(self._status_text())
                self._set_current(action.ifname)
                self._publish_soon(0.0)
                event = "switch" if action.from_ifname else ("recovered" if action.reason == "recovered" else None)
                if event is not None:
                    self._hooks(event, action.from_ifname, action.ifname, action.reason,
                                took_ms=round(action.took_s * 1000, 1))
            elif isinstance(action, Lost):
                self.log("lost", ifname=action.ifname, reason=action.reason)
                self.d.notifier.status(self._status_text())
                self._publish_soon(0.0)
                self._hooks("lost", action.ifname, None, action.reason)
            elif isinstance(action, HealthChange):
                self.log("health", ifname=action.ifname, old=action.old.value, new=action.new.value,
                         reason=action.reason)
                self._publish_soon(PUBLISH_MIN_INTERVAL_S)

    def _status_text(self) -> str:
        p = self.policy
        if p.phase == Phase.LOST:
            return f"lost: {p.lost_reason}"
        return f"{p.phase.value} via {p.active or 'nothing'} ({self.state.mode.value})"

    def _hooks(self, event: str, from_ifname: str | None, to_ifname: str | None, reason: str,
               took_ms: float | None = None) -> None:
        hooks_dir = self.config.daemon.hooks_dir
        if not hooks_dir:
            return
        env = {
            "IMPCTL_EVENT": event,
            "IMPCTL_FROM": from_ifname or "",
            "IMPCTL_TO": to_ifname or "",
            "IMPCTL_REASON": reason,
        }
        for key, name in (("IMPCTL_FROM_ID", from_ifname), ("IMPCTL_TO_ID", to_ifname)):
            u = self.policy.uplinks.get(name or "")
            env[key] = u.spec.identifier if u else ""
        if took_ms is not None:
            env["IMPCTL_TOOK_MS"] = str(took_ms)
        self._spawn(self.d.run_hooks(hooks_dir, env, self.log), "hooks")

    # ---- probes ---------------------------------------------------------------------------------

    def _start_probes(self, now: float) -> None:
        for req in self.policy.due_probes(now):
            device = self.devices.get(req.ifname)
            if device is None:
                continue
            self.policy.probe_started(req.ifname, now, req.purpose)
            self._spawn(self._probe(device, req), f"probe-{req.ifname}")

    def _probe_budget(self, req: ProbeRequest, device: DeviceInfo) -> float:
        s = self.config.daemon
        total = self.config.probe.total_timeout_s
        if req.purpose == Purpose.LIVENESS:
            # A periodic probe must end before the next one falls due, so that
            # probe_failures of them fit in about one more interval.
            interval = s.cell_probe_interval_s if device.iface_class == "cell" else s.probe_interval_s
            return min(total, interval / max(1, s.probe_failures))
        return total

    async def _probe(self, device: DeviceInfo, req: ProbeRequest) -> None:
        config = self.config
        if req.purpose != Purpose.VERIFY and not config.daemon.liveness_tls:
            # Reaching the cloud's port proves the path; the handshake costs 5x the bytes
            # (lab: 574 B for DNS+TCP, 3055 B with TLS). A new primary gets the full check.
            config = dataclasses.replace(config, cloud=dataclasses.replace(config.cloud, tls=False))
        budget = self._probe_budget(req, device)
        result: InterfaceProbe | None = None
        error: str | None = None
        try:
            result = await self.d.probe(device, config, self.proxies.get(device.ifname),
                                        time.monotonic() + budget)
        except asyncio.CancelledError:
            raise
        except ImpctlError as err:
            error = err.message
        except Exception as err:  # a bug in a probe must not stop the daemon
            error = f"{type(err).__name__}: {err}"
        self._put(ProbeDone(device.ifname, req.purpose, result, error, self.d.clock()))

    def _probe_done(self, done: ProbeDone) -> None:
        ok = done.result is not None and done.result.connected
        code = int(done.result.code) if done.result is not None else None
        reason = done.result.reason if done.result is not None else done.error
        if not ok or done.purpose != Purpose.LIVENESS:
            self.log("probe", ifname=done.ifname, purpose=done.purpose.value, ok=str(ok).lower(),
                     code=done.result.code_name if done.result else None, reason=reason,
                     ms=round(done.result.duration_ms, 1) if done.result else None)
        self.metrics.tally.on_probe(done.ifname, done.purpose, done.result, done.at)
        u = self.policy.uplinks.get(done.ifname)
        before = (u.failures, u.last_ok, u.last_code, u.last_reason) if u else None
        self._apply(self.policy.on_probe(done.ifname, ok, done.at, code=code, reason=reason,
                                         purpose=done.purpose))
        if u is None or before != (u.failures, u.last_ok, u.last_code, u.last_reason):
            self._publish_soon(PUBLISH_MIN_INTERVAL_S)
        else:
            self._publish_soon(PUBLISH_IDLE_INTERVAL_S)

    # ---- netlink facts ----------------------------------------------------------------------------

    def _refresh_ip(self, ifname: str) -> None:
        # A read under way may have missed this change: then it reads once more.
        reader = self._ip_readers.get(ifname)
        if reader is None:
            reader = Coalescer(functools.partial(self._read_ip, ifname),
                               functools.partial(self._spawn, name=f"ip-{ifname}"))
            self._ip_readers[ifname] = reader
        reader.request()

    async def _read_ip(self, ifname: str) -> None:
        # Let the rest of a burst of address/route messages arrive first.
        await asyncio.sleep(0)
        try:
            link, facts = await asyncio.gather(self.d.links.link_state(ifname), self.d.links.ipv4(ifname))
            self._remember_addresses(ifname, facts.addresses)
            item = IPFacts(ifname, ip_ready(facts), link.admin_up and link.carrier, self.d.clock())
        except ServiceUnavailable as err:
            # Netlink did not answer: the facts are unknown, not bad. Read again shortly
            # instead of calling a working uplink down.
            self.log("netlink-error", ifname=ifname, reason=err.message)
            asyncio.get_running_loop().call_later(NETLINK_RETRY_S, self._refresh_ip, ifname)
            return
        except ImpctlError:
            item = IPFacts(ifname, False, False, self.d.clock())
        self._put(item)

    async def _initial_facts(self) -> None:
        now = self.d.clock()
        for name in list(self.policy.uplinks):
            try:
                link, facts = await asyncio.gather(self.d.links.link_state(name), self.d.links.ipv4(name))
            except ImpctlError:
                self.policy.on_link(name, False, now)
                self.policy.on_ip(name, False, now)
                continue
            self.policy.on_link(name, link.admin_up and link.carrier, now)
            self.policy.on_ip(name, ip_ready(facts), now)

    # ---- NetworkManager ----------------------------------------------------------------------------

    async def _connect_network(self, *, first: bool) -> bool:
        """Connect to the bus and NM, retrying until it works (True) or a stop is requested."""
        delay = RECONNECT_FIRST_S
        while True:
            try:
                network = await self.d.connect_network(self.config)
                devices = await network.devices()
                break
            except ImpctlError as err:
                if first:
                    self.d.notifier.status(f"waiting for NetworkManager: {err.message}")
                self.log("nm-unavailable", reason=err.message, retry_s=delay)
                if await self._stop_requested_within(delay):
                    self._stopping = True
                    return False
                delay = min(delay * 2, RECONNECT_MAX_S)
        await self._adopt(network, devices)
        if not first:
            self.log("nm-reconnected", devices=len(devices))
        return True

    async def _adopt(self, network: Network, devices: list[DeviceInfo]) -> None:
        """Work through a (new) connection to NM: its signals, the bus watch, its devices."""
        self.network = network
        self._nm_up = True
        await self._signals.enter_async_context(network.signals(self._put))
        self._spawn(self._watch_bus(network), "bus-watch")
        self._adopt_strays(devices)
        await self._set_devices(devices)

    def _adopt_strays(self, devices: list[DeviceInfo]) -> None:
        """Uplinks left at the primary metric by an earlier daemon (a restart, a watchdog kill).

        Counted as lifted by this one, so that the route pass gives them their profile's
        metric back unless they are its choice: left at the primary metric, one would tie
        with the new primary, and the kernel keeps the old route.
        """
        metric = self.config.daemon.primary_route_metric
        for device in devices:
            if device.connected and device.route_metric in (metric, metric - 1):
                self._lifted.add(device.ifname)

    async def _stop_requested_within(self, seconds: float) -> bool:
        """Sleep, but return True at once if a stop arrives (other items are kept)."""
        end = self.d.clock() + seconds
        kept: list[Item] = []
        stop = False
        while (left := end - self.d.clock()) > 0:
            try:
                item = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                break
            if isinstance(item, Control) and item.what == "stop":
                stop = True
                break
            kept.append(item)
        for item in kept:
            self.inbox.put_nowait(item)
        return stop

    async def _watch_bus(self, network: Network) -> None:
        await network.disconnected()
        if network is self.network and not self._stopping:
            self._put(Control("bus-lost"))

    def _nm_signal(self, sig: NMSignal) -> None:
        if sig.kind == "nm-stopped":
            self._nm_up = False
            self.log("nm-stopped")
        elif sig.kind == "nm-started":
            self._nm_up = True
            self.log("nm-started")
            # A restarted NM re-reads its profiles: whatever metric the daemon set is
            # forgotten (or left behind as a stray route). Apply the choice again.
            self._lifted.clear()
            self._want_refresh()
        elif sig.kind == "devices-changed":
            self._want_refresh()
        elif sig.kind == "device-state":
            activated = int(NMDeviceState.ACTIVATED)
            if activated in (sig.new_state, sig.old_state):
                # (Re)activated: NM applied the profile's metric again; deactivated: gone.
                self._want_refresh()

    def _want_refresh(self) -> None:
        if not self._nm_up:
            return  # NM is stopping or gone: its half-empty device list is no news
        self._refresh.request()

    async def _refresh_devices(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            network = self.network
            if network is None or not self._nm_up:
                return
            try:
                devices = await network.devices()
            except ImpctlError as err:
                # NM just (re)started answers with errors until it has set up its
                # objects: try again, backing off, as long as NM is there.
                self.log("nm-error", doing="reading devices", reason=err.message, retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            await self._set_devices(devices)
            return

    async def _set_devices(self, devices: list[DeviceInfo]) -> None:
        """New facts from NM: the plan may change, and the routes may need re-applying."""
        self.devices = {d.ifname: d for d in devices}
        for device in devices:
            self._remember_addresses(device.ifname, device.addresses)
        try:
            self.proxies = self.d.proxies(self.state, devices)
        except ImpctlError as err:
            self.log("config-error", reason=err.message)
            self.proxies = {}
        uplinks, manual = self._plan(devices)
        if [u.ifname for u in uplinks] != self.policy.order or manual != self.policy.manual:
            known = set(self.policy.uplinks)
            self.policy.set_uplinks(uplinks, manual=manual)
            self.log("plan", mode=self.state.mode.value,
                     order=",".join(u.ifname for u in uplinks) or "none")
            for spec in uplinks:
                if spec.ifname not in known:
                    self._refresh_ip(spec.ifname)
            for name in [n for n, r in self._ip_readers.items() if n not in self.policy.uplinks and not r.busy]:
                del self._ip_readers[name]  # gone for good (a modem's wwan1 is a new name)
            self._apply(self.policy.decide(self.d.clock()))
        # A device NM (re)activated has its profile's metric again.
        for name in list(self._lifted):
            dev = self.devices.get(name)
            if dev is None or dev.route_metric != self.config.daemon.primary_route_metric:
                self._lifted.discard(name)
        self._routes.request()

    def _plan(self, devices: list[DeviceInfo]) -> tuple[list[UplinkSpec], bool]:
        if self.state.pinned:
            spec = pinned_uplink(devices, self.state.pinned.interface)
            return ([spec] if spec else []), True
        return plan_uplinks(devices, self.state.sequence), False

    # ---- routes -------------------------------------------------------------------------------------

    async def _route_pass(self) -> None:
        """Make NM's route metrics match the policy's choice (run by the `_routes` coalescer).

        One pass at a time, each towards the latest choice, so a burst of
        switches ends in the right place without queueing stale ones.
        """
        target = self.policy.active
        posted = False

        def moved() -> None:
            nonlocal posted
            if not posted:
                posted = True
                self._put(Control("routes-applied", target))

        gateway = self.d.gateway
        with gateway.try_hold("daemon switch") if gateway else contextlib.nullcontext(True) as held:
            if not held:
                # An impctl command is changing the gateway: switching now would fight it.
                # Its outcome (a new pin, a new primary) reaches the policy as NM events.
                if not self._gateway_busy:
                    self._gateway_busy = True
                    self.log("gateway-busy", ifname=target, reason="another impctl command holds the gateway")
                asyncio.get_running_loop().call_later(GATEWAY_RETRY_S, self._routes.request)
                return
            if self._gateway_busy:
                self._gateway_busy = False
                self.log("gateway-free", ifname=target)
            try:
                await self._apply_routes(moved)
            except Exception as err:  # a bug here must not stop the daemon, nor hide
                self.log("route-error", ifname=target, reason=f"{type(err).__name__}: {err}")
        moved()

    async def _apply_routes(self, moved: Callable[[], None]) -> None:
        """Give the active uplink the primary metric and the others their own back.

        Without a moment where two uplinks share the lowest metric (the kernel
        would keep the old, perhaps dead, route): the new primary first gets
        one below the primary metric, and as soon as the kernel's lowest
        default route goes through it (NM syncs routes just after Reapply
        returns) the traffic has moved: `moved()`. Then the old primary gets
        its profile's metric back and the new one the primary metric itself.
        """
        network = self.network
        if network is None or self.policy.manual or self.policy.active is None:
            return  # manual mode: connectwith chose the route; the daemon only reports
        metric = self.config.daemon.primary_route_metric
        active = self.devices.get(self.policy.active)
        started = self.d.clock()
        demote = [name for name in self._lifted if name != self.policy.active]
        if active is None or not active.connected:
            await asyncio.gather(*(self._demote(network, name) for name in demote))
            return
        holds = active.ifname in self._lifted and active.route_metric == metric
        if not holds:
            first = metric - 1 if demote and metric > 1 else metric
            if await self._set_metric(network, active, first, started):
                self._lifted.add(active.ifname)
                if await self._wait_kernel_primary(active.ifname, started):
                    self._sessions_after(active.ifname, started)
                moved()
                await asyncio.gather(*(self._demote(network, name) for name in demote))
                if first != metric:
                    await self._set_metric(network, active, metric, started)
                return
        await asyncio.gather(*(self._demote(network, name) for name in demote))
        if holds and await self._wait_kernel_primary(active.ifname, started):
            self._sessions_after(active.ifname, started)

    async def _set_metric(self, network: Network, device: DeviceInfo, metric: int, started: float) -> bool:
        priority = Priority(metric, self.config.daemon.primary_dns_priority)
        try:
            await asyncio.wait_for(network.set_priority(device, priority), NM_CALL_TIMEOUT_S)
        except (ImpctlError, TimeoutError) as err:
            self.log("route-error", ifname=device.ifname, metric=metric,
                     reason=getattr(err, "message", "NetworkManager did not answer"))
            return False
        self.devices[device.ifname] = dataclasses.replace(device, route_metric=metric)
        self.log("route", ifname=device.ifname, metric=metric, dns_priority=priority.dns_priority, role="primary",
                 ms=round((self.d.clock() - started) * 1000, 1))
        return True

    async def _wait_kernel_primary(self, ifname: str, started: float) -> bool:
        """Until the kernel's lowest default route is through `ifname` (netlink route events).

        False if it still is not after KERNEL_ROUTE_TIMEOUT_S (logged).
        """
        deadline = started + KERNEL_ROUTE_TIMEOUT_S
        while True:
            self._kernel_routes_changed.clear()
            now_primary = kernel_primary(await self.d.routes())
            if now_primary == ifname:
                self.log("kernel-route", ifname=ifname, ms=round((self.d.clock() - started) * 1000, 1))
                return True
            left = deadline - self.d.clock()
            if left <= 0:
                where = (f"the kernel still routes through {now_primary}" if now_primary
                         else "the kernel has no usable default route")
                self.log("route-error", ifname=ifname,
                         reason=f"{where} {KERNEL_ROUTE_TIMEOUT_S:g} s after the change")
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kernel_routes_changed.wait(), left)

    async def _demote(self, network: Network, name: str) -> None:
        dev = self.devices.get(name)
        self._lifted.discard(name)
        if dev is None or not dev.connected:
            return  # deactivated: NM applies the profile's metric when it comes back
        try:
            if name not in self._profile_priorities:
                self._profile_priorities[name] = await network.profile_priority(dev)
            back = self._profile_priorities[name]
            await asyncio.wait_for(network.set_priority(dev, back), NM_CALL_TIMEOUT_S)
            self.devices[name] = dataclasses.replace(
                dev, route_metric=None if back.route_metric < 0 else back.route_metric)
            self.log("route", ifname=name, metric=back.route_metric, dns_priority=back.dns_priority, role="standby")
        except (ImpctlError, TimeoutError) as err:
            self.log("route-error", ifname=name, reason=getattr(err, "message", "NetworkManager did not answer"))

    # ---- sessions -----------------------------------------------------------------------------------

    def _remember_addresses(self, ifname: str, addresses: Sequence[str]) -> None:
        seen = self._seen_addresses.setdefault(ifname, set())
        # Bounded: a DHCP server handing out a new address every minute must not grow this for ever.
        if len(seen) + len(addresses) > MAX_SEEN_ADDRESSES:
            seen.clear()
        seen.update(addresses)

    def _leave(self, switch: Switch) -> None:
        """Note the uplink a switch leaves, if its sessions are to end (`impctl.model.sessions`)."""
        left = switch.from_ifname
        settings = self.config.daemon
        if left is None or left == switch.to_ifname or not settings.end_sessions:
            return
        health = self.policy.uplinks.get(left)
        if end_on_switch(failback=switch.failback, left_class=health.spec.iface_class if health else "",
                         failback_classes=settings.end_sessions_on_failback):
            self._leaving[left] = switch.reason
        else:
            self._leaving.pop(left, None)

    def _sessions_after(self, primary: str, started: float) -> None:
        # Beside the route pass, not in it: waiting for resolv.conf must not delay the switch.
        self._leaving.pop(primary, None)  # switched back before its sessions were ended
        if self._leaving and self.d.end_sessions is not None:
            leaving, self._leaving = self._leaving, {}
            self._spawn(self._end_left_sessions(primary, started, leaving), "sessions")

    async def _end_left_sessions(self, primary: str, started: float, leaving: dict[str, str]) -> None:
        """End the sessions of the uplinks left, now that the kernel routes through `primary`."""
        end = self.d.end_sessions
        if end is None:
            return
        # Applications reconnect at once, the gateway's and (nudged) the LAN's: their lookups
        # must not go to the dead uplink's resolver first (the LAN's go through NM's dnsmasq,
        # which follows resolv.conf). Flows too: see impctl.backends.sessions.end_sessions.
        dns_ms = await self._wait_resolver(primary)
        for name, reason in leaving.items():
            addresses = sorted(self._seen_addresses.get(name, set()))
            ended = await end(name, addresses, self.config.cloud.host)
            record = next((r for r in reversed(self.policy.switches) if r.from_ifname == name), None)
            if record is not None:
                record.sessions_ended = (ended.sockets, ended.conntrack, ended.took_s)
            dev = self.devices.get(name)
            self._seen_addresses[name] = set(dev.addresses if dev else ())
            self.log("sessions-ended", ifname=name, to=primary, sockets=ended.sockets, conntrack=ended.conntrack,
                     nudged=ended.nudged, ms=round(ended.took_s * 1000, 1), dns_wait_ms=dns_ms,
                     lan_dns_wait_ms=ended.lan_dns_ms,
                     since_switch_ms=round((self.d.clock() - started) * 1000, 1), reason=reason)
            for error in ended.errors:
                self.log("sessions-error", ifname=name, reason=error)

    async def _wait_resolver(self, primary: str) -> float | None:
        """Until the system resolver asks `primary`'s servers first; ms waited, None if it never did."""
        device = self.devices.get(primary)
        if self.d.resolver is None or device is None:
            return 0.0
        uplinks_dns = {s for name in self.policy.uplinks if name in self.devices for s in self.devices[name].dns}
        # Switched on meanwhile: these sessions are stranded whatever resolv.conf says.
        waited = await wait_resolver(self.d.resolver, device.dns, uplinks_dns, clock=self.d.clock,
                                     abandon=lambda: self.policy.active != primary)
        if waited is None and self.policy.active == primary:
            self.log("dns-order", ifname=primary,
                     reason=f"resolv.conf does not list {primary}'s servers first {RESOLVER_WAIT_S:g} s"
                            " after the switch")
        return waited

    # ---- control ------------------------------------------------------------------------------------

    async def _control(self, item: Control) -> None:
        if item.what == "stop":
            self._stopping = True
            self.d.notifier.stopping("stopping")
            self.log("stopping")
        elif item.what == "reload":
            await self._reload()
        elif item.what == "routes-applied":
            self._apply(self.policy.routes_applied(item.ifname, self.d.clock()))
        elif item.what == "bus-lost":
            self.log("bus-lost")
            old = self.network
            self.network = None
            self._nm_up = False
            await self._unsubscribe()
            if old is not None:
                old.close()
            self._spawn(self._reconnect(), "reconnect")

    async def _unsubscribe(self) -> None:
        # A dead bus may not answer the unsubscribe: give up after a while, never raise.
        signals, self._signals = self._signals, contextlib.AsyncExitStack()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(signals.aclose(), NM_CALL_TIMEOUT_S)

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._stopping:
            try:
                network = await self.d.connect_network(self.config)
                devices = await network.devices()
            except ImpctlError as err:
                self.log("nm-unavailable", reason=err.message, retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            await self._adopt(network, devices)
            self.log("nm-reconnected", devices=len(devices))
            return

    def _load(self) -> tuple[Config, State]:
        """The config and the state file, or a ConfigError/StateError naming the problem."""
        try:
            return self.d.load_config(), self.d.load_state()
        except ImpctlError:
            raise
        except Exception as err:  # a loader's bug: still one line, never a traceback
            raise ConfigError(f"cannot load the config and state: {type(err).__name__}: {err}") from None

    async def _reload(self) -> None:
        """SIGHUP: new config and state; if either is bad, keep running on the old ones."""
        self.d.notifier.reloading()
        old = (self.config, self.state, self.policy.settings)
        try:
            config, state = self._load()
            self.config, self.state = config, state
            self.policy.set_settings(config.daemon)
            if self.network is not None:
                self.network.set_config(config)
        except Exception as err:
            self.config, self.state = old[0], old[1]
            self.policy.set_settings(old[2])
            if self.network is not None:
                with contextlib.suppress(Exception):
                    self.network.set_config(old[0])
            reason = err.message if isinstance(err, ImpctlError) else f"{type(err).__name__}: {err}"
            self.log("reload-error", reason=reason, kept="the running config")
            self.d.notifier.ready(self._status_text())
            return
        self.log("reload", mode=state.mode.value,
                 sequence=",".join(state.sequence) or "default")
        self._spawn(self.metrics.configure(config.daemon), "metrics")
        self._want_refresh()
        self._apply(self.policy.decide(self.d.clock()))
        self.d.notifier.ready(self._status_text())

    # ---- the state file -----------------------------------------------------------------------------

    def _publish_soon(self, delay: float) -> None:
        now = self.d.clock()
        due = max(now + delay, self._last_publish + (0.0 if delay == 0.0 else PUBLISH_MIN_INTERVAL_S))
        self._publish_due = min(self._publish_due, due)

    def _view(self, *, running: bool) -> dict[str, Any]:
        now = self.d.clock()
        wall_now = self.d.wall()
        view = self.policy.snapshot(now, lambda t: wall_now - (now - t))
        view.update({
            "mode": self.state.mode.value,  # the gateway's, as status and connect say it
            "running": running,
            "pid": os.getpid(),
            "started_at": round(self._started_wall, 3),
            "updated_at": round(wall_now, 3),
            "networkmanager": self._nm_up,
            "settings": {
                "probe_interval_s": self.config.daemon.probe_interval_s,
                "probe_failures": self.config.daemon.probe_failures,
                "failback_hold_s": self.config.daemon.failback_hold_s,
                "min_switch_interval_s": self.config.daemon.min_switch_interval_s,
            },
        })
        return view

    def _publish(self, *, final: bool = False) -> None:
        self._publish_due = math.inf
        self._last_publish = self.d.clock()
        view = self._view(running=not final)

        def change(state: State) -> None:
            state.daemon = daemon_view_from_json(view)

        try:
            self.d.update_state(change)
        except ImpctlError as err:
            self.log("state-error", reason=err.message)
        self.metrics.published(final=final)

    def _set_current(self, ifname: str) -> None:
        if self.policy.manual:
            return  # connectwith set it, with its NIC
        u = self.policy.uplinks.get(ifname)
        if u is None:
            return
        since = self.d.wall()

        def change(state: State) -> None:
            if state.pinned:
                return  # connectwith pinned meanwhile: its current stands
            state.current = CurrentUplink(u.spec.identifier, ifname, u.spec.iface_class, since, by="daemon")

        try:
            self.d.update_state(change)
        except ImpctlError as err:
            self.log("state-error", reason=err.message)


@contextlib.asynccontextmanager
async def no_watch(_emit: Callable[[NetEvent], None]) -> AsyncIterator[None]:
    """A watcher that sees nothing (for tests of the loop without netlink)."""
    yield
