"""Closest-match suggestions for misspelled names ("did you mean ...?") in error messages.

Examples:
    >>> closest("n_estimatorz", ["learning_rate", "n_estimators", "num_leaves"])
    'n_estimators'
    >>> closest("auc", ["validation_accuracy", "validation_auc", "validation_log_loss"])
    'validation_auc'
    >>> closest("zzz", ["validation_auc"]) is None
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely meant: a close spelling, else the one choice ending in
    ``_name`` (``auc`` for ``validation_auc``); None when nothing is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.75)
    if close:
        return close[0]
    suffixed = [option for option in options if option.endswith("_" + name)]
    return suffixed[0] if len(suffixed) == 1 else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``name``, else an empty string."""
    match = closest(name, choices)
    return "" if match is None else f" (did you mean {match!r}?)"
