"""The daemon's event loop (impctl.usecases.daemon) with fake backends.

The fakes stand in for NetworkManager, netlink and the probe; the loop, the
policy, the route sequencing and the state publishing are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import stat
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from impctl.backends.hooks import run_hook_dir
from impctl.model.codes import ResultCode
from impctl.model.config import Config, DaemonSettings
from impctl.model.errors import ConfigError, ServiceUnavailable
from impctl.model.events import IPChanged, LinkChanged, NetEvent, NMSignal
from impctl.model.inventory import DeviceInfo, NMDeviceState
from impctl.model.netfacts import DefaultRoute, IPv4Facts, LinkState, Priority, kernel_primary
from impctl.model.probe import InterfaceProbe
from impctl.model.sessions import SessionsEnded
from impctl.model.state import Pin, State
from impctl.usecases.daemon import Daemon, Deps, logfmt
from impctl.usecases.probe import ProbeProxy


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A coroutine test run on its own event loop (no asyncio plugin for pytest here)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


PROFILE_METRICS = {"eth0": 100, "wlan0": 600, "wwan0": 700}
CLASSES = {"eth0": "ethernet", "wlan0": "wifi", "wwan0": "cell"}
IDENTS = {"eth0": "eth0", "wlan0": "wl0", "wwan0": "cell0"}
DNS = {"eth0": "198.18.1.1", "wlan0": "198.18.2.1", "wwan0": "198.18.3.1"}
ADDRESSES = {"eth0": "198.18.1.50/24", "wlan0": "198.18.2.50/24", "wwan0": "198.18.3.50/24"}


class FakeNM:
    def __init__(self) -> None:
        self.metrics = dict(PROFILE_METRICS)
        self.calls: list[tuple[str, int]] = []
        self.dns_priorities: dict[str, int] = {}
        # resolv.conf as NM writes it: servers by DNS priority (0 is NM's 100), a moment after each change.
        self.resolv: list[str] = [DNS[n] for n in ("eth0", "wlan0", "wwan0")]
        self.resolv_delay_s = 0.05
        self.emit: Callable[[NMSignal], None] | None = None
        self.available = True
        self.lost = asyncio.Event()

    def set_config(self, config: Config) -> None:
        pass

    async def devices(self) -> list[DeviceInfo]:
        if not self.available:
            raise ServiceUnavailable("NetworkManager is not running on the system bus")
        return [DeviceInfo(name, 20, int(NMDeviceState.ACTIVATED), CLASSES[name], identifier=IDENTS[name],
                           nm_path=f"/dev/{name}", route_metric=self.metrics[name], dns=(DNS[name],),
                           extra={"profile_path": f"/p/{name}"})
                for name in ("eth0", "wlan0", "wwan0")]

    async def set_priority(self, device: DeviceInfo, priority: Priority) -> None:
        await asyncio.sleep(0)
        metric = priority.route_metric
        self.calls.append((device.ifname, metric))
        self.dns_priorities[device.ifname] = priority.dns_priority

        # What NM writes is what the priorities were when it was told, however late it writes.
        order = [DNS[n] for n in sorted(DNS, key=lambda n: self.dns_priorities.get(n, 0) or 100)]
        asyncio.get_running_loop().call_later(self.resolv_delay_s, lambda: setattr(self, "resolv", order))
        self.metrics[device.ifname] = PROFILE_METRICS[device.ifname] if metric < 0 else metric

    async def profile_priority(self, device: DeviceInfo) -> Priority:
        return Priority(PROFILE_METRICS[device.ifname], 0)

    def signals(self, emit: Callable[[NMSignal], None]) -> contextlib.AbstractAsyncContextManager[None]:
        self.emit = emit

        @contextlib.asynccontextmanager
        async def cm() -> AsyncIterator[None]:
            yield

        return cm()

    async def disconnected(self) -> None:
        await self.lost.wait()

    def close(self) -> None:
        pass


class World:
    def __init__(self) -> None:
        self.link = {n: True for n in CLASSES}
        self.reachable = {n: True for n in CLASSES}
        self.probes: list[tuple[str, bool]] = []  # (ifname, tls)
        self.netlink_silent = 0  # this many link reads answer nothing (pyroute2 timed out)

    async def link_state(self, ifname: str) -> LinkState:
        if self.netlink_silent:
            self.netlink_silent -= 1
            raise ServiceUnavailable("netlink: no answer within 2 s")
        up = self.link[ifname]
        return LinkState(ifname, 1, True, up, "UP" if up else "DOWN", "veth")

    async def ipv4(self, ifname: str) -> IPv4Facts:
        up = self.link[ifname]
        return IPv4Facts((ADDRESSES[ifname],) if up else (), "198.18.1.1" if up else None, False)

    async def probe(self, device: DeviceInfo, config: Config, proxy: ProbeProxy | None,
                    deadline: float) -> InterfaceProbe:
        await asyncio.sleep(0.001)
        self.probes.append((device.ifname, config.cloud.tls))
        ok = self.link[device.ifname] and self.reachable[device.ifname]
        return InterfaceProbe(device.identifier, device.ifname, device.iface_class,
                              ResultCode.SERVER_CONNECTED if ok else ResultCode.NO_SERVER,
                              reason=None if ok else "tcp: timed out")


class Notes:
    watchdog_s: float | None = None

    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str | None = None) -> bool:
        self.sent.append("READY")
        return True

    def watchdog(self) -> bool:
        self.sent.append("WATCHDOG")
        return True

    def stopping(self, status: str | None = None) -> bool:
        self.sent.append("STOPPING")
        return True

    def reloading(self) -> bool:
        self.sent.append("RELOADING")
        return True

    def status(self, text: str) -> bool:
        self.sent.append(f"STATUS={text}")
        return True


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    nm: FakeNM
    world: World
    notes: Notes
    state: State
    lines: list[str]
    emit: list[Callable[[NetEvent], None]]
    config: list[Config]
    # (ifname, addresses, the kernel's primary, resolv.conf's first server) of every end_sessions call
    ended: list[tuple[str, list[str], str | None, str]] = dataclasses.field(default_factory=list)

    async def wait_line(self, text: str, timeout_s: float = 3.0) -> str:
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines:
                    if text in line:
                        self.lines.remove(line)
                        return line
                await asyncio.sleep(0.005)

    def link(self, ifname: str, up: bool) -> None:
        self.world.link[ifname] = up
        loop = asyncio.get_running_loop()
        self.emit[0](LinkChanged(ifname, 2, up, loop.time()))


SETTINGS = DaemonSettings(probe_interval_s=0.2, probe_failures=2, standby_probe_interval_s=1.0,
                          cell_standby_probe_interval_s=2.0, cell_probe_interval_s=0.5,
                          failback_hold_s=0.5, min_switch_interval_s=0.3)


class Gateway:
    """The gateway lock as another impctl command would hold it."""

    def __init__(self) -> None:
        self.busy = False
        self.tries = 0

    @contextlib.contextmanager
    def try_hold(self, command: str) -> Iterator[bool]:
        self.tries += 1
        yield not self.busy

    def hold(self, command: str) -> contextlib.AbstractContextManager[bool]:
        raise AssertionError("the daemon never waits for the gateway")


def make_rig(state: State | None = None, settings: DaemonSettings = SETTINGS,
             load_config: Callable[[], Config] | None = None, gateway: Gateway | None = None) -> Rig:
    nm, world, notes = FakeNM(), World(), Notes()
    the_state = state or State()
    lines: list[str] = []
    emit: list[Callable[[NetEvent], None]] = []
    config = [Config(daemon=settings)]

    @contextlib.asynccontextmanager
    async def watch(e: Callable[[NetEvent], None]) -> AsyncIterator[None]:
        emit.append(e)
        yield

    async def routes() -> list[DefaultRoute]:
        # As in the lab: ignore_routes_with_linkdown=1, a dead link's route is skipped.
        return [DefaultRoute(n, m, not world.link[n], not world.link[n]) for n, m in nm.metrics.items()]

    async def connect_network(_config: Config) -> FakeNM:
        if not nm.available:
            raise ServiceUnavailable("no NetworkManager")
        return nm

    async def no_hooks(_d: str, _e: object, _l: object) -> None:
        return None

    def change(fn: Callable[[State], None]) -> None:
        fn(the_state)

    ended: list[tuple[str, list[str], str | None, str]] = []

    async def end_sessions(ifname: str, addresses: Sequence[str], lan_dns_name: str = "") -> SessionsEnded:
        assert lan_dns_name == Config().cloud.host  # the name the LAN's resolver must answer
        ended.append((ifname, list(addresses), kernel_primary(await routes()), nm.resolv[0]))
        return SessionsEnded(ifname, sockets=2, conntrack=1, took_s=0.001, nudged=1)

    deps = Deps(
        connect_network=connect_network, links=world, routes=routes, watch=watch, probe=world.probe,
        notifier=notes, load_config=load_config or (lambda: config[0]), load_state=lambda: the_state,
        update_state=change, proxies=lambda _s, _d: {}, run_hooks=no_hooks, log=lines.append,
        clock=lambda: asyncio.get_running_loop().time(), gateway=gateway, end_sessions=end_sessions,
        resolver=lambda: nm.resolv,
    )
    return Rig(Daemon(deps), nm, world, notes, the_state, lines, emit, config, ended)


async def started(rig: Rig) -> asyncio.Task[int]:
    task = asyncio.create_task(rig.daemon.run())
    await rig.wait_line("event=connected ifname=eth0")
    return task


async def stop(rig: Rig, task: asyncio.Task[int]) -> int:
    rig.daemon.request_stop()
    async with asyncio.timeout(3.0):
        return await task


@run_async
async def test_failover_moves_traffic_without_sharing_the_lowest_metric() -> None:
    rig = make_rig()
    task = await started(rig)
    assert rig.nm.calls == [("eth0", 20)]
    assert "READY" in rig.notes.sent
    rig.link("eth0", False)
    line = await rig.wait_line("event=connected ifname=wlan0")
    assert "from=eth0" in line and 'reason="eth0: no carrier"' in line
    await rig.wait_line("event=route ifname=wlan0 metric=20")
    # wlan0 first just below the primary metric, then eth0 its own back, then wlan0 the primary metric.
    assert rig.nm.calls == [("eth0", 20), ("wlan0", 19), ("eth0", 100), ("wlan0", 20)]
    assert await stop(rig, task) == 0
    assert rig.notes.sent[-1] == "STOPPING"
    assert rig.state.daemon is not None
    assert rig.state.daemon.running is False and rig.state.daemon.active == "wlan0"
    assert rig.state.current is not None and rig.state.current.ifname == "wlan0"


@run_async
async def test_connected_is_not_declared_before_the_route_moved() -> None:
    rig = make_rig()
    task = await started(rig)
    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")
    # By the time it says connected, the kernel's lowest usable route is wlan0's.
    assert rig.nm.metrics["wlan0"] < rig.nm.metrics["eth0"]
    await stop(rig, task)


@run_async
async def test_manual_mode_never_touches_routes() -> None:
    rig = make_rig(State(pinned=Pin("eth0")))
    task = await started(rig)
    rig.link("eth0", False)
    line = await rig.wait_line("event=lost ifname=eth0")
    assert "manual mode" in line
    await asyncio.sleep(0.5)
    assert rig.nm.calls == []
    assert not any("event=switch" in x for x in rig.lines)
    assert rig.daemon.policy.active == "eth0"
    await stop(rig, task)
    assert rig.state.daemon is not None
    assert rig.state.daemon.mode == "manual" and rig.state.daemon.phase == "lost"
    assert rig.state.current is None  # connectwith's current stands in manual mode


@run_async
async def test_networkmanager_restart_reapplies_the_primary_metric() -> None:
    rig = make_rig()
    task = await started(rig)
    assert rig.nm.emit is not None
    rig.nm.emit(NMSignal("nm-stopped"))
    await rig.wait_line("event=nm-stopped")
    # NM comes back having re-read its profiles: eth0 at its own metric again.
    rig.nm.metrics["eth0"] = 100
    rig.nm.emit(NMSignal("nm-started"))
    await rig.wait_line("event=nm-started")
    await rig.wait_line("event=route ifname=eth0 metric=20")
    assert rig.nm.calls[-1] == ("eth0", 20)
    await stop(rig, task)


@run_async
async def test_devices_unreadable_after_nm_start_are_retried() -> None:
    rig = make_rig()
    task = await started(rig)
    assert rig.nm.emit is not None
    rig.nm.emit(NMSignal("nm-stopped"))
    rig.nm.available = False
    rig.nm.emit(NMSignal("nm-started"))
    await rig.wait_line("event=nm-error")
    rig.nm.available = True
    rig.nm.metrics["eth0"] = 100
    await rig.wait_line("event=route ifname=eth0 metric=20", 3.0)
    await stop(rig, task)


@run_async
async def test_blackhole_switches_after_consecutive_failures_with_tcp_only_liveness() -> None:
    rig = make_rig()
    task = await started(rig)
    rig.world.reachable["eth0"] = False
    line = await rig.wait_line("event=switch from=eth0 to=wlan0")
    assert "2 probes failed" in line
    await rig.wait_line("event=connected ifname=wlan0")
    liveness = [tls for name, tls in rig.world.probes if name == "eth0"][1:]
    assert liveness and not any(liveness)  # periodic probes skip TLS (liveness_tls=false)
    verify_wlan0 = [tls for name, tls in rig.world.probes if name == "wlan0"]
    assert verify_wlan0[-1] is True  # the new primary's verification is the full check
    await stop(rig, task)


@run_async
async def test_reload_with_a_broken_config_keeps_running_on_the_old_one() -> None:
    broken = [False]
    good = Config(daemon=SETTINGS)

    def load() -> Config:
        if broken[0]:
            raise ConfigError("impctl.toml: daemon.probe_interval_s: must be a positive number")
        return good

    rig = make_rig(load_config=load)
    task = await started(rig)
    broken[0] = True
    rig.daemon.request_reload()
    line = await rig.wait_line("event=reload-error")
    assert "probe_interval_s" in line
    assert rig.daemon.config is good
    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")  # still failing over
    await stop(rig, task)


@run_async
async def test_reload_applies_a_new_sequence() -> None:
    rig = make_rig()
    task = await started(rig)
    rig.state.set_sequence(["cell"])
    rig.daemon.request_reload()
    await rig.wait_line("event=plan mode=automatic order=wwan0,eth0,wlan0")
    await rig.wait_line("event=connected ifname=wwan0", 5.0)  # after its failback hold
    assert "RELOADING" in rig.notes.sent
    await stop(rig, task)


@run_async
async def test_stop_while_waiting_for_networkmanager() -> None:
    rig = make_rig()
    rig.nm.available = False
    task = asyncio.create_task(rig.daemon.run())
    await rig.wait_line("event=nm-unavailable")
    assert any(s.startswith("STATUS=waiting for NetworkManager") for s in rig.notes.sent)
    assert await stop(rig, task) == 0
    assert "READY" not in rig.notes.sent and rig.notes.sent[-1] == "STOPPING"
    assert any("event=stopped" in line for line in rig.lines)


@run_async
async def test_watchdog_pings_come_from_the_loop() -> None:
    rig = make_rig()
    rig.notes.watchdog_s = 0.2
    task = await started(rig)
    await asyncio.sleep(0.55)
    assert rig.notes.sent.count("WATCHDOG") >= 3
    await stop(rig, task)


# ---------------------------------------------------------------- log lines, hooks


def test_logfmt_quotes_what_needs_it() -> None:
    line = logfmt("switch", **{"from": "eth0", "to": "wlan0"}, reason='eth0: "x" = y', took_ms=12.345, none=None)
    assert line == 'event=switch from=eth0 to=wlan0 reason="eth0: \\"x\\" = y" took_ms=12.3'


@run_async
async def test_hooks_run_in_order_with_the_switch_in_their_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hooks = (("20-second", "echo second >> {o}"),
             ("10-first", 'echo "$IMPCTL_FROM>$IMPCTL_TO $IMPCTL_REASON" >> {o}'),
             (".hidden", "echo hidden >> {o}"), ("30-fails", "exit 3"))
    for name, body in hooks:
        p = tmp_path / name
        p.write_text("#!/bin/sh\n" + body.format(o=out) + "\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "not-executable").write_text("#!/bin/sh\necho no >> {out}\n")
    logs: list[str] = []

    def log(event: str, **fields: object) -> None:
        logs.append(logfmt(event, **fields))

    await run_hook_dir(str(tmp_path), {"IMPCTL_FROM": "eth0", "IMPCTL_TO": "wlan0", "IMPCTL_REASON": "no carrier"},
                       log)
    assert out.read_text().splitlines() == ["eth0>wlan0 no carrier", "second"]
    assert any("hook=30-fails status=3" in x for x in logs)
    assert os.path.exists(out)


@run_async
async def test_missing_hooks_dir_is_logged_not_fatal(tmp_path: Path) -> None:
    logs: list[str] = []
    await run_hook_dir(str(tmp_path / "absent"), {}, lambda event, **f: logs.append(logfmt(event, **f)))
    assert logs and "event=hook-error" in logs[0]


@run_async
async def test_lost_bus_connection_is_reconnected_and_routes_reapplied() -> None:
    rig = make_rig()
    task = await started(rig)
    rig.nm.metrics["eth0"] = 100  # what a reconnect finds: NM restarted with the bus
    rig.nm.lost.set()
    await rig.wait_line("event=bus-lost")
    rig.nm.lost = asyncio.Event()
    await rig.wait_line("event=nm-reconnected")
    # Failover still works through the new connection.
    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")
    assert ("wlan0", 19) in rig.nm.calls
    await stop(rig, task)


@run_async
async def test_reload_survives_a_loader_that_fails_in_any_way() -> None:
    good = Config(daemon=SETTINGS)
    failure: list[Exception | None] = [None]

    def load() -> Config:
        if failure[0] is not None:
            raise failure[0]
        return good

    rig = make_rig(load_config=load)
    task = await started(rig)
    for err, named in ((ConfigError("impctl.toml: cannot read config file: Is a directory"), "Is a directory"),
                       (ValueError("could not convert string to float: 'x'\nat line 3"), "ValueError")):
        failure[0] = err
        rig.daemon.request_reload()
        line = await rig.wait_line("event=reload-error")
        assert named in line and "\n" not in line and 'kept="the running config"' in line
        assert rig.daemon.config is good
    assert not task.done()
    assert rig.notes.sent.count("RELOADING") == 2 and rig.notes.sent[-1] == "READY"
    await stop(rig, task)


@run_async
async def test_reload_that_nm_refuses_keeps_the_old_config_everywhere() -> None:
    new = Config(daemon=dataclasses.replace(SETTINGS, probe_interval_s=0.4))
    rig = make_rig()
    old = rig.daemon.config
    task = await started(rig)
    given: list[Config] = []

    def set_config(config: Config) -> None:
        given.append(config)
        if config is new:
            raise RuntimeError("the NM backend rejects it")

    rig.nm.set_config = set_config  # type: ignore[method-assign]
    rig.config[0] = new
    rig.daemon.request_reload()
    line = await rig.wait_line("event=reload-error")
    assert "RuntimeError: the NM backend rejects it" in line
    assert rig.daemon.config is old and rig.daemon.policy.settings is old.daemon
    assert given == [new, old]
    await stop(rig, task)


def test_a_start_with_a_loader_bug_is_a_config_error_not_a_traceback() -> None:
    def load() -> Config:
        raise KeyError("daemon")

    with pytest.raises(ConfigError, match=r"^cannot load the config and state: KeyError: 'daemon'$"):
        make_rig(load_config=load)


@run_async
async def test_no_default_route_at_all_is_said_so() -> None:
    rig = make_rig()
    task = await started(rig)

    async def no_routes() -> list[DefaultRoute]:
        return []

    rig.daemon.d.routes = no_routes
    rig.link("eth0", False)
    line = await rig.wait_line("event=route-error ifname=wlan0", 5.0)
    assert 'reason="the kernel has no usable default route 2 s after the change"' in line
    assert "None" not in line
    await stop(rig, task)


def test_logfmt_keeps_a_multi_line_value_on_one_line() -> None:
    line = logfmt("reload-error", reason="not valid TOML:\nline 3\r")
    assert line == 'event=reload-error reason="not valid TOML:\\nline 3\\r"'


@run_async
async def test_a_switch_waits_while_an_impctl_command_holds_the_gateway() -> None:
    gateway = Gateway()
    rig = make_rig(gateway=gateway)
    task = await started(rig)
    assert rig.nm.calls == [("eth0", 20)]
    gateway.busy = True  # a connectwith is at work
    rig.link("eth0", False)
    await rig.wait_line("event=gateway-busy ifname=wlan0")
    await asyncio.sleep(0.6)
    assert rig.nm.calls == [("eth0", 20)]  # no route moved while it held the gateway
    assert gateway.tries >= 2  # and the daemon kept trying
    gateway.busy = False
    await rig.wait_line("event=gateway-free ifname=wlan0")
    await rig.wait_line("event=route ifname=wlan0 metric=20")
    assert rig.nm.calls[1:] == [("wlan0", 19), ("eth0", 100), ("wlan0", 20)]
    assert await stop(rig, task) == 0


@run_async
async def test_a_lost_uplinks_sessions_end_on_its_last_addresses_once_the_kernel_routes_elsewhere() -> None:
    rig = make_rig()
    task = await started(rig)
    assert rig.ended == []  # the start moved nobody away from anything
    rig.link("eth0", False)  # netlink now shows eth0 without an address
    line = await rig.wait_line("event=sessions-ended ifname=eth0")
    assert "to=wlan0 sockets=2 conntrack=1 nudged=1" in line and 'reason="eth0: no carrier"' in line
    # After the kernel routes through wlan0 and resolv.conf asks wlan0's server first (50 ms later).
    assert rig.ended == [("eth0", ["198.18.1.50/24"], "wlan0", "198.18.2.1")]
    assert 40 <= float(line.split("dns_wait_ms=")[1].split()[0]) < 500
    assert await stop(rig, task) == 0
    # Part of the switch's record, for `impctl status`.
    assert rig.state.daemon is not None
    last = rig.state.daemon.switches[-1]
    assert (last.from_ifname, last.to_ifname, last.sessions_ended) == ("eth0", "wlan0", (2, 1, 1.0))


@run_async
async def test_the_primary_gets_the_dns_priority_and_a_demoted_uplink_its_profiles_back() -> None:
    rig = make_rig()
    task = await started(rig)
    assert rig.nm.dns_priorities == {"eth0": 90}
    rig.link("eth0", False)
    await rig.wait_line("event=route ifname=wlan0 metric=20")
    # eth0 is down: NM gives it its profile's values when it comes back; wlan0 is first in resolv.conf.
    assert rig.nm.dns_priorities["wlan0"] == 90
    rig.link("eth0", True)
    await rig.wait_line("event=connected ifname=eth0")
    await rig.wait_line("event=route ifname=wlan0 metric=600")
    assert rig.nm.dns_priorities == {"eth0": 90, "wlan0": 0}
    assert await stop(rig, task) == 0


async def _to_wwan0_and_back(rig: Rig) -> None:
    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")
    rig.link("wlan0", False)
    await rig.wait_line("event=connected ifname=wwan0")
    rig.link("eth0", True)
    rig.link("wlan0", True)
    await rig.wait_line('reason="failback: eth0 healthy', timeout_s=5.0)
    await rig.wait_line("event=connected ifname=eth0", timeout_s=5.0)


@run_async
async def test_failback_ends_the_sessions_of_the_classes_listed_only() -> None:
    rig = make_rig(settings=dataclasses.replace(SETTINGS, end_sessions_on_failback=("cell",)))
    task = await started(rig)
    await _to_wwan0_and_back(rig)
    await rig.wait_line("event=sessions-ended ifname=wwan0")
    # eth0's and wlan0's come 50 ms apart, each after its own wait for resolv.conf: in either order.
    assert sorted(e[0] for e in rig.ended) == ["eth0", "wlan0", "wwan0"]
    assert rig.ended[-1][:1] + rig.ended[-1][2:3] == ("wwan0", "eth0")
    rig.lines.clear()
    # From WiFi: a failback keeps its sessions with ("cell",).
    rig.link("eth0", False)
    await rig.wait_line("event=connected ifname=wlan0")
    rig.link("eth0", True)
    await rig.wait_line("event=connected ifname=eth0", timeout_s=5.0)
    await rig.wait_line("event=route ifname=wlan0 metric=600")
    assert sorted(e[0] for e in rig.ended) == ["eth0", "eth0", "wlan0", "wwan0"]
    assert await stop(rig, task) == 0


@run_async
async def test_with_end_sessions_off_nothing_is_ended() -> None:
    rig = make_rig(settings=dataclasses.replace(SETTINGS, end_sessions=False))
    task = await started(rig)
    await _to_wwan0_and_back(rig)
    await rig.wait_line("event=route ifname=wwan0 metric=700")
    assert rig.ended == []
    assert not [line for line in rig.lines if "sessions-ended" in line]
    assert await stop(rig, task) == 0


@run_async
async def test_sessions_end_even_if_resolv_conf_never_follows_and_that_is_logged() -> None:
    rig = make_rig()
    task = await started(rig)
    rig.nm.resolv_delay_s = 60.0  # NM never rewrites it in time
    rig.link("eth0", False)
    line = await rig.wait_line("event=dns-order ifname=wlan0", timeout_s=3.0)
    assert "does not list wlan0's servers first 1 s after the switch" in line
    ended = await rig.wait_line("event=sessions-ended ifname=eth0")
    assert "dns_wait_ms=" not in ended  # it did not follow; it ended them anyway: they are stranded regardless
    assert [e[0] for e in rig.ended] == ["eth0"]
    assert await stop(rig, task) == 0


@run_async
async def test_netlink_that_does_not_answer_is_read_again_not_taken_for_a_dead_uplink() -> None:
    rig = make_rig()
    task = await started(rig)
    rig.world.netlink_silent = 2
    rig.emit[0](IPChanged("eth0", asyncio.get_running_loop().time()))
    await rig.wait_line("event=netlink-error ifname=eth0")
    await asyncio.sleep(1.5)  # read again after 0.5 s, twice
    assert rig.world.netlink_silent == 0
    assert not [line for line in rig.lines if "event=switch from=eth0" in line or "new=down" in line]
    assert await stop(rig, task) == 0


@run_async
async def test_an_uplink_an_earlier_daemon_left_at_the_primary_metric_is_demoted_at_start() -> None:
    rig = make_rig()
    rig.nm.metrics["wwan0"] = 20  # stopped (or killed by the watchdog) while wwan0 was primary
    task = await started(rig)
    assert "event=route ifname=wwan0 metric=700" in "\n".join(rig.lines)
    assert rig.nm.metrics == {"eth0": 20, "wlan0": 600, "wwan0": 700}
    assert not [line for line in rig.lines if "route-error" in line]
    assert await stop(rig, task) == 0
