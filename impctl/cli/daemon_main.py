"""The `impctl daemon` process: what the `daemon` command execs into (`python -m impctl.cli.daemon_main`).

A fresh interpreter that loads only what the daemon runs on: no Typer, no
rich, none of the other commands and their dependencies (the CLI loads
them all to parse a command line). That is most of the daemon's memory: it
runs for months on gateways with little RAM, and every MiB the CLI's
start-up leaves in it stays there. Under systemd the exec keeps the main
PID (Type=notify, NotifyAccess=main), and so does `ip netns exec` in the lab.

    python -m impctl.cli.daemon_main --state PATH --config PATH [--config-explicit]

A bad config or state at start: one line on stderr and the exit code of the
error (ConfigError / StateError: 3), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from impctl.backends import netwatch
from impctl.backends.config_file import load_config
from impctl.backends.gatewaylock import GatewayLock, lock_path_for
from impctl.backends.hooks import run_hook_dir
from impctl.backends.netlink import Netlink
from impctl.backends.nm import NMClient
from impctl.backends.probe_net import BoundSockets
from impctl.backends.resolvconf import system_nameservers
from impctl.backends.sdnotify import Notifier
from impctl.backends.sessions import end_sessions
from impctl.backends.statefile import load_state, update_state
from impctl.model.codes import ExitCode
from impctl.model.config import Config
from impctl.model.errors import ImpctlError
from impctl.model.events import NetEvent, Resync
from impctl.model.inventory import DeviceInfo
from impctl.model.netfacts import IPv4Facts, LinkState
from impctl.model.nic import Secret
from impctl.model.probe import InterfaceProbe
from impctl.model.state import State
from impctl.usecases.daemon import Daemon, Deps, Network
from impctl.usecases.metrics import MetricsExport
from impctl.usecases.probe import LinkFacts, ProbeProxy, probe_interface, proxy_plan


def _light_pyroute2() -> None:
    """Make `import pyroute2.<submodule>` skip pyroute2's package __init__.

    That __init__ imports every netlink family pyroute2 has (NDB, IPDB,
    conntrack, nftables, WireGuard, ...): 13 MiB of RSS, where the daemon
    uses rtnetlink only (about 7 MiB). The package is registered unexecuted;
    `from pyroute2 import AsyncIPRoute` still works through __getattr__.
    Before the first netlink call; the backends import pyroute2 on first use.
    """
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the first netlink call says so

    package = importlib.util.module_from_spec(spec)

    def lazy(name: str) -> Any:
        if name in ("AsyncIPRoute", "IPRoute"):
            from pyroute2.iproute import linux

            return getattr(linux, name)
        raise AttributeError(f"module 'pyroute2' has no attribute {name!r} (daemon: rtnetlink only)")

    package.__getattr__ = lazy  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package


# Facts read from netlink are trusted this long at most without an event saying they changed.
LINK_FACTS_MAX_AGE_S = 30.0
# How often freed C heap is handed back to the kernel (glibc's malloc_trim). The daemon is
# single-threaded (one glibc arena); under faults its [heap] re-touches about 0.4 MiB of
# freed pages within a minute of a trim and ~1 MiB within five, while the live C heap stays
# flat: every 300 s that sawtooth was most of the soak's "growth". A trim costs ~0.1 ms.
MALLOC_TRIM_INTERVAL_S = 60.0


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where there is none (musl, another libc).

    Every fault means TLS handshakes, netlink sockets and D-Bus calls whose C
    buffers are freed between long-lived ones; glibc keeps the freed pages
    of its heap mapped, so RSS creeps up over days of faults although the
    live data does not grow. Trimming now and then gives them back.
    """
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class EventCachedLinks:
    """Netlink's facts about an uplink, kept until a netlink event about it arrives.

    Every probe checks its uplink's link and IPv4 address first; read afresh,
    pyroute2 decodes two dumps each time, the largest part of an idle
    daemon's CPU. The kernel announces every change of them (link, address,
    route events: the daemon's watcher), so an entry is dropped when one
    arrives for its uplink (all of them on a resync), and after
    LINK_FACTS_MAX_AGE_S in any case. Errors are not kept.
    """

    def __init__(self, links: LinkFacts, clock: Callable[[], float] = time.monotonic) -> None:
        self._links = links
        self._clock = clock
        self._state: dict[str, tuple[float, LinkState]] = {}
        self._ipv4: dict[str, tuple[float, IPv4Facts]] = {}

    def invalidate(self, event: NetEvent) -> None:
        if isinstance(event, Resync):
            self._state.clear()
            self._ipv4.clear()
        else:
            self._state.pop(event.ifname, None)
            self._ipv4.pop(event.ifname, None)

    def _fresh(self, at: float) -> bool:
        return self._clock() - at < LINK_FACTS_MAX_AGE_S

    async def link_state(self, ifname: str) -> LinkState:
        kept = self._state.get(ifname)
        if kept is not None and self._fresh(kept[0]):
            return kept[1]
        at = self._clock()
        value = await self._links.link_state(ifname)
        self._state[ifname] = (at, value)
        return value

    async def ipv4(self, ifname: str) -> IPv4Facts:
        kept = self._ipv4.get(ifname)
        if kept is not None and self._fresh(kept[0]):
            return kept[1]
        at = self._clock()
        value = await self._links.ipv4(ifname)
        self._ipv4[ifname] = (at, value)
        return value


