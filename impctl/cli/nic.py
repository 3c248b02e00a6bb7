"""`impctl nic check`: validate a NIC table and show what impctl understood."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from impctl.cli.layout import print_key_values
from impctl.cli.output import JsonOption, console, run
from impctl.model.errors import ValidationError
from impctl.model.nic import Nic, nic_summary, parse_nic

app = typer.Typer(help="NIC tables (server.connectwith's settings).", no_args_is_help=True)

MAX_NIC_BYTES = 64 * 1024


def read_nic_file(source: str) -> Nic:
    """Read and parse a NIC from a file path or `-` (stdin). Used by connectwith too."""
    try:
        if source == "-":
            text = sys.stdin.read(MAX_NIC_BYTES + 1)
        else:
            with Path(source).open(encoding="utf-8") as f:
                text = f.read(MAX_NIC_BYTES + 1)
    except FileNotFoundError:
        raise ValidationError("", f"NIC file {source} does not exist") from None
    except IsADirectoryError:
        raise ValidationError("", f"NIC file {source} is a directory") from None
    except PermissionError:
        raise ValidationError("", f"NIC file {source} cannot be read: permission denied") from None
    except UnicodeDecodeError:
        raise ValidationError("", f"NIC file {source} is not UTF-8 text") from None
    if len(text) > MAX_NIC_BYTES:
        raise ValidationError("", f"NIC file {source} is larger than {MAX_NIC_BYTES} bytes")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("", f"NIC is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return parse_nic(doc)


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
