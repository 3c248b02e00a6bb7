"""`impctl probe`: can the cloud be reached through each interface, and if not, why?

Parses options, runs the probe use case (one asyncio.run), renders: a live
table with a spinner per interface for people, one JSON document for scripts,
and optionally a node_exporter textfile.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from impctl.backends.config_file import CLOUD_ENV
from impctl.cli.context import Globals, get_globals
from impctl.cli.layout import block, print_table, stack
from impctl.cli.output import JsonOption, console, envelope, fail, run
from impctl.model.errors import ConfigError, ImpctlError, ValidationError

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from impctl.model.config import Config
    from impctl.model.inventory import DeviceInfo
    from impctl.model.nic import Secret
    from impctl.model.probe import InterfaceProbe, ProbeReport, Stage, StageResult
    from impctl.usecases.probe import Decrypt, ProbeProxy

COMMAND = "probe"
PROXY_PASSWORD_ENV = "IMPCTL_PROXY_PASSWORD"
# Kept back from --timeout for drawing the result and writing files.
RENDER_MARGIN_S = 0.2
REASON_MIN = 32


def _decrypter(g: Globals) -> Decrypt:
    from impctl.backends.secrets import decrypt_secret, key_path_for

    key_path = key_path_for(g.state_path)

    def decrypt(secret: Secret | None, where: str) -> str | None:
        return decrypt_secret(secret, key_path, where)

    return decrypt


async def _inventory(config: Config, timeout_s: float) -> list[DeviceInfo]:
    from impctl.backends.nm import read_inventory

    return await read_inventory(config, timeout_s=timeout_s, ipv6_method=True)


class LiveView:
    """What the live table shows while stages run: per interface the stages done
    and the one running."""

    def __init__(self) -> None:
        self.devices: list[DeviceInfo] = []
        self.done: dict[str, list[StageResult]] = {}
        self.running: dict[str, Stage | None] = {}
        self.results: dict[str, InterfaceProbe] = {}

    def on_devices(self, devices: list[DeviceInfo]) -> None:
        self.devices = devices

    def listener(self, ifname: str, stage: Stage, result: StageResult | None) -> None:
        if result is None:
            self.running[ifname] = stage
        else:
            self.done.setdefault(ifname, []).append(result)
            self.running[ifname] = None

    def on_result(self, result: InterfaceProbe) -> None:
        self.results[result.ifname] = result

    def table(self) -> Table:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        table = Table(title="probing the cloud through each interface", title_justify="left")
        for col in ("interface", "ifname", "class", "stage", "stages done"):
            table.add_column(col)
        if not self.devices:
            table.add_row(Spinner("dots", text="reading interfaces"), "", "", "", "")
        for d in self.devices:
            name = d.extra.get("ip_ifname") or d.ifname
            stages = self.done.get(name, [])
            failed = next((s for s in stages if not s.ok and not s.skipped), None)
            current = self.running.get(name)
            result = self.results.get(name)
            if result is not None:
                status: Any = Text(("✓ " if result.connected else "✗ ") + result.code_name,
                                   style="green" if result.connected else "red")
            elif failed is not None:
                status = Text(f"✗ {failed.name}", style="red")
            elif current is not None:
                status = Spinner("dots", text=current.value)
            else:
                status = Spinner("dots", text="…")
            table.add_row(d.identifier, name, d.iface_class, status, _stage_marks(stages))
        return table


def _stage_marks(stages: list[StageResult] | tuple[StageResult, ...]) -> Text:
    from rich.text import Text

    text = Text()
    for s in stages:
        if s.skipped:
            text.append(f"{s.name}- ", style="dim")
        elif s.ok:
            text.append(f"{s.name}✓ ", style="green")
        else:
            text.append(f"{s.name}✗ ", style="bold red")
    return text


def _render(report: ProbeReport) -> None:
    from rich.table import Table

    title = f"cloud {report.cloud}" + (" (TLS)" if report.tls else "")
    if report.proxy:
        title += f" via proxy {report.proxy}"
    table = Table(title=title, title_justify="left")
    table.add_column("interface", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("time", no_wrap=True, justify="right")
    # The one column that wraps (between words). Where it would get fewer than REASON_MIN
    # columns (a reason then takes a line per word or two), or a word of it would not fit: _stacked.
    table.add_column("stages, reason", overflow="fold", min_width=REASON_MIN)
    for r in report.results:
        detail = _stage_marks(r.stages)
        detail.append("\n" + (r.reason or _success_text(r)))
        for line in _family_lines(r):
            detail.append("\n")
            detail.append_text(line)
        table.add_row(_interface(r), r.iface_class, _result(r), _took(r), detail)
    print_table(table, lambda: _stacked(title, report))
    ok = sum(1 for r in report.results if r.connected)
    console.print(f"[dim]{ok}/{len(report.results)} interfaces reach the cloud; "
                  f"{report.duration_ms / 1000:.2f} s[/]", highlight=False)


def _interface(r: InterfaceProbe) -> Text:
    from rich.text import Text

    return Text.assemble(r.identifier, (f" {r.ifname}", "dim")) if r.ifname != r.identifier else Text(r.identifier)


def _result(r: InterfaceProbe) -> Text:
    from rich.text import Text

    return Text(f"{r.code_name} ({int(r.code)})", style="bold green" if r.connected else "bold red")


def _took(r: InterfaceProbe) -> str:
    return f"{r.duration_ms / 1000:.2f} s"


def _stacked(title: str, report: ProbeReport) -> RenderableType:
    """The result for a narrow console: a line per interface, its stages and reason below it."""
    from rich.text import Text

    blocks = []
    for r in report.results:
        head = Text.assemble(_interface(r), "  ", r.iface_class, "  ", _result(r), "  ", _took(r))
        marks = _stage_marks(r.stages)
        marks.rstrip()
        blocks.append(block(head, lines=[marks, Text(r.reason or _success_text(r)), *_family_lines(r)]))
    return stack(title, blocks)


def _family_lines(r: InterfaceProbe) -> list[Text]:
    """Which families reach the cloud ("ipv4 ✓  ipv6 not configured"), then a line per
    warning: the failure of a family that did not decide the result."""
    from rich.text import Text

    if len(r.families) < 2:
        return []
    summary = Text()
    for f in r.families:
        if summary:
            summary.append("  ")
        if f.connected:
            summary.append(f"{f.family.value} ✓", style="green")
        elif f.configured:
            summary.append(f"{f.family.value} ✗", style="red")
        else:
            summary.append(f"{f.family.value} not configured", style="dim")
    return [summary, *(Text(f"⚠ {w}", style="yellow") for w in r.warnings)]


def _success_text(r: InterfaceProbe) -> str:
    parts = [r.details.get("resolved", "")]
    if r.details.get("tls"):
        parts.append(r.details["tls"])
    return " ".join(p for p in parts if p)


def _with_require_family(config: Config, value: str | None) -> Config:
    import dataclasses

    from impctl.model.config import REQUIRE_FAMILIES

    if value is None:
        return config
    if value not in REQUIRE_FAMILIES:
        raise ValidationError("--require-family", f"must be one of {', '.join(REQUIRE_FAMILIES)}, got {value!r}")
    return dataclasses.replace(config, probe=dataclasses.replace(config.probe, require_family=value))


def _parse_proxy(proxy: str | None, proxy_user: str | None) -> ProbeProxy | None:
    from impctl.model.config import parse_host_port
    from impctl.usecases.probe import ProbeProxy

    if proxy is None:
        return None
    try:
        host, port = parse_host_port(proxy, "--proxy")
    except ConfigError as err:
        raise ValidationError("--proxy", err.message) from None
    password = os.environ.get(PROXY_PASSWORD_ENV) if proxy_user else None
    return ProbeProxy(host, port, proxy_user, password)


async def _probe_once(
    g: Globals,
    config: Config,
    targets: list[str],
    timeout_s: float,
    proxy: ProbeProxy | None,
    no_proxy: bool,
    live: bool,
) -> ProbeReport:
    from impctl.backends.netlink import Netlink
    from impctl.backends.probe_net import BoundSockets
    from impctl.backends.statefile import load_state
    from impctl.usecases.probe import probe_gateway

    state = load_state(g.state_path)
    view = LiveView()

    async def go() -> ProbeReport:
        return await probe_gateway(
            config, state, targets,
            inventory=_inventory, links=Netlink(), net=BoundSockets(), decrypt=_decrypter(g),
            timeout_s=max(0.1, timeout_s - RENDER_MARGIN_S), proxy_override=proxy,
            no_proxy=no_proxy, listener=view.listener, on_devices=view.on_devices,
            on_result=view.on_result,
        )

    if not live:
        return await go()
    from rich.live import Live

    with Live(console=console, get_renderable=view.table, refresh_per_second=12, transient=True):
        return await go()


def probe(
    ctx: typer.Context,
    ifaces: Annotated[
        list[str] | None,
        typer.Argument(help="Interfaces to probe: eth0 wl0 cell0, ethernet/wifi/cell, or ifnames (default: all)",
                       show_default=False),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Probe every interface (the default).")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.5, max=3600.0,
                     help="Seconds for the whole probe (default: the config's probe.total_timeout_s, 10)"),
    ] = None,
    json_out: JsonOption = False,
    prometheus: Annotated[
        Path | None,
        typer.Option("--prometheus", help="Also write the node_exporter textfile here (atomically), e.g. "
                     "/var/lib/node_exporter/textfile/impctl.prom"),
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option("--watch", min=1.0, max=86400.0, help="Probe again every S seconds until interrupted."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="With --watch: stop after N probes.")
    ] = None,
    cloud: Annotated[
        str | None,
        typer.Option("--cloud", help=f"Cloud endpoint HOST:PORT (env {CLOUD_ENV}; default: the config file)"),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option("--proxy", help=f"Probe Ethernet/WiFi through this HTTP proxy HOST:PORT instead of the stored "
                     f"one (password from env {PROXY_PASSWORD_ENV})"),
    ] = None,
    proxy_user: Annotated[str | None, typer.Option("--proxy-user", help="Username for --proxy.")] = None,
    no_proxy: Annotated[bool, typer.Option("--no-proxy", help="Ignore the stored proxy: connect directly.")] = False,
    require_family: Annotated[
        str | None,
        typer.Option("--require-family", help="Families that must reach the cloud for SERVER_CONNECTED: any, all, "
                     "ipv4, ipv6 (default: the config's probe.require_family, any)"),
    ] = None,
) -> None:
    """Probe the cloud through every interface at once, stage by stage.

    Ethernet/WiFi: link, address + default route, DNS through the interface's
    own servers, proxy (when configured), TCP, TLS. Cellular: modem, SIM,
    registration, bearer, then the same network stages, for IPv4 and IPv6 at
    once (--require-family: which must work). Exit status: 0 when
    every interface reaches the cloud; 10 + result code when one interface was
    probed; 9 when several were and some failed.
    """
    import asyncio

    from impctl.backends.config_file import load_config
    from impctl.backends.textfile import write_textfile
    from impctl.model.probe import render_prometheus, report_to_json

    g = get_globals(ctx)
    targets = list(ifaces or [])

    def prepare() -> tuple[Config, float, ProbeProxy | None]:
        if all_ and targets:
            raise ValidationError("--all", "give interfaces or --all, not both")
        if proxy_user and not proxy:
            raise ValidationError("--proxy-user", "needs --proxy")
        if proxy and no_proxy:
            raise ValidationError("--no-proxy", "conflicts with --proxy")
        if count is not None and watch is None:
            raise ValidationError("--count", "needs --watch")
        config = _with_require_family(load_config(g.config_path, explicit=g.config_explicit, cloud=cloud),
                                      require_family)
        total = timeout if timeout is not None else config.probe.total_timeout_s
        return config, total, _parse_proxy(proxy, proxy_user)

    live = not json_out and console.is_terminal

    async def once(config: Config, total: float, probe_proxy: ProbeProxy | None) -> ProbeReport:
        report = await _probe_once(g, config, targets, total, probe_proxy, no_proxy, live)
        if prometheus is not None:
            write_textfile(prometheus, render_prometheus(report))
        return report

    if watch is None:
        def action() -> ProbeReport:
            return asyncio.run(once(*prepare()))

        run(COMMAND, json_out, action, _render, report_to_json, lambda r: r.exit_code)

    # --watch: one document per probe (compact, one per line) or one table.
    interval_s = watch

    async def session() -> int:
        settings = prepare()
        runs = 0
        code = 0
        while True:
            began = time.monotonic()
            report = await once(*settings)
            code = report.exit_code
            runs += 1
            if json_out:
                sys.stdout.write(json.dumps(envelope(COMMAND, code, data=report_to_json(report))) + "\n")
                sys.stdout.flush()
            else:
                _render(report)
            if count is not None and runs >= count:
                return code
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - began)))

    try:
        code = asyncio.run(session())
    except ImpctlError as err:
        fail(COMMAND, err, json_out)
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)
