"""`impctl interfaces`: the failover sequence (imp.net.setserverinterfaces)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from impctl.backends.store import FileStore
from impctl.cli.context import get_globals
from impctl.cli.output import JsonOption, console, run
from impctl.usecases.interfaces import SequenceView, get_sequence, set_sequence

app = typer.Typer(
    help="The failover sequence connect walks (imp.net.setserverinterfaces).", no_args_is_help=True
)


def _json(view: SequenceView) -> dict[str, Any]:
    return {"sequence": view.sequence, "effective": view.effective, "index": view.index}


def _render(view: SequenceView) -> None:
    if view.sequence:
        console.print(f"sequence: [bold]{' → '.join(view.sequence)}[/]")
    else:
        console.print("sequence: [bold]default[/] (ethernet → wifi → cell)")
    console.print(f"[dim]connect tries: {', '.join(view.effective)}; index {view.index}[/]")


@app.command("set")
def set_cmd(
    ctx: typer.Context,
    identifiers: Annotated[
        list[str] | None,
        typer.Argument(help="Identifiers in order: ethernet wifi cell, or eth0 wl0 cell0 ... (none: default)"),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Store a new sequence: duplicates removed, specific ids made generic, index reset to 0."""
    store = FileStore(get_globals(ctx).state_path)
    run("interfaces set", json_out, lambda: set_sequence(store, identifiers or []), _render, _json)


@app.command("get")
def get_cmd(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Show the stored sequence ([] = the default order)."""
    store = FileStore(get_globals(ctx).state_path)
    run("interfaces get", json_out, lambda: get_sequence(store), _render, _json)


@app.command("clear")
def clear_cmd(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Go back to the default order (ethernet, wifi, cell)."""
    store = FileStore(get_globals(ctx).state_path)
    run("interfaces clear", json_out, lambda: set_sequence(store, []), _render, _json)
