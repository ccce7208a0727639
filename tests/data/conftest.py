"""Fixtures shared by the versioned-table tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlprod.data.tables import TableStore


@pytest.fixture
def interleave(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], object]], None]:
    """Run the given commits right after the next commit has read its head and computed its change,
    before it lands: the branch moves under it deterministically."""
    pending: list[Callable[[], object]] = []
    original = TableStore._prepare

    def prepare(self: TableStore, *args: Any, **kwargs: Any) -> Any:
        prepared = original(self, *args, **kwargs)
        while pending:
            pending.pop(0)()
        return prepared

    monkeypatch.setattr(TableStore, "_prepare", prepare)
    return pending.append
