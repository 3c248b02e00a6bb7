"""Rendering: a rich view for people, or one versioned JSON document for scripts.

Every command goes through `run()`, so success, failure and exit codes take
one path: the command's action returns a result, `render` draws it for a
person, `to_json` turns it into the `data` of the JSON envelope.

Whatever a person sees is made safe here, once, for every renderer: strings
come from NICs, the state file, NetworkManager, so they may hold terminal
escape sequences, lone surrogates (which cannot be encoded, a crash) or rich
markup (an SSID "[bold]" must print literally, "[/x]" must not raise).
`run()` hands renderers a copy of the result in which every string is
`shown()`: controls and surrogates escaped (`\\x1b`, `\\ud800`), and `[` and
`\\` swapped for two Unicode noncharacters that markup ignores; `safe_console`
swaps them back as the very last step and escapes any control character a
renderer's own text still carries. JSON output is the raw result.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.text import Text

from impctl.model.codes import ExitCode
from impctl.model.errors import ImpctlError, ValidationError

if TYPE_CHECKING:
    from rich.console import Console

JSON_VERSION = 1

T = TypeVar("T")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one versioned JSON document on stdout, nothing else.")
]

# Noncharacters (U+FDD0..U+FDEF are reserved for a program's internal use): markup never sees them.
_BRACKET = "\ufdd0"
_BACKSLASH = "\ufdd1"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0, DEL, C1, lone surrogates, and the two marks themselves should data hold them.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0\ufdd1]")
# In impctl's own text (templates, rich's segments) newlines are layout, not data.
_UNSAFE_LAYOUT = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_MARKS = re.compile("[\ufdd0\ufdd1]")
_NEEDS_UNMARK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufdd0\ufdd1]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with C0/C1 controls and lone surrogates written as escapes (`\\x1b`, `\\ud800`)."""
    return (_UNSAFE_LAYOUT if keep_newlines else _UNSAFE).sub(_escape, text)


def shown(text: str) -> str:
    """A data string made safe to put into markup: one printable line, brackets inert."""
    return escape_controls(text).replace("\\", _BACKSLASH).replace("[", _BRACKET)


def _unmark(text: str) -> str:
    if _MARKS.search(text):
        text = text.replace(_BRACKET, "[").replace(_BACKSLASH, "\\")
    return escape_controls(text, keep_newlines=True)


def for_humans(value: Any, _memo: dict[int, Any] | None = None) -> Any:
    """A copy of a result with every string (keys too) `shown()`; other values kept."""
    memo = {} if _memo is None else _memo
    if isinstance(value, Enum) or value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return shown(value)
    if id(value) in memo:
        return memo[id(value)]
    out: Any
    if isinstance(value, dict):
        out = {}
        memo[id(value)] = out
        for k, v in value.items():
            out[for_humans(k, memo)] = for_humans(v, memo)
    elif isinstance(value, list):
        out = []
        memo[id(value)] = out
        out.extend(for_humans(v, memo) for v in value)
    elif isinstance(value, tuple):
        items = [for_humans(v, memo) for v in value]
        out = type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    elif isinstance(value, set | frozenset):
        out = type(value)(for_humans(v, memo) for v in value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A shallow copy keeps the class (its properties and methods); fields are replaced
        # with object.__setattr__ so frozen dataclasses work too, and __init__ is not re-run.
        out = copy.copy(value)
        memo[id(value)] = out
        for f in dataclasses.fields(value):
            object.__setattr__(out, f.name, for_humans(getattr(value, f.name), memo))
    else:
        return value
    memo[id(value)] = out
    return out


def safe_console(**options: Any) -> Console:
    """A rich Console that never writes a raw control character, a surrogate or data markup.

    Defined on first use, with rich itself (see _LazyConsole).
    """
    from rich.console import Console
    from rich.errors import MarkupError
    from rich.segment import Segment

    class SafeConsole(Console):
        def render_str(self, text: str, **kwargs: Any) -> Text:
            text = escape_controls(text, keep_newlines=True)
            try:
                return super().render_str(text, **kwargs)
            except MarkupError:  # markup from data that escaped `shown()`: print it as it is
                return super().render_str(text, **{**kwargs, "markup": False})

        def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
            for segment in super().render(renderable, options):
                text, style, control = segment
                if control or not _NEEDS_UNMARK.search(text):
                    yield segment  # rich's own cursor movements and the like pass untouched
                else:
                    yield Segment(_unmark(text), style, control)

    return SafeConsole(**options)



class _LazyConsole:
    """A rich Console made on first use: rich costs tens of milliseconds to import,
    and `--version`, `--json` and the daemon's log lines never draw with it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _get(self) -> Console:
        if self._console is None:
            self._console = safe_console(**self._options)
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
        err_console.print(f"[bold red]error:[/] {shown(err.message)}", highlight=False, markup=True)
        if err.hint:
            err_console.print(f"[dim]hint: {shown(err.hint)}[/]", highlight=False)
    raise typer.Exit(code)


def run(
    command: str,
    json_out: bool,
    action: Callable[[], T],
    render: Callable[[T], None],
    to_json: Callable[[T], Any],
    exit_code: Callable[[T], int] = lambda _r: int(ExitCode.OK),
    *,
    escape: bool = True,
) -> NoReturn:
    """Run one command's action and render it; never lets a traceback out.

    `escape=False` hands `render` the raw result: only for a renderer that
    prints JSON itself (json.dumps escapes every control and surrogate).
    """
    try:
        result = action()
    except ImpctlError as err:
        fail(command, err, json_out)
    code = exit_code(result)
    if json_out:
        print_json(envelope(command, code, data=to_json(result)))
    else:
        render(for_humans(result) if escape else result)
    raise typer.Exit(code)
