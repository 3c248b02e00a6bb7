"""`impctl daemon`: the failover daemon in the foreground (systemd runs it as Type=notify)."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any

import typer

from impctl.cli.context import get_globals
from impctl.cli.layout import block, print_table, stack
from impctl.cli.output import JsonOption, console, fail, run
from impctl.model.errors import ImpctlError

COMMAND = "daemon"
# Narrower than this, a reason in a table column takes a line per word or two.
TEXT_MIN = 24


def _dicts(value: Any) -> list[dict[str, Any]]:
    # The view comes from the state file: a damaged one must render, not raise.
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _clock(at: Any) -> str:
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 < at < 2**40:
        return ""
    return time.strftime("%H:%M:%S", time.localtime(at))


def _took(took: Any) -> str:
    if isinstance(took, bool) or not isinstance(took, int | float) or not 0 <= took < 1e9:
        return "unverified"
    return f"{took * 1000:.0f} ms"


def render_view(view: dict[str, Any] | None) -> None:
    """The daemon's view (state.daemon) for people: uplinks with their health, last switches."""
    from rich.table import Column, Table

    if not view:
        console.print("the daemon has not run on this gateway (no daemon view in the state file)")
        return
    running = "running" if view.get("running") else "not running (last view)"
    console.print(f"daemon {running}, pid {view.get('pid')}, {view.get('mode')} mode: "
                  f"[bold]{view.get('phase')}[/] via [bold]{view.get('active') or 'nothing'}[/]"
                  + (f" — {view['lost_reason']}" if view.get("lost_reason") else ""), highlight=False)
    # Every column whole but the free text; where that does not fit (80 columns), a block per row.
    uplinks = [(("▶ " if u.get("active") else "  ") + str(u.get("identifier")), str(u.get("ifname")),
                str(u.get("class")), str(u.get("health")), str(u.get("failures")), str(u.get("last_reason") or ""))
               for u in _dicts(view.get("uplinks"))]
    table = Table(*(Column(h, no_wrap=True) for h in ("uplink", "ifname", "class", "health", "failures")),
                  Column("last result", overflow="fold", min_width=TEXT_MIN))
    for row in uplinks:
        table.add_row(*row)
    print_table(table, lambda: stack(None, [
        block(f"{up}  {ifname}  {cls}  {health}  failures {failures}", lines=[reason] if reason else [])
        for up, ifname, cls, health, failures, reason in uplinks]))
    switches = []
    for sw in _dicts(view.get("switches"))[-5:]:
        switches.append((_clock(sw.get("at")), str(sw.get("from") or "—"), str(sw.get("to")), str(sw.get("reason")),
                         _took(sw.get("took_s")), _ended(sw.get("sessions_ended"))))
    if switches:
        moves = Table(*(Column(h, no_wrap=True) for h in ("at", "from", "to")),
                      Column("reason", overflow="fold", min_width=TEXT_MIN), Column("took", no_wrap=True),
                      Column("ended", no_wrap=True))
        for move in switches:
            moves.add_row(*move)
        print_table(moves, lambda: stack("switches", [
            block(f"{at}  {frm} → {to}  took {took}  ended {ended}", lines=[reason])
            for at, frm, to, reason, took, ended in switches]))


def _ended(value: object) -> str:
    """Sessions a switch ended: "2+1" is 2 of the gateway's sockets and 1 LAN flow; "—" if none were."""
    if not isinstance(value, dict):
        return "—"
    return f"{value.get('sockets', 0)}+{value.get('conntrack', 0)}"


def daemon(
    ctx: typer.Context,
    status: Annotated[bool, typer.Option("--status", help="Show the running daemon's view and exit.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Keep the gateway connected: watch every uplink, fail over along the sequence, fail back.

    Runs in the foreground and logs one line per event (event=switch from=…
    to=… reason=… took_ms=…). Reacts within milliseconds to a lost link
    (netlink), within about two probe intervals to a silent upstream loss;
    switches by changing NetworkManager route metrics, verifies the new
    primary with a probe. Manual mode (a NIC pinned by connectwith): reports
    loss, never switches. `--status` (or `--json`) shows the running
    daemon's view instead: active uplink, health of each, last switches.
    SIGTERM stops, SIGHUP reloads the config and the sequence. Settings: the
    daemon section of the config file. Under systemd use
    systemd/impctl.service (Type=notify, watchdog).
    """


    g = get_globals(ctx)
    if status or json_out:
        # The view the daemon keeps in the state file: uplinks, health, last switches.
        def view() -> dict[str, Any] | None:
            from impctl.backends.statefile import load_state

            state = load_state(g.state_path)
            return state.daemon.to_json() if state.daemon else None

        run("daemon", json_out, view, render_view, lambda v: v)
    # The daemon runs in a fresh interpreter with only its own modules loaded
    # (impctl.cli.daemon_main): the same PID, a third of the memory.
    argv = [sys.executable, "-m", "impctl.cli.daemon_main", "--state", str(g.state_path),
            "--config", str(g.config_path), *(["--config-explicit"] if g.config_explicit else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, argv)
    except OSError as err:
        fail(COMMAND, ImpctlError(f"cannot start the daemon process ({sys.executable or 'no interpreter'}): "
                                  f"{err.strerror or err}"), False)
