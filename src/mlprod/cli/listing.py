"""Listings: rows of raw values and a column spec, printed as a table that fits, or as JSON or CSV.

A listing command builds rows of raw values (full ids, datetimes, numbers as computed) and says
how to show each column; ``emit`` prints them in the format the user chose with ``--format``.
JSON is a list of objects with the columns' snake_case keys (times in ISO-8601 UTC), CSV the same
keys as a header line. A table never cuts a value: free text wraps between words, other values
keep their full width, and when the table is still wider than the terminal the columns of lowest
priority are left out, with a note naming them.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlprod.cli.state import err, out
from mlprod.errors import InvalidInputError

FORMATS = ("table", "json", "csv")
_GAP = 3  # what separates two columns: one space of padding on each side and the divider
_EDGES = 4  # the left and right borders with their padding
_READABLE = 20  # the narrowest a column of free text gets while columns are left out to make room


def check_format(value: str) -> str:
    """The ``--format`` value, checked before the command does any work."""
    if value not in FORMATS:
        raise InvalidInputError(f"--format {value!r}: expected one of {', '.join(FORMATS)}")
    return value


FormatOpt = Annotated[
    str,
    typer.Option("--format", "-f", help="table, json or csv.", metavar="FORMAT", callback=check_format),
]


def shown(value: Any) -> str:
    """How a table shows a raw value when its column says nothing else."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "-" if math.isnan(value) else (f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}")
    if isinstance(value, datetime):
        return f"{_utc(value):%Y-%m-%d %H:%M:%S}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(shown(v) for v in value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


@dataclass(frozen=True)
class Column:
    """One column of a listing.

    ``key`` names the value in a row and in JSON/CSV; ``text`` turns the raw value into the table's
    cell; ``wrap`` marks free text, which may wrap between words (anything else keeps its full
    width); ``priority`` 0 is always shown, higher numbers are left out first when the table does
    not fit; ``style`` colours a cell from its raw value.
    """

    key: str
    header: str
    text: Callable[[Any], str] = shown
    wrap: bool = False
    priority: int = 0
    style: Callable[[Any], str | None] | None = None


Row = Mapping[str, Any]


def rows_of(records: Iterable[object], columns: Sequence[Column]) -> list[dict[str, Any]]:
    """One row per record: the attributes the columns' keys name (for records whose fields they are)."""
    return [{c.key: getattr(record, c.key) for c in columns} for record in records]


