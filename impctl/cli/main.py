"""The `impctl` command: global options, sub-commands, and the one error path."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from impctl import __version__
from impctl.cli import config_cmd as config_cli
from impctl.cli import connect as connect_cli
from impctl.cli import daemon as daemon_cli
from impctl.cli import interfaces as interfaces_cli
from impctl.cli import lab as lab_cli
from impctl.cli import nic as nic_cli
from impctl.cli import probe as probe_cli
from impctl.cli.context import CONFIG_ENV, STATE_ENV, resolve_globals
from impctl.cli.output import envelope, err_console, print_json, shown
from impctl.model.codes import ExitCode

app = typer.Typer(
    name="impctl",
    help="Connect a multi-interface Linux gateway to its cloud the impOS way.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(interfaces_cli.app, name="interfaces")
app.add_typer(nic_cli.app, name="nic")
app.command("probe")(probe_cli.probe)
app.command("daemon")(daemon_cli.daemon)
connect_cli.register(app)
app.add_typer(config_cli.app, name="config")
app.add_typer(lab_cli.app, name="lab")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"impctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    state: Annotated[
        Path | None,
        typer.Option("--state", help=f"State file (env {STATE_ENV}; default /var/lib/impctl/state.json)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help=f"Config file (env {CONFIG_ENV}; default /etc/impctl/impctl.toml)"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = resolve_globals(state, config)


_VALUE_OPTIONS = {"--state", "--config"}


def _command_name(argv: list[str]) -> str:
    """The command words of argv ("interfaces set"), for the JSON error envelope."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return " ".join(words[:2]) if words else "impctl"


def main(argv: list[str] | None = None) -> None:
    """Entry point: no traceback ever reaches the user (IMPCTL_DEBUG=1 shows them)."""
    args = list(sys.argv[1:] if argv is None else argv)
    json_out = "--json" in args
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="impctl", standalone_mode=False)
    except typer.Exit as exc:
        rc = exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        rc = 130
    except typer.TyperException as exc:
        rc = int(ExitCode.BAD_INPUT)
        if json_out:
            print_json(
                envelope(_command_name(args), rc, error={"kind": "usage", "message": exc.format_message()})
            )
        else:
            err_console.print(f"[bold red]error:[/] {shown(exc.format_message())}", highlight=False)
            err_console.print("[dim]try 'impctl --help'[/]", highlight=False)
    except KeyboardInterrupt:
        rc = 130
    except Exception as exc:  # a bug: one line, not a traceback
        if os.environ.get("IMPCTL_DEBUG"):
            raise
        rc = int(ExitCode.FAILURE)
        msg = f"internal error: {type(exc).__name__}: {exc}"
        if json_out:
            print_json(envelope(_command_name(args), rc, error={"kind": "internal", "message": msg}))
        else:
            err_console.print(f"[bold red]error:[/] {shown(msg)}", highlight=False)
    sys.exit(rc if isinstance(rc, int) else 0)
