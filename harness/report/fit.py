"""Tables that fit the terminal they are drawn on: the least essential columns go first.

rich shrinks every column of a table too wide for its console until each number reads
``0.…``; a number cut short is worse than a column left out. A ``Fit`` table measures itself at
the width it is drawn at and leaves out columns in the order their ``drop`` rank gives (lowest
first; columns without a rank always stay), naming what it left out; where even its essential
columns do not fit whole, a column that may wrap (an id) is folded, and where that is not
enough either, each row is said as lines of ``column value``; ``--wide`` draws on a
console wide enough for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Column:
    name: str
    justify: Justify = "right"
    drop: int | None = None  # the order it is left out in when the table is too wide
    no_wrap: bool = True


class Fit:
    """A rich table, built when drawn, without the columns the width has no room for."""

    def __init__(self, title: str = "", caption: str = "") -> None:
        self.title = title
        self.caption = caption
        self.columns: list[Column] = []
        self.rows: list[tuple[Any, ...]] = []

    def add_column(
        self, name: str, justify: Justify = "right", drop: int | None = None, no_wrap: bool = True
    ) -> None:
        self.columns.append(Column(name, justify, drop, no_wrap))

    def add_row(self, *cells: Any) -> None:
        self.rows.append(cells)

    def table(self, shown: set[int] | None = None) -> Table:
        """The table with the columns ``shown`` (by index; all when None)."""
        keep = [i for i in range(len(self.columns)) if shown is None or i in shown]
        hidden = [self.columns[i].name for i in range(len(self.columns)) if i not in keep]
        caption = self.caption
        if hidden:
            left_out = f"left out for width: {', '.join(hidden)} (--wide shows every column)"
            caption = f"{caption}; {left_out}" if caption else left_out
        table = Table(title=self.title or None, caption=caption or None)
        for i in keep:
            c = self.columns[i]
            table.add_column(c.name, justify=c.justify, no_wrap=c.no_wrap, overflow="fold")
        for row in self.rows:
            table.add_row(*(row[i] for i in keep))
        return table

    def fitted(self, console: Console, options: ConsoleOptions) -> RenderableType:
        """As many columns as ``options.max_width`` holds: every cell whole if leaving columns
        out can make it so, else with its wrapping columns folded, else each row as lines of
        ``column value`` (a number is never cut)."""
        ranked = sorted((c.drop, i) for i, c in enumerate(self.columns) if c.drop is not None)
        for fold in (False, True):
            shown = set(range(len(self.columns)))
            table = self.table(shown)
            for _, i in ranked:
                if _width(console, options, table, fold) <= options.max_width:
                    return table
                shown.discard(i)
                table = self.table(shown)
            if _width(console, options, table, fold) <= options.max_width:
                return table
        return self.stacked()

    def stacked(self) -> Group:
        """Every row as its first cell, then its ``column value`` pairs laid out as the width
        allows, never split inside a pair."""
        lines: list[RenderableType] = [Text(self.title, style="italic")] if self.title else []
        for row in self.rows:
            first, *rest = row
            pairs = [
                Text.assemble(f"{c.name} ", _text(cell))
                for c, cell in zip(self.columns[1:], rest, strict=True)
                if str(cell).strip()
            ]
            lines += [_text(first, "bold"), Columns(pairs, padding=(0, 2))]
        if self.caption:
            lines.append(Text(self.caption, style="dim"))
        return Group(*lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fitted(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.fitted(console, options))


def _text(cell: Any, style: str = "") -> Text:
    found = cell.copy() if isinstance(cell, Text) else Text(str(cell))
    if style:
        found.stylize(style)
    return found


FOLDED = 16  # the width a wrapping column may fold to (an id, a path) before others go


def _width(console: Console, options: ConsoleOptions, table: Table, fold: bool) -> int:
    """The width ``table`` needs with every cell whole (``fold``: but its wrapping columns)."""
    for column in table.columns:
        if fold and not column.no_wrap:
            column.max_width = FOLDED
    needed = Measurement.get(console, options.update(width=10**6), table).maximum
    for column in table.columns:
        column.max_width = None
    return needed
