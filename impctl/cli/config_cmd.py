"""`impctl config`: the stored settings a bare NIC uses, and the current NIC.

imp.setwificonfiguration → `config wifi`, imp.setstaticnetworkconfiguration →
`config static`, imp.setproxy → `config proxy`, imp.clearconfiguration →
`config clear`, imp.net.getcurrentconfig → `config current`. Secrets are
encrypted with the gateway key before they are stored and never printed.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

import typer

from impctl.backends.store import FileStore
from impctl.cli.context import get_globals
from impctl.cli.layout import print_key_values
from impctl.cli.output import JsonOption, console, run
from impctl.usecases import config as uc

app = typer.Typer(help="Stored network settings (imp.setwificonfiguration, setproxy ...).", no_args_is_help=True)

KEY_ENV = "IMPCTL_WIFI_KEY"
PROXY_PASSWORD_ENV = "IMPCTL_PROXY_PASSWORD"

InterfaceOption = Annotated[
    str | None,
    typer.Option("--interface", help="Apply only to this interface (eth0, wl0, wifi ...). Default: every one."),
]


def _render_view(view: uc.ConfigView) -> None:
    if view.cleared:
        console.print(f"cleared: {', '.join(view.cleared)}")
    if not view.stored:
        console.print("no stored settings")
    else:
        rows = []
        for kind, values in view.stored.items():
            for key, value in values.items():
                shown = ", ".join(value) if isinstance(value, list) else ("—" if value is None else str(value))
                rows.append((f"{kind}.{key}", shown))
        print_key_values("stored settings", rows)
    console.print(f"[dim]sequence: {', '.join(view.sequence) or 'default'}[/]")


def _view_json(view: uc.ConfigView) -> dict[str, Any]:
    return view.to_json()


@app.command("wifi")
def wifi_cmd(
    ctx: typer.Context,
    ssid: Annotated[str, typer.Option("--ssid", help="Network name (1-32 bytes).")],
    key: Annotated[
        str | None,
        typer.Option("--key", help=f"WPA passphrase; omit or '' for an open network (or env {KEY_ENV})."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Store the WiFi network a bare NIC on WiFi hardware joins (key encrypted)."""
    store = FileStore(get_globals(ctx).state_path)
    secret = key if key is not None else os.environ.get(KEY_ENV)
    run("config wifi", json_out, lambda: uc.config_wifi(store, ssid, secret), _render_view, _view_json)


@app.command("static")
def static_cmd(
    ctx: typer.Context,
    ip: Annotated[str, typer.Option("--ip", help="IPv4 address.")],
    netmask: Annotated[str, typer.Option("--netmask", help="Netmask, e.g. 255.255.255.0.")],
    gateway: Annotated[str, typer.Option("--gateway", help="Default gateway.")],
    dns: Annotated[list[str], typer.Option("--dns", help="DNS server (give once or twice).")],
    interface: InterfaceOption = None,
    json_out: JsonOption = False,
) -> None:
    """Store a static IPv4 configuration for Ethernet/WiFi interfaces."""
    store = FileStore(get_globals(ctx).state_path)
    run(
        "config static", json_out,
        lambda: uc.config_static(store, ip, netmask, gateway, list(dns), interface),
        _render_view, _view_json,
    )


@app.command("proxy")
def proxy_cmd(
    ctx: typer.Context,
    address: Annotated[str, typer.Option("--address", help="Proxy host name or IPv4 address.")],
    port: Annotated[int, typer.Option("--port", help="Proxy port.")],
    username: Annotated[str | None, typer.Option("--username", help="Proxy user name.")] = None,
    password: Annotated[
        str | None, typer.Option("--password", help=f"Proxy password (or env {PROXY_PASSWORD_ENV}).")
    ] = None,
    interface: InterfaceOption = None,
    json_out: JsonOption = False,
) -> None:
    """Store the HTTP proxy used through Ethernet/WiFi (password encrypted)."""
    store = FileStore(get_globals(ctx).state_path)
    secret = password if password is not None else os.environ.get(PROXY_PASSWORD_ENV)
    run(
        "config proxy", json_out,
        lambda: uc.config_proxy(store, address, port, username, secret, interface),
        _render_view, _view_json,
    )


@app.command("clear")
def clear_cmd(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="wifi, static, proxy, or all (all also clears the sequence).")] = "all",
    json_out: JsonOption = False,
) -> None:
    """Forget stored settings (imp.clearconfiguration)."""
    store = FileStore(get_globals(ctx).state_path)
    run("config clear", json_out, lambda: uc.config_clear(store, kind), _render_view, _view_json)


@app.command("show")
def show_cmd(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Show the stored settings (secrets described, never shown)."""
    store = FileStore(get_globals(ctx).state_path)
    run("config show", json_out, lambda: uc.config_show(store), _render_view, _view_json)


def _render_current(current: uc.CurrentConfig) -> None:
    if current.nic is None:
        console.print("not connected: there is no current NIC")
        return
    # Plain JSON on stdout so that `impctl config current > nic.json` feeds connectwith --nic.
    typer.echo(json.dumps(current.nic, indent=2))


@app.command("current")
def current_cmd(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """The NIC of the current connection, secrets encrypted (imp.net.getcurrentconfig)."""
    g = get_globals(ctx)
    store = FileStore(g.state_path)

    def action() -> uc.CurrentConfig:
        from impctl.cli.connect import read_devices  # the NM backends load only for this command

        return asyncio.run(uc.config_current(store, lambda: read_devices(g)))

    run(
        "config current", json_out, action, _render_current,
        lambda c: {"nic": c.nic}, lambda c: c.exit_code, escape=False,  # its human output is JSON
    )
