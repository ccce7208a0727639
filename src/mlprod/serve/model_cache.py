"""Loaded models for the server, keyed by reference, so requests never touch the registry.

A ``name/VERSION`` reference is immutable and cached for good. A ``name@alias`` or bare ``name``
reference is re-resolved at most every ``refresh_seconds``, so alias moves are picked up without a
restart; requests keep being served by the old version until the new one is loaded. A reference
that does not resolve is remembered as missing for the same interval, so a client hammering an
unknown model does not hammer the database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from mlprod.errors import NotFoundError
from mlprod.models import LoadedModel, Registry, parse_ref

_MAX_MISSES = 10_000


@dataclass
class _Entry:
    model: LoadedModel
    resolved_at: float
    immutable: bool


class ModelCache:
    """Resolve and load models on first use; serve them from memory afterwards."""

    def __init__(self, registry: Registry, *, refresh_seconds: float = 2.0) -> None:
        self._registry = registry
        self._refresh = refresh_seconds
        self._entries: dict[str, _Entry] = {}
        self._misses: dict[str, tuple[NotFoundError, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def peek(self, ref: str) -> LoadedModel | None:
        """The cached model when it is fresh, without blocking; None when ``get`` must run.

        Raises the remembered ``NotFoundError`` for a reference that recently did not resolve.
        """
        miss = self._misses.get(ref)
        if miss is not None and time.monotonic() - miss[1] < self._refresh:
            raise miss[0]
        entry = self._entries.get(ref)
        if entry is None or not self._fresh(entry):
            return None
        return entry.model

    def get(self, ref: str) -> LoadedModel:
        """The model ``ref`` points to, loading or re-resolving it when needed (blocking)."""
        with self._guard:
            lock = self._locks.setdefault(ref, threading.Lock())
        with lock:
            entry = self._entries.get(ref)
            if entry is not None and self._fresh(entry):
                return entry.model
            parsed = parse_ref(ref)
            try:
                version = self._registry.get(parsed)
            except NotFoundError as exc:
                if len(self._misses) > _MAX_MISSES:  # bounded: clients choose these names
                    self._misses.clear()
                self._misses[ref] = (exc, time.monotonic())
                raise
            self._misses.pop(ref, None)
            if entry is not None and entry.model.version == version.version:
                entry.resolved_at = time.monotonic()
                return entry.model
            model = self._registry.load(version)
            self._entries[ref] = _Entry(model, time.monotonic(), immutable=parsed.version is not None)
            return model

    def _fresh(self, entry: _Entry) -> bool:
        return entry.immutable or time.monotonic() - entry.resolved_at < self._refresh
