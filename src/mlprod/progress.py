"""How long package functions say what they are doing, without knowing who listens.

A function that takes seconds (training, evaluation, explanation) accepts ``step: Step | None`` and
calls ``step("scoring")`` as it enters each phase. The CLI turns steps into a Rich status line on a
terminal; tests collect them in a list; nothing in the packages imports Rich.
"""

from __future__ import annotations

from typing import Protocol


class Step(Protocol):
    """Called with a short description of the phase that starts now."""

    def __call__(self, what: str, /) -> None: ...


def no_step(what: str, /) -> None:
    """The ``Step`` of a caller that does not listen."""
