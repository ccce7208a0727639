"""Validation of user-given names (datasets, models, aliases).

Names end up in URLs, file paths and SQL, so they are restricted to a safe alphabet: letters,
digits, ``-``, ``_`` and ``.``, starting with a letter or digit, at most 128 characters.

Examples:
    >>> check_name("flights-delay", "model")
    'flights-delay'
    >>> check_name("../etc", "model")
    Traceback (most recent call last):
    ...
    mlprod.errors.InvalidInputError: model name '../etc' is not valid: use letters, digits, '-', '_' and '.', starting with a letter or digit (at most 128 characters)
"""

from __future__ import annotations

import re

from mlprod.errors import InvalidInputError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # also what the HTTP API's spec documents
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str, kind: str) -> str:
    """Return ``name`` if it is a valid name for a ``kind``, else raise ``InvalidInputError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInputError(
            f"{kind} name {name!r} is not valid: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit (at most 128 characters)"
        )
    return name
