"""`impctl nic check`: validate a NIC table and show what impctl understood."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from impctl.cli.layout import print_key_values
from impctl.cli.output import JsonOption, console, run
from impctl.model.errors import ValidationError
from impctl.model.nic import NIC_LIMITS, Nic, nic_summary, parse_nic_text

app = typer.Typer(help="NIC tables (server.connectwith's settings).", no_args_is_help=True)

MAX_NIC_BYTES = NIC_LIMITS.max_bytes


def read_nic_file(source: str) -> Nic:
    """Read and parse a NIC from a file path or `-` (stdin). Used by connectwith too.

    Bytes, not text: the UTF-8 check is the decoder's, whatever the locale
    (a text stdin under the C locale would turn bad bytes into surrogates).
    At most one byte past the limit is read, so /dev/zero cannot exhaust memory.
    """
    name = "NIC on stdin" if source == "-" else f"NIC file {source}"
    try:
        data: bytes | str
        if source == "-":
            # A replaced stdin (a test's StringIO) may have no bytes underneath: read its text.
            stream = getattr(sys.stdin, "buffer", sys.stdin)
            data = stream.read(MAX_NIC_BYTES + 1)
        else:
            with Path(source).open("rb") as f:
                data = f.read(MAX_NIC_BYTES + 1)
    except FileNotFoundError:
        raise ValidationError("", f"NIC file {source} does not exist") from None
    except IsADirectoryError:
        raise ValidationError("", f"NIC file {source} is a directory") from None
    except PermissionError:
        raise ValidationError("", f"NIC file {source} cannot be read: permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ValidationError("", f"NIC file {source} cannot be read: {exc}") from None
    return parse_nic_text(data, name)


def _render(summary: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for section, value in summary.items():
        if isinstance(value, dict):
            for key, sub in value.items():
                rows.append((f"{section}.{key}", ", ".join(sub) if isinstance(sub, list) else str(sub)))
        else:
            rows.append((section, str(value) if value is not None else "(an interface name)"))
    print_key_values("NIC understood", rows)
    console.print("[green]valid[/]")


@app.command("check")
def check_cmd(
    source: Annotated[str, typer.Argument(help="NIC file (JSON), or - for stdin")],
    json_out: JsonOption = False,
) -> None:
    """Validate a NIC table; print what was understood (secrets masked)."""
    run("nic check", json_out, lambda: nic_summary(read_nic_file(source)), _render, lambda s: s)
