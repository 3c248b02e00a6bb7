"""`impctl lab …`: build, inspect, break and remove the gateway lab."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from impctl.cli.layout import block, print_table, stack
from impctl.cli.output import JsonOption, console, err_console, fail, run
from impctl.lab.faults import FAULTS6
from impctl.lab.lab import DEFAULT_PREFIX, DEFAULT_ROOT, FAULTS, Lab, LabStatus
from impctl.model.errors import ImpctlError, LabError

app = typer.Typer(
    help="A gateway lab: real NetworkManager with three uplinks, ISPs, a cloud and a LAN, in network "
    "namespaces (needs root).",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path, typer.Option("--dir", help="Lab directory (configs, logs, the impctl config).")
]
PrefixOption = Annotated[
    str, typer.Option("--prefix", help="Prefix of the lab's network namespace names.")
]

MODEM_STATES = ("no-sim", "sim-locked", "not-registered", "registration-denied", "registered",
                "bearer-refused", "bearer-dropped", "carrier-blackhole", "unplugged")


def _load(root: Path) -> Lab:
    return Lab.load(root)


@app.command()
def up(
    modem: Annotated[bool, typer.Option("--modem", help="Add ModemManager and a simulated modem.")]
    = False,
    ipv6: Annotated[bool, typer.Option(
        "--ipv6", help="Dual-stack ISPs and cloud (SLAAC, RDNSS); wwan0 IPv6-only with "
        "DNS64/NAT64 in its ISP.")] = False,
    root: DirOption = DEFAULT_ROOT,
    prefix: PrefixOption = DEFAULT_PREFIX,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a lab that is up.")] = False,
    connectivity_uri: Annotated[str | None, typer.Option(
        "--connectivity-uri",
        help="Turn on NM's connectivity check against this URI (the lab cloud answers "
        "http://cloud.imp.lab/).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Build the lab (cleans up after a crashed one first)."""

    def action() -> tuple[Lab, float]:
        lab = Lab(root, prefix, modem=modem, connectivity_uri=connectivity_uri, ipv6=ipv6)
        start = time.monotonic()
        lab.up(replace=replace)
        return lab, time.monotonic() - start

    def render(result: tuple[Lab, float]) -> None:
        lab, took = result
        console.print(f"[green]lab up[/] in {took:.2f} s at {lab.root}")
        _render_status(lab.status())
        console.print(f"\nTry: [bold]impctl lab exec -- impctl probe --all[/]  "
                      f"(config {lab.config_path})")

    def to_json(result: tuple[Lab, float]) -> dict[str, Any]:
        lab, took = result
        return {"up_s": round(took, 3), "env": lab.env(), **_status_json(lab.status())}

    run("lab up", json_out, action, render, to_json)


@app.command()
def down(root: DirOption = DEFAULT_ROOT, prefix: PrefixOption = DEFAULT_PREFIX,
         json_out: JsonOption = False) -> None:
    """Remove the lab: processes, namespaces, the lab directory (also after a crash)."""

    def action() -> tuple[str, float]:
        try:
            lab = Lab.load(root)
        except LabError:
            # No (readable) lab.json: clean up by name whatever a crash left.
            lab = Lab(root, prefix)
        start = time.monotonic()
        lab.down()
        return str(lab.root), time.monotonic() - start

    def render(result: tuple[str, float]) -> None:
        console.print(f"lab at {result[0]} down in {result[1]:.2f} s")

    run("lab down", json_out, action, render,
        lambda r: {"root": r[0], "down_s": round(r[1], 3)})


@app.command()
def status(root: DirOption = DEFAULT_ROOT, json_out: JsonOption = False) -> None:
    """Namespaces, daemons, uplinks with their addresses, active faults."""

    def action() -> LabStatus:
        return _load(root).status()

    run("lab status", json_out, action, _render_status, _status_json,
        lambda s: 0 if s.up else 8)


@app.command()
def fault(
    uplink: Annotated[str, typer.Argument(help="eth0, wlan0, wwan0, or modem.")],
    kind: Annotated[str, typer.Argument(
        help=f"IPv4: {', '.join(FAULTS)}; IPv6 (lab up --ipv6): {', '.join(FAULTS6)}; "
        f"restore; for modem: {', '.join(MODEM_STATES)}.")],
    root: DirOption = DEFAULT_ROOT,
    json_out: JsonOption = False,
) -> None:
    """Break one uplink (in its ISP only), or `restore` it to health."""

    def action() -> dict[str, Any]:
        lab = _load(root)
        start = time.monotonic()
        if kind == "restore":
            lab.restore(uplink)
        else:
            lab.fault(uplink, kind)
        return {"uplink": uplink, "fault": kind, "took_s": round(time.monotonic() - start, 3),
                "active": lab.faults()}

    def render(r: dict[str, Any]) -> None:
        what = "restored" if r["fault"] == "restore" else f"fault {r['fault']} applied"
        console.print(f"{r['uplink']}: {what} in {r['took_s']:.2f} s")

    run("lab fault", json_out, action, render, lambda r: r)


