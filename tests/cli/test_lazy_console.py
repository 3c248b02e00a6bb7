"""output's consoles are made on first use; rich must not notice the difference."""

from __future__ import annotations

import io
from typing import cast

from rich.console import Console
from rich.live import Live

from impctl.cli.output import _LazyConsole


def test_rich_live_draws_through_a_lazy_console() -> None:
    # probe's live table: Live enters the console (`with console:`), which __getattr__ cannot serve.
    out = io.StringIO()
    console = cast(Console, _LazyConsole(file=out, force_terminal=True, width=80, emoji=False))
    with Live(console=console, get_renderable=lambda: "probing eth0", refresh_per_second=20, transient=False):
        console.print("a line while live")
    text = out.getvalue()
    assert "probing eth0" in text and "a line while live" in text


def test_options_reach_the_console_made_on_first_use() -> None:
    out = io.StringIO()
    console = cast(Console, _LazyConsole(file=out, width=33, emoji=False))
    console.print("a :smile: b")
    assert console.width == 33
    assert out.getvalue() == "a :smile: b\n"
