"""Undefined numbers in stored reports: NaN and infinities are written as null and read back as NaN.

JSON has no NaN (and PostgreSQL's JSON refuses it), yet an undefined metric (AUC of a one-class
slice, memory that was not probed) is a legitimate result that must survive storage.

Examples:
    >>> json_safe({"auc": float("nan"), "rows": [1.0, float("inf")]})
    {'auc': None, 'rows': [1.0, None]}
    >>> number(None), number(0.5)
    (nan, 0.5)
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def finite_or_none(value: float) -> float | None:
    """One number as stored: NaN and infinities become None."""
    return value if math.isfinite(value) else None


def number(value: Any) -> float:
    """A stored number: None (an undefined one) becomes NaN."""
    return float("nan") if value is None else float(value)