@app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    cmd: Annotated[list[str], typer.Argument(help="Command and arguments (after --).")],
    root: DirOption = DEFAULT_ROOT,
    lan: Annotated[bool, typer.Option("--lan", help="Run it on the LAN device behind the "
                                      "gateway instead.")] = False,
) -> None:
    """Run a command in the gateway namespace with the lab's bus, config and state set.

    With --lan, on the LAN device behind the gateway (its own namespace and resolv.conf).

    A lab whose daemons died still runs the command (e.g. to see what impctl does
    with NetworkManager down), with a warning naming them.
    """
    try:
        lab = _load(root)
        if not lab.is_built():
            raise LabError(f"the lab at {root} is not up: impctl lab status")
        dead = lab.dead_daemons()
    except ImpctlError as err:
        fail("lab exec", err, False)
    if dead:
        err_console.print(f"[yellow]warning:[/] lab daemon{'s' if len(dead) > 1 else ''} not "
                          f"running: {', '.join(dead)}", highlight=False)
    env = {**os.environ, **lab.env()}
    # So that `impctl` names this installation even when its bin directory is not on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    try:
        argv = lab.lan_exec_argv(cmd) if lan else lab.exec_argv(cmd)
        rc = subprocess.run(argv, env=env, check=False).returncode
    except KeyboardInterrupt:
        rc = 130
    raise typer.Exit(rc)


@app.command()
def demo(root: DirOption = DEFAULT_ROOT, prefix: PrefixOption = DEFAULT_PREFIX) -> None:
    """impctl's main job in the lab: a probe of every uplink, a failover by the daemon, a connectwith.

    Builds the lab if it is not up (else resets its state) and leaves it up.
    """
    from impctl.lab import demo as lab_demo

    lab = Lab(root, prefix)
    try:
        def ready(how: str, took: float) -> None:
            console.print(f"[green]lab {how}[/] in {took:.2f} s at {root}", highlight=False)

        for step in lab_demo.run(lab, ready):
            console.print(f"\n[bold]# {step.command}[/]", highlight=False, soft_wrap=True)
            # The commands' own output, as they printed it: not re-wrapped.
            console.print(step.output, highlight=False, markup=False, soft_wrap=True)
            if step.exit_code:
                console.print(f"[yellow](exit {step.exit_code})[/]")
    except ImpctlError as err:
        fail("lab demo", err, False)
    console.print(f"\nThe lab stays up: [bold]impctl lab exec -- impctl status[/], "
                  f"[bold]impctl lab down[/] ({root}).", highlight=False)


def _status_json(s: LabStatus) -> dict[str, Any]:
    return asdict(s)


def _render_status(s: LabStatus) -> None:
    state = "[green]up[/]" if s.up else "[red]not up[/]"
    if not s.built:
        state += " (no finished build: `impctl lab up` is running or was cut short)"
    console.print(f"lab {s.root} (prefix {s.prefix}): {state}")
    ns = Table(title="namespaces", show_header=False, box=None)
    for name, exists in s.namespaces.items():
        ns.add_row(name, "[green]present[/]" if exists else "[red]missing[/]")
    console.print(ns)
    daemons = Table(title="daemons")
    daemons.add_column("daemon")
    daemons.add_column("pid", justify="right")
    daemons.add_column("alive")
    for d in s.daemons:
        daemons.add_row(d.name, str(d.pid or "-"), "[green]yes[/]" if d.alive else "[red]no[/]")
    console.print(daemons)
    if s.uplinks:
        # Lists one item per line and no cell wrapped; where that does not fit, a block per uplink.
        t = Table(title="uplinks")
        for col in ("ifname", "carrier", "addresses", "default\nroute", "NM", "faults"):
            t.add_column(col, no_wrap=True)
        for u in s.uplinks:
            t.add_row(u.ifname, "yes" if u.carrier else "[red]no[/]",
                      "\n".join(u.addresses) or "-", "yes" if u.default_route else "no",
                      f"{u.nm_state}\n({u.nm_connection or '-'})",
                      "\n".join(u.faults) or "-")
        print_table(t, lambda: stack("uplinks", [block(
            f"{u.ifname}  carrier {'yes' if u.carrier else '[red]no[/]'}  "
            f"default route {'yes' if u.default_route else 'no'}  NM {u.nm_state} ({u.nm_connection or '-'})",
            [("addresses", ", ".join(u.addresses) or "-"), ("faults", ", ".join(u.faults) or "-")])
            for u in s.uplinks]))
    if s.lan is not None:
        lan = s.lan
        console.print(f"lan: {lan.ifname} {', '.join(lan.addresses) or '-'} NM {lan.nm_state} "
                      f"({lan.nm_connection or '-'}); device in {lan.device_netns}: "
                      f"{lan.device_address or 'no lease'} via {lan.device_router or '-'}",
                      highlight=False)
    if s.modem_state is not None:
        console.print(f"modem: {s.modem_state}")
