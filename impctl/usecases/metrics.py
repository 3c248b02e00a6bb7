"""The daemon's fleet metrics: counting, collecting and handing them to an exporter.

The daemon (`impctl.usecases.daemon`) tells `DaemonMetrics` what happens
(`tally`), and when it has published its view (`published`); this module
renders the families (`impctl.model.metrics`) and gives them to a
`MetricsExport` (`impctl.backends.metrics`, prometheus_client), which serves
them on `[daemon] metrics_listen` and/or writes `[daemon] metrics_textfile`.
With neither set, no exporter is made and nothing here costs anything but
the counting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

from impctl.model.config import DaemonSettings, parse_listen
from impctl.model.errors import ImpctlError
from impctl.model.failover import FailoverPolicy
from impctl.model.inventory import DeviceInfo
from impctl.model.metrics import BuildInfo, Family, MetricsTally, daemon_families
from impctl.model.netfacts import Counters
from impctl.usecases.probe import data_ifname

CollectFn = Callable[[], Awaitable[Sequence[Family]]]


class MetricsExport(Protocol):
    """impctl.backends.metrics.PrometheusExporter."""

    version: str
    python: str

    async def listen(self, host: str, port: int, collect: CollectFn) -> None:
        """Serve the metrics on host:port (replacing a previous listener); raises ImpctlError."""
        ...

    async def close(self) -> None: ...

    def write_textfile(self, path: str, families: Sequence[Family]) -> None:
        """Write the node_exporter textfile atomically; raises ImpctlError."""
        ...


class DaemonMetrics:
    """The daemon's side: counts in `tally`, renders on a scrape or a publish, keeps the exporter.

    Everything runs on the daemon's loop, so a scrape reads the policy
    between two events. The exporter is made on first need: a daemon whose
    metrics are off never imports prometheus_client.
    """

    def __init__(self, make_export: Callable[[], MetricsExport] | None,
                 counters: Callable[[str], Awaitable[Counters]] | None,
                 policy: Callable[[], FailoverPolicy], devices: Callable[[], Mapping[str, DeviceInfo]],
                 log: Callable[..., None],
                 spawn: Callable[[Coroutine[Any, Any, None], str], object],
                 clock: Callable[[], float], wall: Callable[[], float], started_wall: float) -> None:
        self.tally = MetricsTally()
        self._make_export = make_export
        self._export: MetricsExport | None = None
        self._counters = counters
        self._policy = policy
        self._devices = devices
        self._log = log
        self._spawn = spawn
        self._clock = clock
        self._wall = wall
        self._started_wall = started_wall
        self._listening: tuple[str, int] | None = None
        self._textfile: str | None = None
        self._last_counters: dict[str, Counters] = {}
        self._writing = False
        self._write_again = False
        self._last_error: str | None = None

    def _exporter(self) -> MetricsExport | None:
        if self._export is None and self._make_export is not None:
            self._export = self._make_export()
        return self._export

    async def configure(self, settings: DaemonSettings) -> None:
        """At start and after a reload: listen where the settings say (a changed address: re-bind)."""
        self._textfile = settings.metrics_textfile
        want = parse_listen(settings.metrics_listen, "daemon.metrics_listen") if settings.metrics_listen else None
        if want == self._listening:
            return
        export = self._exporter()
        if export is None:
            return  # no exporter to be had (the loop's tests)
        if want is None:
            await export.close()
            self._listening = None
            self._log("metrics", listen="off")
            return
        try:
            await export.listen(want[0], want[1], self.collect)
        except ImpctlError as err:
            # The gateway's connection matters more than its metrics: say so, and go on.
            self._listening = None
            self._log("metrics-error", reason=err.message)
            return
        self._listening = want
        self._log("metrics", listen=f"[{want[0]}]:{want[1]}" if ":" in want[0] else f"{want[0]}:{want[1]}")

    async def close(self) -> None:
        if self._export is not None:
            await self._export.close()
        self._listening = None

    async def _read_counters(self) -> dict[str, Counters]:
        if self._counters is None:
            return {}
        names = list(self._policy().order)
        devices = self._devices()
        # A modem's NM device is named after its control port: the bytes go through its IP interface.
        kernel = [data_ifname(devices[n]) if n in devices else n for n in names]
        results = await asyncio.gather(*(self._counters(k) for k in kernel), return_exceptions=True)
        # An interface that cannot be read has no byte samples this time (never a false 0).
        self._last_counters = {n: r for n, r in zip(names, results, strict=True) if isinstance(r, Counters)}
        return self._last_counters

    def families(self, counters: dict[str, Counters], *, running: bool = True) -> list[Family]:
        export = self._exporter()
        build = BuildInfo(export.version if export else "", export.python if export else "")
        return daemon_families(self._policy(), self.tally, now=self._clock(), wall_now=self._wall(),
                               started_wall=self._started_wall, counters=counters, build=build, running=running)

    async def collect(self) -> Sequence[Family]:
        counters = await self._read_counters()
        return self.families(counters)

    def published(self, *, final: bool = False) -> None:
        """The daemon wrote its view: the textfile follows (at a stop at once, saying `impctl_up 0`)."""
        if not self._textfile:
            return
        if final:
            self._write(self.families(self._last_counters, running=False))
        elif self._writing:
            self._write_again = True
        else:
            self._writing = True
            self._spawn(self._write_soon(), "metrics-textfile")

    async def _write_soon(self) -> None:
        try:
            again = True
            while again:
                self._write_again = False
                self._write(list(await self.collect()))
                again = self._write_again
        finally:
            self._writing = False

    def _write(self, families: Sequence[Family]) -> None:
        export = self._exporter()
        if export is None or not self._textfile:
            return
        try:
            export.write_textfile(self._textfile, families)
        except ImpctlError as err:
            if err.message != self._last_error:  # once per distinct problem, not every second
                self._log("metrics-error", reason=err.message)
            self._last_error = err.message
            return
        if self._last_error is not None:
            self._log("metrics", textfile=self._textfile, reason="written again")
        self._last_error = None


@contextlib.asynccontextmanager
async def serving(metrics: DaemonMetrics, settings: DaemonSettings) -> AsyncIterator[DaemonMetrics]:
    """Metrics served while the daemon runs; closed however it ends."""
    try:
        await metrics.configure(settings)
        yield metrics
    finally:
        await metrics.close()
