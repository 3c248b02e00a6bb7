"""`impctl daemon`: the failover daemon in the foreground (systemd runs it as Type=notify)."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any

import typer

from impctl.backends.statefile import load_state
from impctl.cli.context import get_globals
from impctl.cli.output import JsonOption, console, fail, run
from impctl.model.errors import ImpctlError

COMMAND = "daemon"


def render_view(view: dict[str, Any]) -> None:
    """The daemon's view (state.daemon) for people: uplinks with their health, last switches."""
    from rich.table import Table

    if not view:
        console.print("the daemon has not run on this gateway (no daemon view in the state file)")
        return
    running = "running" if view.get("running") else "not running (last view)"
    console.print(f"daemon {running}, pid {view.get('pid')}, {view.get('mode')} mode: "
                  f"[bold]{view.get('phase')}[/] via [bold]{view.get('active') or 'nothing'}[/]"
                  + (f" — {view['lost_reason']}" if view.get("lost_reason") else ""), highlight=False)
    table = Table("uplink", "ifname", "class", "health", "failures", "last result")
    for u in view.get("uplinks", []):
        mark = "▶ " if u.get("active") else "  "
        table.add_row(mark + str(u.get("identifier")), str(u.get("ifname")), str(u.get("class")),
                      str(u.get("health")), str(u.get("failures")), str(u.get("last_reason") or ""))
    console.print(table)
    switches = view.get("switches", [])[-5:]
    if switches:
        moves = Table("at", "from", "to", "reason", "took")
        for sw in switches:
            at = time.strftime("%H:%M:%S", time.localtime(sw["at"])) if sw.get("at") else ""
            took = f"{sw['took_s'] * 1000:.0f} ms" if sw.get("took_s") is not None else "unverified"
            moves.add_row(at, str(sw.get("from") or "—"), str(sw.get("to")), str(sw.get("reason")), took)
        console.print(moves)


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
        run("daemon", json_out, lambda: load_state(g.state_path).daemon, render_view, lambda v: v)
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
