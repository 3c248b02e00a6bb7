"""The console script's entry point: `impctl --version` is answered before Typer loads.

Importing Typer (and its Click) takes longer than starting the interpreter;
a version query — a package manager, a fleet inventory script — needs neither.
Every other command line goes to impctl.cli.main, which prints the same
`impctl VERSION` for `--version` in any other position.
"""

from __future__ import annotations

import sys

from impctl import __version__


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        sys.stdout.write(f"impctl {__version__}\n")
        sys.exit(0)
    from impctl.cli.main import main as run

    run(args)
