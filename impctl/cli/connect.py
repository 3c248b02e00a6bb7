"""`impctl connectwith`, `connect`, `disconnect`, `status` (alias `info`).

Parses options, runs one use case of impctl.usecases.connect in one
asyncio.run with the real backends (NM/MM over D-Bus, netlink, bound
sockets), renders a rich view or the JSON envelope.

Exit codes: 0 connected (or already connected); 10 + the impOS result code of
the last attempt when no attempt connected (11 NO_LINK/NO_WIFI … 23
PPP_NO_CONNECTIVITY); 2 bad input, 3 state/config file, 4 not permitted,
5 NM/MM/D-Bus not running, 6 no such interface, 7 timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from impctl.cli.context import Globals, get_globals
from impctl.cli.daemon import render_view
from impctl.cli.layout import block, print_table, stack
from impctl.cli.output import JsonOption, console, run

if TYPE_CHECKING:
    from rich.console import RenderableType

    from impctl.backends.gatewaylock import GatewayLock
    from impctl.backends.nm import NMClient
    from impctl.backends.store import FileStore
    from impctl.model.attempt import Attempt
    from impctl.model.config import Config
    from impctl.model.inventory import DeviceInfo
    from impctl.usecases import connect as uc
    from impctl.usecases import status as status_uc
    from impctl.usecases.ports import CloudCheck, Network

T = TypeVar("T")

TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout", min=1.0, max=3600.0,
        help="Seconds for the attempt (each attempt, for connect). Default 60, 120 for cellular.",
    ),
]


def _config(g: Globals) -> Config:
    from impctl.backends.config_file import load_config

    return load_config(g.config_path, explicit=g.config_explicit)


def _store(g: Globals) -> FileStore:
    from impctl.backends.store import FileStore

    return FileStore(g.state_path)


def _with_nm(g: Globals, body: Callable[[NMClient, Config], Awaitable[T]]) -> T:
    """Run `body` with NM/MM over D-Bus, in the one asyncio.run of the command."""
    import asyncio

    from impctl.backends.nm import NMClient, system_bus

    config = _config(g)

    async def main() -> T:
        async with system_bus() as bus:
            return await body(NMClient(bus, config), config)

    return asyncio.run(main())


def gateway_lock(g: Globals) -> GatewayLock:
    """The gateway lock beside the state file; a command that has to wait says so on stderr."""
    from impctl.backends.gatewaylock import GatewayLock, lock_path_for
    from impctl.cli.output import err_console

    return GatewayLock(lock_path_for(g.state_path), on_wait=lambda text: err_console.print(text, highlight=False))


async def read_devices(g: Globals) -> list[DeviceInfo]:
    """The gateway's devices, over a bus connection of their own."""
    from impctl.backends.nm import NMClient, system_bus

    config = _config(g)
    async with system_bus() as bus:
        return await NMClient(bus, config).devices()


def _with_network(g: Globals, body: Callable[[Network, CloudCheck, Config], Awaitable[T]]) -> T:
    """`_with_nm` and the staged probe as the cloud check, for connect and connectwith
    (status and disconnect do without netlink and the probe's sockets)."""
    from impctl.backends.netlink import Netlink
    from impctl.backends.probe_net import BoundSockets
    from impctl.usecases import connect as uc

    def with_check(network: Network, config: Config) -> Awaitable[T]:
        return body(network, uc.probe_check(config, links=Netlink(), net=BoundSockets()), config)

    return _with_nm(g, with_check)


def _attempt_line(a: Attempt) -> str:
    colour = "green" if a.ok else "red"
    where = f"{a.identifier} ({a.ifname})" if a.ifname else a.identifier
    return f"[{colour}]{a.code_name}[/] via {where} [dim]{a.stage}, {a.elapsed_s:.1f} s[/]: {a.reason}"


