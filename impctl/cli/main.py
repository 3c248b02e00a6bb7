"""The `impctl` command: global options, sub-commands, and the one error path.

A run imports the module of its own command only (see COMMANDS): the others
pull in asyncio, dbus-next, pyroute2, cryptography, the lab, and each costs
milliseconds that a gateway's scripts pay on every call. `impctl --help` and
shell completion load them all. bench/startup_bench.py measures this.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from impctl import __version__
from impctl.cli.context import CONFIG_ENV, STATE_ENV, resolve_globals
from impctl.cli.output import envelope, err_console, print_json, shown
from impctl.model.codes import ExitCode

if TYPE_CHECKING:
    # Typer (from 0.26 on) ships its own Click; these are its types.
    from typer._click import Command

# name: (module, attribute, help). The attribute is a Typer app (a group of
# commands) or a command function; help, when given, replaces its docstring.
# The order here is the order of `impctl --help`.
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "probe": ("impctl.cli.probe", "probe", None),
    "daemon": ("impctl.cli.daemon", "daemon", None),
    "connectwith": ("impctl.cli.connect", "connectwith_cmd", None),
    "connect": ("impctl.cli.connect", "connect_cmd", None),
    "disconnect": ("impctl.cli.connect", "disconnect_cmd", None),
    "status": ("impctl.cli.connect", "status_cmd", None),
    "info": ("impctl.cli.connect", "status_cmd", "Alias of status (imp.net.info)."),
    "interfaces": ("impctl.cli.interfaces", "app", None),
    "nic": ("impctl.cli.nic", "app", None),
    "config": ("impctl.cli.config_cmd", "app", None),
    "lab": ("impctl.cli.lab", "app", None),
}


def load_command(name: str) -> Command:
    """The Click command `name` as Typer builds it, importing its module now."""
    module, attribute, help_text = COMMANDS[name]
    target: Any = getattr(importlib.import_module(module), attribute)
    # Registered on a Typer of its own, so it is built exactly as on the root app.
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name, help=help_text)(target)
    return typer.main.get_group(holder).commands[name]


class LazyCommands(MutableMapping[str, "Command"]):
    """The root group's commands by name: every name of COMMANDS is there from the start
    (so help, completion and "Did you mean" see them all); a command is built, and its
    module imported, when it is looked up."""

    def __init__(self, loaded: Mapping[str, Command]) -> None:
        self._loaded = dict(loaded)

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded and name in COMMANDS:
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter([*COMMANDS, *(n for n in self._loaded if n not in COMMANDS)])

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._loaded.keys())


class LazyGroup(TyperGroup):
    """The root group, with LazyCommands."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.commands)


app = typer.Typer(
    name="impctl",
    help="Connect a multi-interface Linux gateway to its cloud the impOS way.",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
# Shell completion: eval "$(_IMPCTL_COMPLETE=source_bash impctl)" (or source_zsh, source_fish).
COMPLETE_ENV = "_IMPCTL_COMPLETE"


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
    if os.environ.get(COMPLETE_ENV):
        # Typer registers its shells only with add_completion (whose --install-completion
        # the root help does not offer); the shell's completion calls need them.
        from typer._completion_classes import completion_init

        completion_init()
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
