"""Durations as people write them in feature definitions: ``90s``, ``15m``, ``1h``, ``7d``, ``2w``.

Examples:
    >>> parse_duration("7d")
    datetime.timedelta(days=7)
    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> format_duration(parse_duration("36h"))
    '1d12h'
    >>> parse_duration("3 days")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlprod.errors.InvalidInputError: window '3 days' does not parse: write a positive duration such as ...
"""

from __future__ import annotations

import re
from datetime import timedelta

from mlprod.errors import InvalidInputError

UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1),
         "s": timedelta(seconds=1)}  # fmt: skip
_PATTERN = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | timedelta, *, what: str = "window") -> timedelta:
    """A positive ``timedelta`` from ``text`` (or ``text`` itself when it already is one)."""
    if isinstance(text, timedelta):
        duration = text
    else:
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None or not any(match.groups()):
            raise InvalidInputError(
                f"{what} {text!r} does not parse: write a positive duration such as 90s, 15m, 1h, 7d or 2w "
                "(units may combine: 1h30m)"
            )
        duration = sum(
            (int(count) * unit for count, unit in zip(match.groups(), UNITS.values(), strict=True) if count),
            timedelta(),
        )
    if duration <= timedelta(0):
        raise InvalidInputError(f"{what} {text!r} must be longer than zero")
    return duration


def format_duration(duration: timedelta) -> str:
    """The spelling of ``duration`` in days, hours, minutes and seconds (``7d``, ``1d12h``)."""
    remaining = int(duration.total_seconds())
    parts = []
    for suffix, unit in UNITS.items():
        if suffix == "w":
            continue
        count, remaining = divmod(remaining, int(unit.total_seconds()))
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"