def _render_connect(report: uc.ConnectReport) -> None:
    if report.already_connected is not None:
        a = report.already_connected
        console.print(f"[green]already connected[/] via {a.identifier} ({a.ifname}); nothing changed")
        return
    if not report.attempts:
        console.print("[red]NOT_CONNECTED[/]: no interface to try")
        return
    for a in report.attempts:
        console.print(_attempt_line(a), highlight=False)
    last = report.attempts[-1]
    if report.connected:
        taken = last.details.get("previous_taken_down")
        extra = f"; {taken} taken down" if taken else ""
        console.print(f"[bold green]connected[/] via {last.identifier} ({last.ifname}), mode {report.mode}{extra}")
    else:
        console.print(f"[bold red]not connected[/]: {last.code_name} (exit {report.exit_code})")


def connectwith_cmd(
    ctx: typer.Context,
    nic: Annotated[str, typer.Option("--nic", help="NIC table as JSON: a file, or - for stdin.")],
    timeout: TimeoutOption = None,
    json_out: JsonOption = False,
) -> None:
    """Connect through the interface a NIC names (server.connectwith); pins it (manual mode)."""
    from impctl.usecases import connect as uc

    g = get_globals(ctx)

    def action() -> uc.ConnectReport:
        from impctl.backends.resolvconf import system_nameservers
        from impctl.backends.sessions import end_sessions
        from impctl.cli.nic import read_nic_file

        parsed = read_nic_file(nic)
        store = _store(g)
        return _with_network(
            g,
            lambda network, check, config: uc.connectwith(
                parsed, network=network, check=check, store=store, gateway=gateway_lock(g), config=config,
                timeout_s=timeout, end_sessions=end_sessions, resolver=system_nameservers,
            ),
        )

    run("connectwith", json_out, action, _render_connect, lambda r: r.to_json(), lambda r: r.exit_code)


def connect_cmd(ctx: typer.Context, timeout: TimeoutOption = None, json_out: JsonOption = False) -> None:
    """Connect through the current interface (server.connect): the pin, else the failover sequence."""
    from impctl.usecases import connect as uc

    g = get_globals(ctx)

    def action() -> uc.ConnectReport:
        from impctl.backends.resolvconf import system_nameservers
        from impctl.backends.sessions import end_sessions

        store = _store(g)
        return _with_network(
            g,
            lambda network, check, config: uc.connect(
                network=network, check=check, store=store, gateway=gateway_lock(g), config=config,
                timeout_s=timeout, end_sessions=end_sessions, resolver=system_nameservers,
            ),
        )

    run("connect", json_out, action, _render_connect, lambda r: r.to_json(), lambda r: r.exit_code)


def _render_disconnect(report: uc.DisconnectReport) -> None:
    if report.was_connected:
        console.print(f"disconnected: {report.identifier} ({report.ifname}) taken down")
    else:
        console.print("not connected: nothing to take down")


