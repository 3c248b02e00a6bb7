"""Human output: data never reaches the terminal raw (escapes, surrogates, rich markup); JSON stays JSON."""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest
import typer

from impctl.cli.connect import _render_status
from impctl.cli.nic import _render as render_nic
from impctl.cli.output import console, escape_controls, for_humans, run, safe_console, shown
from impctl.model.inventory import DeviceInfo
from impctl.model.state import State
from impctl.usecases.status import StatusReport

HOSTILE = "a\x1b[31mred\x07\x9b2J\ud800[bold]b[/x]\\"


class Colour(StrEnum):
    RED = "r[ed"


@dataclass(frozen=True)
class Inner:
    name: str
    tags: tuple[str, ...]


@dataclass
class Outer:
    inner: Inner
    table: dict[str, Any]
    colour: Colour
    count: int

    @property
    def first(self) -> str:
        return self.inner.tags[0]


def strict_stdout(monkeypatch: pytest.MonkeyPatch) -> io.BytesIO:
    """stdout as a real UTF-8 stream, strict: a surrogate written to it raises."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True))
    return raw


def rendered(monkeypatch: pytest.MonkeyPatch, render: Any, result: Any) -> str:
    raw = strict_stdout(monkeypatch)
    monkeypatch.setattr(console, "_width", 200)  # wide enough that no cell folds
    with pytest.raises(typer.Exit) as exit_info:
        run("test", False, lambda: result, render, lambda r: r)
    assert exit_info.value.exit_code == 0
    text = raw.getvalue().decode("utf-8")  # strict: fails on any surrogate that got out
    return text


def assert_safe(text: str) -> None:
    assert not any(ord(c) < 0x20 and c != "\n" for c in text), repr(text)
    assert not any(0x7F <= ord(c) <= 0x9F for c in text), repr(text)
    assert "\ufdd0" not in text and "\ufdd1" not in text


def test_escape_controls_and_shown() -> None:
    assert escape_controls("a\x1bb\x00\n\t\x9b\ud800") == "a\\x1bb\\x00\\n\\t\\x9b\\ud800"
    assert escape_controls("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    marked = shown("[bold]\\")
    assert "[" not in marked and "\\" not in marked  # inert to rich markup
    assert "\n" not in shown("two\nlines")


def test_for_humans_copies_every_string_and_keeps_the_rest() -> None:
    value = Outer(Inner("[x]\x1b", ("t\n",)), {"k\x1b": ["v\x07", 1, None, 2.5]}, Colour.RED, 3)
    out = for_humans(value)
    assert isinstance(out, Outer) and isinstance(out.inner, Inner)
    assert out.inner.name == shown("[x]\x1b") and out.first == shown("t\n")
    assert out.table == {shown("k\x1b"): [shown("v\x07"), 1, None, 2.5]}
    assert out.colour is Colour.RED and out.count == 3  # enums (str ones too) are not text to escape
    assert value.inner.name == "[x]\x1b"  # the original is untouched (the JSON path uses it)


def test_a_hostile_proxy_username_prints_escaped_and_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = {"interface": "eth0", "class": "ethernet",
               "proxyconfig": {"type": "http", "address": "p.example", "port": 8080, "username": HOSTILE,
                               "password": "none"}}
    text = rendered(monkeypatch, render_nic, summary)
    assert_safe(text)
    assert "a\\x1b[31mred\\x07\\x9b2J\\ud800[bold]b[/x]\\" in text  # every character shown, markup literal


def test_a_surrogate_ssid_from_networkmanager_renders_in_status(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = DeviceInfo(ifname="wlan0", nm_type=2, nm_state=100, iface_class="wifi", identifier="wl0",
                     ssid="caf\udce9 [bold]x", signal=70, addresses=("198.18.1.5/24",))
    state = State(last_error={"name": "NO_SERVER", "identifier": "wl0", "reason": "[/] \x1b]0;pwned\x07"})
    daemon = {"running": False, "phase": "[blink]", "uplinks": [{"identifier": "\x1b[2J"}]}
    text = rendered(monkeypatch, _render_status, StatusReport([dev], "wlan0", "wlan0", state, daemon))
    assert_safe(text)
    # The radio column may wrap at 80 columns, between words only: each piece whole and literal.
    assert "caf\\udce9" in text and "[bold]x" in text and "70%" in text
    assert "[/] \\x1b]0;pwned\\x07" in text and "[blink]" in text and "\\x1b[2J" in text


def test_json_output_of_hostile_strings_is_valid_ascii_json(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = strict_stdout(monkeypatch)
    with pytest.raises(typer.Exit):
        run("test", True, lambda: {"s": HOSTILE}, lambda _r: None, lambda r: r)
    out = raw.getvalue()
    assert out.isascii()
    assert json.loads(out)["data"] == {"s": HOSTILE}  # exact, nothing escaped away


def test_the_console_itself_never_writes_controls_or_raises_on_markup() -> None:
    buf = io.StringIO()
    console = safe_console(file=buf, width=100, force_terminal=False, color_system=None)
    from rich.text import Text

    console.print(f"x {HOSTILE}")  # a renderer that forgot shown(): no MarkupError, no raw escape
    console.print(Text("t\x1b[1m\ud800"))
    text = buf.getvalue()
    assert_safe(text)
    assert "\\x1b" in text and "\\ud800" in text


def test_colour_still_reaches_a_terminal() -> None:
    buf = io.StringIO()
    console = safe_console(file=buf, width=100, force_terminal=True, color_system="standard")
    console.print(f"[red]{shown(HOSTILE)}[/]")
    text = buf.getvalue()
    assert "\x1b[31m" in text  # rich's own styling is kept
    assert "\\x1b[31mred" in text
    assert "\x1b" not in re.sub("\x1b\\[[0-9;]*m", "", text)  # every raw ESC left is rich's own SGR
