"""``mlprod.times.parse_utc``: the one parser of CLI times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc, parse_utc

EIGHT_THIRTY = datetime(2013, 8, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2013-08-01T08:30",
        "2013-08-01T08:30:00",
        "2013-08-01 08:30:00",
        "2013-08-01T08:30:00Z",
        "2013-08-01T08:30Z",
        "2013-08-01T08:30:00.000+00:00",
        "2013-08-01T10:30:00+02:00",
        "2013-08-01T03:30-05:00",
        " 2013-08-01T08:30Z ",
    ],
)
def test_every_form_names_the_same_utc_time(text: str) -> None:
    parsed = parse_utc(text, "--at")
    assert parsed == EIGHT_THIRTY and parsed.tzinfo is UTC


def test_a_date_is_its_midnight_utc() -> None:
    assert parse_utc("2013-08-01", "--since") == datetime(2013, 8, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2013-13-01", "08/01/2013", "", "2013-08-01T25:00"])
def test_anything_else_is_refused_naming_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_utc(text, "--until")
    assert str(refused.value) == (
        f"--until {text!r} is not a date or time; use e.g. 2013-08-01, 2013-08-01T08:00, "
        "2013-08-01T08:00:00Z or 2013-08-01T10:00+02:00"
    )


def test_an_absent_option_stays_absent() -> None:
    assert parse_optional_utc(None, "--at") is None
