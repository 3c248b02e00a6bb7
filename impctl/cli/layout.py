"""Tables that stay readable on an 80-column serial console.

A table is printed as it is when it fits the console with no word cut in two:
every no_wrap column as wide as its widest line, the (one) wrapping column at
least as wide as its longest word. Otherwise the command prints its stacked
form: a line per row with the short fields, then the long ones indented below
it, one per line, at nearly the full width. An address, an identifier or a
code name is never split across lines; only a single word wider than the
whole console would be (folded, not cut off).

Rich is imported only here and in what calls these, when a person's view is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from impctl.cli.output import console

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

INDENT = 4
UNLIMITED = 100_000


def fits(table: Table) -> bool:
    """Whether `table` fits the console's width without cutting a word or a no_wrap cell."""
    from rich.measure import Measurement

    # Measured as if the console were unlimited: rich clamps a measurement to the width it is given.
    options = console.options.update_width(UNLIMITED)
    for column in table.columns:
        if column.no_wrap:
            # Rich measures a column's minimum by its longest word; a no_wrap cell needs its whole line.
            widest = max((Measurement.get(console, options, c).maximum for c in (column.header, *column.cells)),
                         default=0)
            column.min_width = max(column.min_width or 0, widest)
    return Measurement.get(console, options, table).minimum <= console.width


def print_table(table: Table, stacked: Callable[[], RenderableType]) -> None:
    """`table` when it fits the console, else the stacked form."""
    console.print(table if fits(table) else stacked())


def block(head: Text | str, fields: Sequence[tuple[str, RenderableType]] = (),
          lines: Sequence[RenderableType] = ()) -> RenderableType:
    """One row of the stacked form: `head` on a line, then `fields` (name, value) and
    `lines`, indented. Values wrap between words at the console's width."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table

    body: list[RenderableType] = []
    if fields:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, style="dim")
        grid.add_column(overflow="fold")
        for name, value in fields:
            grid.add_row(name, value)
        body.append(grid)
    body.extend(lines)
    return Group(head, *(Padding(b, (0, 0, 0, INDENT), expand=False) for b in body))


def stack(title: str | None, blocks: Sequence[RenderableType]) -> RenderableType:
    from rich.console import Group

    return Group(*([title] if title else []), *blocks)


def print_key_values(title: str, rows: Sequence[tuple[str, str]], value_min: int = 20) -> None:
    """A two-column table of settings. Where the values would get fewer than `value_min`
    columns or a word of them would not fit: the same without the box, then each key on
    a line of its own with its value below it."""
    from rich.table import Table
    from rich.text import Text

    def two_columns(table: Table) -> Table:
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold", min_width=value_min)
        for key, value in rows:
            table.add_row(key, value)
        return table

    boxed = two_columns(Table(show_header=False, title=title, title_justify="left"))
    if fits(boxed):
        console.print(boxed)
        return
    print_table(two_columns(Table(show_header=False, title=title, title_justify="left", box=None, pad_edge=False)),
                lambda: stack(title, [block(Text(key, style="bold"), lines=[value]) for key, value in rows]))