def emit(
    rows: Sequence[Row],
    columns: Sequence[Column],
    output_format: str,
    *,
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """Print ``rows`` as a table, JSON or CSV; ``empty`` replaces an empty table (JSON says ``[]``)."""
    check_format(output_format)
    if output_format == "json":
        write_json([{c.key: row.get(c.key) for c in columns} for row in rows])
    elif output_format == "csv":
        write_csv(rows, [c.key for c in columns])
    elif not rows and empty is not None:
        out.print(empty, markup=False, highlight=False)
    else:
        print_table(rows, columns, title=title)


def write_json(value: Any) -> None:
    """Raw values as indented JSON on stdout (times in ISO-8601 UTC, NaN as null)."""
    sys.stdout.write(json.dumps(raw(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def write_csv(rows: Iterable[Row], keys: Sequence[str]) -> None:
    """A header line of ``keys`` and one line per row (lists joined by ``;``, objects as JSON)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow([_csv_cell(raw(row.get(k))) for k in keys])
    sys.stdout.flush()


def raw(value: Any) -> Any:
    """A value as JSON holds it: times in ISO-8601 UTC, paths as text, NaN as null."""
    if isinstance(value, datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Enum):
        return raw(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): raw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [raw(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_table(
    rows: Sequence[Row],
    columns: Sequence[Column],
    *,
    title: str | None = None,
    show_header: bool = True,
    console: Console | None = None,
    hint: str | None = "--format json shows every column",
) -> None:
    """Print a table as wide as the terminal at most, cutting no value (see the module docstring).

    The title goes on its own line above (it wraps, never cut); a note on stderr names the columns
    left out, followed by ``hint`` (where to see them).
    """
    console = console or out
    cells = {c.key: [c.text(row.get(c.key)) for row in rows] for c in columns}
    room = console.width - _EDGES
    kept = _fit(columns, cells, show_header, room)
    if title:
        console.print(Text(title), soft_wrap=True)
    widths = _widths(kept, cells, show_header, room)
    table = Table(show_header=show_header)
    for c in kept:
        table.add_column(Text(c.header), width=widths[c.key], overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(*(_cell(c, row, cells[c.key][i]) for c in kept))
    needed = sum(widths.values()) + _GAP * (len(kept) - 1) + _EDGES
    if needed > console.width:  # even the columns that must stay do not fit: let lines run long
        Console(file=console.file, width=needed).print(table)
    else:
        console.print(table)
    left_out = [c.header for c in columns if c not in kept]
    if left_out:
        note = f"not shown, to fit {console.width} columns: "
        err.print(note + ", ".join(left_out) + (f" ({hint})" if hint else ""), markup=False, highlight=False)


def _cell(column: Column, row: Row, text: str) -> Text:
    style = column.style(row.get(column.key)) if column.style else None
    return Text(text, style=style or "")


def _natural(column: Column, cells: list[str], show_header: bool) -> int:
    longest = max((max(cell_len(line) for line in c.split("\n")) for c in cells), default=0)
    return max(longest, cell_len(column.header) if show_header else 0, 1)


def _minimum(column: Column, cells: list[str], show_header: bool, *, strict: bool = False) -> int:
    """The narrowest the column can be without cutting a word (or, unless it wraps, a value); unless
    ``strict``, text keeps room for a few words a line rather than one word a line."""
    words = [w for c in cells for w in (c.split() if column.wrap else c.split("\n"))]
    if show_header:
        words += column.header.split()
    longest = max((cell_len(w) for w in words), default=1)
    if column.wrap and not strict:
        return max(longest, min(_natural(column, cells, show_header), _READABLE))
    return longest


def _fit(
    columns: Sequence[Column], cells: dict[str, list[str]], show_header: bool, width: int
) -> list[Column]:
    """The columns to show: all if their narrowest layout fits; else the lowest priorities leave
    (the rightmost first among equals), and those that fit again once others left come back."""

    def narrowest(chosen: list[Column]) -> int:
        return sum(_minimum(c, cells[c.key], show_header) for c in chosen) + _GAP * (len(chosen) - 1)

    kept = list(columns)
    while narrowest(kept) > width and any(c.priority > 0 for c in kept):
        kept.remove(max((c for c in kept if c.priority > 0), key=lambda c: (c.priority, kept.index(c))))
    for column in sorted((c for c in columns if c not in kept), key=lambda c: c.priority):
        candidate = [c for c in columns if c in kept or c is column]
        if narrowest(candidate) <= width:
            kept = candidate
    return kept


def _widths(kept: list[Column], cells: dict[str, list[str]], show_header: bool, width: int) -> dict[str, int]:
    """Each column's width: its minimum, then the room left shared out until each has its natural width."""
    minimum = {c.key: _minimum(c, cells[c.key], show_header) for c in kept}
    if sum(minimum.values()) + _GAP * (len(kept) - 1) > width:
        minimum = {c.key: _minimum(c, cells[c.key], show_header, strict=True) for c in kept}
    natural = {c.key: max(minimum[c.key], _natural(c, cells[c.key], show_header)) for c in kept}
    widths = dict(minimum)
    spare = width - sum(widths.values()) - _GAP * (len(kept) - 1)
    while spare > 0:
        wanting = [k for k in widths if widths[k] < natural[k]]
        if not wanting:
            break
        for key in wanting[:spare]:
            widths[key] += 1
        spare -= min(len(wanting), spare)
    return widths


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


__all__ = [
    "FORMATS",
    "Column",
    "FormatOpt",
    "check_format",
    "emit",
    "print_table",
    "raw",
    "shown",
    "write_csv",
    "write_json",
]
