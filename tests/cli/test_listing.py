"""The listing module on its own: layout at a given width, JSON and CSV values."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from mlprod.cli import listing
from mlprod.cli.listing import Column, print_table, raw

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ROWS = [
    {"id": SHA, "name": "lightgbm-small", "rows": 1_234_567, "score": 0.48123456, "note": "word " * 30},
    {"id": SHA[::-1], "name": "xgboost", "rows": 12, "score": None, "note": "short"},
]
COLUMNS = (
    Column("id", "id"),
    Column("name", "name"),
    Column("rows", "rows"),
    Column("score", "score", text=lambda v: "-" if v is None else f"{v:.4f}", priority=1),
    Column("note", "note", wrap=True, priority=2),
)


def _render(width: int, rows: list[dict] = ROWS, columns: tuple[Column, ...] = COLUMNS) -> str:
    console = Console(file=io.StringIO(), width=width)
    print_table(rows, columns, console=console, title="a title longer than the narrowest table here")
    return console.file.getvalue()


@pytest.mark.parametrize("width", [220, 160, 80])
def test_no_value_is_cut_at_any_width(width: int, capsys: pytest.CaptureFixture[str]) -> None:
    text = _render(width)
    assert "…" not in text
    assert SHA in text and SHA[::-1] in text and "1,234,567" in text and "lightgbm-small" in text
    widest = max(len(line) for line in text.splitlines())
    # id, name and rows (priority 0) need 97 columns: narrower, the lines run long rather than cut
    assert widest <= width if width >= 97 else widest == 97


def test_the_lowest_priority_leaves_first_and_the_note_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    text = _render(120)
    assert "0.4812" in text and "note" not in text.splitlines()[2]
    note = capsys.readouterr().err.strip()
    assert note == "not shown, to fit 120 columns: note (--format json shows every column)"
    _render(80)  # 64 + 64 characters of ids alone: the required columns run past 80, nothing else fits
    assert "score, note" in capsys.readouterr().err


def test_text_wraps_between_words_when_there_is_room(capsys: pytest.CaptureFixture[str]) -> None:
    text = _render(220)
    assert "0.4812" in text and max(len(line) for line in text.splitlines()) <= 220
    words = " ".join(text.replace("│", " ").split()).split()
    assert words.count("word") == 30  # wrapped over lines, every word whole
    assert capsys.readouterr().err == ""


def test_a_column_that_left_comes_back_when_a_wider_one_left_instead(
    capsys: pytest.CaptureFixture[str],
) -> None:
    columns = (
        Column("id", "id", text=lambda v: v[:12]),
        Column("note", "note", wrap=True, priority=1),
        Column("score", "score", priority=2),
    )
    rows = [{"id": SHA, "note": "x" * 70, "score": 0.5}]
    text = _render(60, rows, columns)
    assert "0.5" in text and "x" * 70 not in text
    assert "note" in capsys.readouterr().err


def test_raw_values_for_json_and_csv(capsys: pytest.CaptureFixture[str]) -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    paris = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert raw(naive) == raw(paris) == raw(naive.replace(tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert raw({"p": Path("/a/b"), "n": float("nan"), "t": (1, 2)}) == {"p": "/a/b", "n": None, "t": [1, 2]}
    listing.emit(ROWS, COLUMNS, "json")
    assert json.loads(capsys.readouterr().out) == [
        {**row, "note": row["note"]} for row in ROWS
    ]  # full ids, unrounded numbers
    listing.emit([{"id": "a", "name": ["x", "y"], "rows": {"k": 1}}], COLUMNS[:3], "csv")
    assert capsys.readouterr().out == 'id,name,rows\na,x;y,"{""k"": 1}"\n'


def test_a_bad_format_is_refused_with_the_choices() -> None:
    with pytest.raises(listing.InvalidInputError, match=r"--format 'xml': expected one of table, json, csv"):
        listing.check_format("xml")
