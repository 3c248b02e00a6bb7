"""Rendering: a rich view for people, or one versioned JSON document for scripts.

Every command goes through `run()`, so success, failure and exit codes take
one path: the command's action returns a result, `render` draws it for a
person, `to_json` turns it into the `data` of the JSON envelope.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

from impctl.model.codes import ExitCode
from impctl.model.errors import ImpctlError, ValidationError

if TYPE_CHECKING:
    from rich.console import Console

JSON_VERSION = 1

T = TypeVar("T")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one versioned JSON document on stdout, nothing else.")
]


class _LazyConsole:
    """A rich Console made on first use: rich costs tens of milliseconds to import,
    and `--version`, `--json` and the daemon's log lines never draw with it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    # `with console:` (rich's Live and its stdout proxy) looks these up on the type, not via __getattr__.
    def __enter__(self) -> Console:
        return self._get().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._get().__exit__(*exc)


# emoji=False: ":name:" in an SSID or a reason is text, and rich's emoji table is not loaded.
console = cast("Console", _LazyConsole(emoji=False))
err_console = cast("Console", _LazyConsole(stderr=True, soft_wrap=True, emoji=False))


def envelope(command: str, exit_code: int, data: Any = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "impctl_json_version": JSON_VERSION,
        "command": command,
        "status": "ok" if error is None else "error",
        "exit_code": exit_code,
        "data": data,
        "error": error,
    }


def error_dict(err: ImpctlError) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": err.kind, "message": err.message}
    if err.hint:
        out["hint"] = err.hint
    if isinstance(err, ValidationError):
        out["path"] = err.path
    return out


def print_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def fail(command: str, err: ImpctlError, json_out: bool) -> NoReturn:
    code = int(err.exit_code)
    if json_out:
        print_json(envelope(command, code, error=error_dict(err)))
    else:
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False, markup=True)
        if err.hint:
            err_console.print(f"[dim]hint: {err.hint}[/]", highlight=False)
    raise typer.Exit(code)


def run(
    command: str,
    json_out: bool,
    action: Callable[[], T],
    render: Callable[[T], None],
    to_json: Callable[[T], Any],
    exit_code: Callable[[T], int] = lambda _r: int(ExitCode.OK),
) -> NoReturn:
    """Run one command's action and render it; never lets a traceback out."""
    try:
        result = action()
    except ImpctlError as err:
        fail(command, err, json_out)
    code = exit_code(result)
    if json_out:
        print_json(envelope(command, code, data=to_json(result)))
    else:
        render(result)
    raise typer.Exit(code)
