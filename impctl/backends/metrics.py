"""The daemon's fleet metrics on the wire: prometheus_client's families, over HTTP or as a textfile.

The only module that imports prometheus_client, and only its data model
(metric families, the registry, the process collector: ~0.2 MiB of RSS).
Its `exposition` module would add 2.4 MiB for what the daemon never runs
(http.server, wsgiref, urllib.request, email: its threaded server and push
gateway client), so the text format (0.0.4) is written here, with
prometheus_client's number formatting, the way its `generate_latest`
writes it; tests hold the two to the same output. The daemon imports this
module only when `[daemon] metrics_listen` or `metrics_textfile` is set,
without prometheus_client's package __init__ (impctl.cli.daemon_main).

The HTTP endpoint is served by the daemon's own event loop (asyncio), not
by prometheus_client's threaded server: a scrape collects in the loop, so
it sees the daemon's state between two events, never half-way through one,
and can read the kernel's counters over the daemon's async netlink socket.
A daemon whose loop is stuck answers no scrape, and Prometheus's `up` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString as _go_float

from impctl.backends.textfile import write_textfile
from impctl.model.errors import ServiceUnavailable
from impctl.model.metrics import Family

# The text format Prometheus 2.x and node_exporter read (prometheus_client's newer default
# announces 1.0.0, which only matters for UTF-8 names; ours are plain).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A request line and headers fit in this; a scraper sends a few hundred bytes.
MAX_REQUEST_BYTES = 8192
# A client that has not sent its request by then is dropped (a stuck or hostile peer).
REQUEST_TIMEOUT_S = 5.0
# A collection waits this long for the kernel's counters at most.
COLLECT_TIMEOUT_S = 5.0
# Scrapers are one or two Prometheus servers: more connections at once are refused.
MAX_CONNECTIONS = 8


def to_prometheus(family: Family) -> Metric:
    labels = [k for k, _ in family.samples[0].labels] if family.samples else []
    metric: GaugeMetricFamily | CounterMetricFamily
    if family.kind == "counter":
        metric = CounterMetricFamily(family.name, family.help, labels=labels)
    else:
        metric = GaugeMetricFamily(family.name, family.help, labels=labels)
    for s in family.samples:
        metric.add_metric([v for _, v in s.labels], s.value)
    return metric


class _Families(Collector):
    def __init__(self) -> None:
        self.families: Sequence[Family] = ()

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield to_prometheus(family)


# The text format's types for prometheus_client's (OpenMetrics) ones that the daemon exports.
_TEXT_TYPES = {"counter": "counter", "gauge": "gauge", "unknown": "untyped"}


def _number(value: float) -> str:
    # Go's formatting, as Prometheus writes numbers (prometheus_client leaves it unannotated).
    return str(_go_float(value))  # type: ignore[no-untyped-call]


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def text_format(metrics: Iterable[Metric]) -> bytes:
    """The text exposition format (0.0.4) of `metrics`: what generate_latest writes for them."""
    out: list[str] = []
    for metric in metrics:
        kind = _TEXT_TYPES.get(metric.type)
        if kind is None:
            raise ValueError(f"{metric.name}: metric type {metric.type} is not exported by impctl")
        name = metric.name + "_total" if kind == "counter" else metric.name
        help_text = metric.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {help_text}\n")
        out.append(f"# TYPE {name} {kind}\n")
        for s in metric.samples:
            if s.name.endswith("_created"):
                continue  # OpenMetrics' creation times: the text format has no place for them
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(s.labels.items()))
            out.append(f"{s.name}{{{labels}}} {_number(s.value)}\n" if labels
                       else f"{s.name} {_number(s.value)}\n")
    return "".join(out).encode("utf-8")


def registry_of(families: Sequence[Family], *, process: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    own = _Families()
    own.families = families
    registry.register(own)
    if process:
        ProcessCollector(registry=registry)
    return registry


def exposition(families: Sequence[Family], *, process: bool = False) -> bytes:
    """The text exposition of `families` (and the process_* metrics of this process if asked)."""
    return text_format(registry_of(families, process=process).collect())


class PrometheusExporter:
    """`impctl.usecases.metrics.MetricsExport` with prometheus_client."""

    python = ".".join(str(n) for n in sys.version_info[:3])

    def __init__(self, version: str) -> None:
        self.version = version
        self._server: asyncio.Server | None = None
        self._collect: Callable[[], Awaitable[Sequence[Family]]] | None = None
        self._clients = 0

    async def listen(self, host: str, port: int, collect: Callable[[], Awaitable[Sequence[Family]]]) -> None:
        """Serve GET /metrics on host:port; ServiceUnavailable if the address cannot be bound."""
        await self.close()
        self._collect = collect
        try:
            self._server = await asyncio.start_server(self._client, host, port, reuse_address=True,
                                                      limit=MAX_REQUEST_BYTES)
        except OSError as err:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ServiceUnavailable(f"metrics: cannot listen on {where}: {err.strerror or err}") from None

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def write_textfile(self, path: str, families: Sequence[Family]) -> None:
        # No process_* metrics here: node_exporter reports its own, and these would be stale.
        write_textfile(Path(path), exposition(families).decode("utf-8"))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        try:
            if self._clients > MAX_CONNECTIONS:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, body, ctype = await self._answer(head)
            method = head.split(b" ", 1)[0]
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype.encode() +
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" +
                         (b"" if method == b"HEAD" else body))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        finally:
            self._clients -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, head: bytes) -> tuple[bytes, bytes, str]:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return b"400 Bad Request", b"bad request\n", "text/plain"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return b"405 Method Not Allowed", b"GET /metrics\n", "text/plain"
        if target == b"/":
            return b"200 OK", b"impctl daemon: the metrics are at /metrics\n", "text/plain"
        if target != b"/metrics" or self._collect is None:
            return b"404 Not Found", b"not found: the metrics are at /metrics\n", "text/plain"
        try:
            families = await asyncio.wait_for(self._collect(), COLLECT_TIMEOUT_S)
            return b"200 OK", exposition(families, process=True), CONTENT_TYPE
        except Exception as err:  # a collection's failure is this scrape's, never the daemon's
            return b"500 Internal Server Error", f"{type(err).__name__}: {err}\n".encode(), "text/plain"

