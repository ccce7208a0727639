"""The one parser of times given on the command line: dates, ISO-8601 times, ``Z`` or an offset.

Every CLI option that takes a time (``--at``, ``--as-of``, ``--since``, ``--until``) goes through
``parse_utc`` so they all accept the same forms; a time without a zone is UTC.

Examples:
    >>> parse_utc("2013-08-01", "--at")
    datetime.datetime(2013, 8, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_utc("2013-08-01T08:30Z", "--at")
    datetime.datetime(2013, 8, 1, 8, 30, tzinfo=datetime.timezone.utc)
    >>> parse_utc("2013-08-01T10:30:00+02:00", "--at")
    datetime.datetime(2013, 8, 1, 8, 30, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from datetime import UTC, datetime

from mlprod.errors import InvalidInputError

FORMS = "2013-08-01, 2013-08-01T08:00, 2013-08-01T08:00:00Z or 2013-08-01T10:00+02:00"


def parse_utc(text: str, option: str) -> datetime:
    """``text`` as an aware UTC datetime; ``option`` names where it came from, for the error."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(f"{option} {text!r} is not a date or time; use e.g. {FORMS}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_optional_utc(text: str | None, option: str) -> datetime | None:
    """``parse_utc`` for an option that may be absent."""
    return None if text is None else parse_utc(text, option)