def disconnect_cmd(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Take the current uplink down (server.disconnect).

    Afterwards the gateway is not connected, whatever else still routes: the
    next connect walks the failover sequence from its first entry.
    """
    from impctl.usecases import connect as uc

    g = get_globals(ctx)

    def action() -> uc.DisconnectReport:
        store = _store(g)
        return _with_nm(g, lambda network, _config: uc.disconnect(
            network=network, store=store, gateway=gateway_lock(g)))

    run("disconnect", json_out, action, _render_disconnect, lambda r: r.to_json())


def _cell(value: Any) -> str:
    if value is None or value == [] or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _radio(d: dict[str, Any]) -> str:
    if "cell" in d:
        c = d["cell"]
        access = f" {'/'.join(c['access_technologies'])}" if c.get("access_technologies") else ""
        bearer = c.get("bearer") or {}
        if bearer.get("connected"):
            where = " ".join(str(v) for v in (bearer.get("interface"), bearer.get("address")) if v)
            bearer_text = f", bearer up{' on ' + where if where else ''}"
        else:
            bearer_text = ", bearer down" + (f" (last error {bearer['error']})" if bearer.get("error") else "")
        return (
            f"{_cell(c['operator'])} {_cell(c['registration']).lower()}{access}, SIM {c['sim']},"
            f" signal {_cell(c['signal'])}%, modem {c['modem_state'].lower()}{bearer_text}"
        )
    if "wifi" in d and d["wifi"]["ssid"] is not None:
        w = d["wifi"]
        return f"{w['ssid']} {w['signal']}%" if w["signal"] is not None else str(w["ssid"])
    return ""


def _lines(value: Any) -> str:
    return "\n".join(str(v) for v in value) if isinstance(value, list) and value else _cell(value)


def _ipv6_fields(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The IPv6 lines of an interface, only where NM has IPv6 facts for it."""
    v6 = d.get("ipv6") or {}
    if not (v6.get("addresses") or v6.get("gateway") or v6.get("dns")):
        return []
    return [("ipv6", _cell(v6["addresses"])), ("gateway6", _cell(v6["gateway"])), ("dns6", _cell(v6["dns"]))]


def _with6(d: dict[str, Any], key: str) -> Any:
    """A table cell's IPv4 value(s) with the IPv6 ones below them."""
    v6 = (d.get("ipv6") or {}).get(key)
    v4 = d[key]
    if not v6:
        return v4
    return [*(v4 if isinstance(v4, list) else [v4] if v4 else []), *(v6 if isinstance(v6, list) else [v6])]


def _status_stacked(rows: list[dict[str, Any]], radios: list[str]) -> RenderableType:
    from rich.text import Text

    blocks = []
    for d, radio in zip(rows, radios, strict=True):
        head = Text.assemble(("● " if d["active"] else "  ", "green"), (d["identifier"], "bold"), "  ",
                             d["ifname"], "  ", d["class"], "  ", d["nm_state"].lower())
        fields = [("address", _cell(d["addresses"])), ("gateway", _cell(d["gateway"])),
                  ("dns", _cell(d["dns"])), ("metric", _cell(d["route_metric"])), *_ipv6_fields(d)]
        blocks.append(block(head, fields + ([("radio", radio)] if radio else [])))
    return stack("interfaces", blocks)


def _render_status(report: status_uc.StatusReport) -> None:
    from rich.table import Table

    doc = report.to_json()
    rows = doc["interfaces"]
    radios = [_radio(d) for d in rows]
    # No box and no edge padding: more room on narrow terminals. Addresses one per line and
    # never wrapped; where that does not fit (a serial console's 80 columns), one block per
    # interface.
    table = Table(title="interfaces", title_justify="left", box=None, pad_edge=False, padding=(0, 1),
                  header_style="bold")
    columns = ["", "id", "ifname", "class", "state", "address", "gateway", "dns", "metric"]
    if any(radios):
        columns.append("radio")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col != "radio")
    for d, radio in zip(rows, radios, strict=True):
        cells = [
            "[green]●[/]" if d["active"] else "",
            d["identifier"], d["ifname"], d["class"], d["nm_state"].lower(), _lines(_with6(d, "addresses")),
            _lines(_with6(d, "gateway")), _lines(_with6(d, "dns")), _cell(d["route_metric"]),
        ]
        table.add_row(*cells, *([radio] if any(radios) else []))
    print_table(table, lambda: _status_stacked(rows, radios))
    for d in doc["lan"]:
        # A LAN port is where the gateway's clients are: not an uplink, so not in the table.
        console.print(f"lan: {d['ifname']}  {d['nm_state'].lower()}  {', '.join(d['addresses']) or '-'}"
                      f"  ({d['profile'] or '-'})", highlight=False)
    mode = doc["mode"] + (f" (pinned {doc['pinned']})" if doc["pinned"] else "")
    console.print(f"mode: {mode}; sequence: {', '.join(doc['sequence']) or 'default'}")
    err = doc["last_error"]
    if err:
        console.print(
            f"last error: [red]{err.get('name')}[/] via {err.get('identifier')}: {err.get('reason')}", highlight=False
        )
    if doc["daemon"]:
        console.print()
        render_view(doc["daemon"])


def status_cmd(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Every interface, the active one and the last error (imp.net.info). Changes nothing."""
    from impctl.usecases import status as status_uc

    g = get_globals(ctx)

    def action() -> status_uc.StatusReport:
        store = _store(g)
        from impctl.backends.process import pid_alive

        return _with_nm(g, lambda network, _config: status_uc.status(
            network=network, store=store, pid_alive=pid_alive))

    run("status", json_out, action, _render_status, lambda r: r.to_json())