def _log_line() -> Callable[[str], None]:
    # journald stamps every line itself; elsewhere (a terminal, the lab) the
    # line carries its own wall-clock time, to the millisecond.
    journal = bool(os.environ.get("JOURNAL_STREAM"))

    def log(line: str) -> None:
        if not journal:
            line = f"ts={time.time():.3f} {line}"
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return log


def _light_prometheus_client() -> None:
    """Make `import prometheus_client.<submodule>` skip prometheus_client's package __init__.

    That __init__ imports its exposition module and with it http.server,
    wsgiref, urllib.request and email (2.4 MiB of RSS) for a threaded server
    and a push client the daemon never uses; impctl.backends.metrics needs
    only its metric families, registry and process collector (0.2 MiB).
    """
    if "prometheus_client" in sys.modules:
        return
    spec = importlib.util.find_spec("prometheus_client")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the import below says so
    sys.modules["prometheus_client"] = importlib.util.module_from_spec(spec)


def _metrics_exporter() -> MetricsExport:
    # Only a daemon that exports metrics loads them (impctl.usecases.metrics makes it on demand).
    _light_prometheus_client()
    from impctl import __version__
    from impctl.backends.metrics import PrometheusExporter

    return PrometheusExporter(__version__)


def _deps(state_path: Path, config_path: Path, config_explicit: bool) -> Deps:
    netlink = Netlink()
    links = EventCachedLinks(netlink)
    sockets = BoundSockets()

    @contextlib.asynccontextmanager
    async def watch(emit: Callable[[NetEvent], None]) -> AsyncIterator[object]:
        def seen(event: NetEvent) -> None:
            links.invalidate(event)  # before the daemon hears of it: its next read is fresh
            emit(event)

        async with netwatch.watching(seen) as watcher:
            yield watcher

    async def connect_network(config: Config) -> Network:
        return await NMClient.connect(config)

    async def probe(device: DeviceInfo, config: Config, proxy: ProbeProxy | None,
                    deadline: float) -> InterfaceProbe:
        return await probe_interface(device, config, proxy, links=links, net=sockets, deadline=deadline)

    def decrypt(secret: Secret | None, where: str) -> str | None:
        if secret is None:
            return None
        # Only a proxy with a stored password needs the key (and cryptography: 8 MiB).
        from impctl.backends.secrets import decrypt_secret, key_path_for

        return decrypt_secret(secret, key_path_for(state_path), where)

    def proxies(state: State, devices: Sequence[DeviceInfo]) -> dict[str, ProbeProxy]:
        return proxy_plan(state, devices, decrypt)

    def change_state(change: Callable[[State], None]) -> None:
        update_state(state_path, change)

    return Deps(
        connect_network=connect_network,
        links=links,
        routes=netwatch.default_routes,
        watch=watch,
        probe=probe,
        notifier=Notifier(),
        load_config=lambda: load_config(config_path, explicit=config_explicit),
        load_state=lambda: load_state(state_path),
        update_state=change_state,
        proxies=proxies,
        run_hooks=run_hook_dir,
        log=_log_line(),
        gateway=GatewayLock(lock_path_for(state_path)),
        end_sessions=end_sessions,
        resolver=system_nameservers,
        metrics=_metrics_exporter,
        counters=netlink.counters,
    )


async def _serve(daemon: Daemon) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    trim = _malloc_trim()
    if trim is not None:
        def trim_now() -> None:
            trim()
            loop.call_later(MALLOC_TRIM_INTERVAL_S, trim_now)

        loop.call_later(MALLOC_TRIM_INTERVAL_S, trim_now)
    return await daemon.run()


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    explicit = "--config-explicit" in args
    if explicit:
        args.remove("--config-explicit")
    options = dict(zip(args[::2], args[1::2], strict=False))
    if len(args) % 2 or set(options) - {"--state", "--config"} or len(options) != 2:
        return _fail("usage: python -m impctl.cli.daemon_main --state PATH --config PATH [--config-explicit]",
                     int(ExitCode.BAD_INPUT))
    _light_pyroute2()
    try:
        daemon = Daemon(_deps(Path(options["--state"]), Path(options["--config"]), explicit))
    except ImpctlError as err:
        return _fail(err.message, int(err.exit_code))
    return asyncio.run(_serve(daemon))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
