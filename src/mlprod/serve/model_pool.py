"""The models a server holds in memory: loaded lazily, evicted least-recently-used past a memory budget.

Two caches, both read without touching the database on the request path:

- **references**: ``name@alias`` and bare ``name`` are resolved to a version and remembered. After
  ``refresh_seconds`` the next request still gets the remembered version at once, and a background
  thread re-resolves the reference; when an alias has moved, the new version is loaded in the
  background and swapped in. In-flight requests finish on the version they started with. A reference
  that does not resolve is remembered as missing for the same interval.
- **versions**: ``(name, version)`` -> the loaded model. Loading takes a lock per version only, so
  loads of different models run in parallel and never block requests for models already loaded.
  When the estimated memory of the loaded models exceeds ``memory_budget_bytes`` the least recently
  used ones are dropped (a request still using one keeps its reference until it is done).

The memory of a model is estimated as the size of its artifact (a booster's or an ONNX graph's
in-memory size follows its serialized size closely), plus what the loader adds (see ``Served``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mlprod.errors import NotFoundError
from mlprod.models import LoadedModel, ModelVersion, Registry, parse_ref

log = logging.getLogger(__name__)
_MAX_MISSES = 10_000


@dataclass
class Served:
    """A version ready to answer requests: the model plus what its requests need."""

    version: ModelVersion
    model: LoadedModel
    memory_bytes: int
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return self.version.model, self.version.version


Loader = Callable[[ModelVersion], Served]


@dataclass
class _Resolved:
    version: int
    at: float
    immutable: bool
    refreshing: bool = False


class ModelPool:
    """Resolve references and hold loaded versions within a memory budget (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        loader: Loader,
        *,
        memory_budget_bytes: int = 2 * 1024**3,
        refresh_seconds: float = 2.0,
    ) -> None:
        self._registry = registry
        self._loader = loader
        self.memory_budget_bytes = memory_budget_bytes
        self._refresh = refresh_seconds
        self._refs: dict[str, _Resolved] = {}
        self._misses: dict[str, tuple[NotFoundError, float]] = {}
        self._loaded: OrderedDict[tuple[str, int], Served] = OrderedDict()
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlprod-refresh")
        self.loads = 0
        self.evictions = 0

    # -- the request path ---------------------------------------------------------------------------

    def peek(self, ref: str) -> Served | None:
        """The model for ``ref`` when it is in memory (never blocks); None when ``get`` must run.

        Raises the remembered ``NotFoundError`` for a reference that recently did not resolve.
        """
        miss = self._misses.get(ref)
        if miss is not None and time.monotonic() - miss[1] < self._refresh:
            raise NotFoundError(str(miss[0]))  # a fresh one: a shared exception keeps every traceback
        resolved = self._refs.get(ref)
        if resolved is None:
            return None
        served = self._loaded.get((_name_of(ref), resolved.version))
        if served is None:
            return None
        if not resolved.immutable and time.monotonic() - resolved.at >= self._refresh:
            self._refresh_in_background(ref, resolved)
        self._touch(served.key)
        return served

    def get(self, ref: str) -> Served:
        """The model for ``ref``, resolving and loading it when needed (blocking: call off the event loop)."""
        served = self.peek(ref)
        if served is not None:
            return served
        resolved = self._refs.get(ref)
        if resolved is None:
            version = self._resolve(ref)
        else:
            version = self._versions.get((_name_of(ref), resolved.version)) or self._resolve(ref)
        return self._load(version)

    # -- management ---------------------------------------------------------------------------------

    def loaded(self) -> list[Served]:
        """The versions in memory, least recently used first."""
        with self._guard:
            return list(self._loaded.values())

    @property
    def memory_bytes(self) -> int:
        with self._guard:
            return sum(s.memory_bytes for s in self._loaded.values())

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)

    # -- internals ----------------------------------------------------------------------------------

    def _resolve(self, ref: str) -> ModelVersion:
        parsed = parse_ref(ref)
        try:
            version = self._registry.get(parsed)
        except NotFoundError as exc:
            if len(self._misses) > _MAX_MISSES:  # bounded: clients choose these names
                self._misses.clear()
            self._misses[ref] = (exc, time.monotonic())
            raise
        self._misses.pop(ref, None)
        self._versions[(version.model, version.version)] = version
        self._refs[ref] = _Resolved(version.version, time.monotonic(), immutable=parsed.version is not None)
        return version

    def _load(self, version: ModelVersion) -> Served:
        key = (version.model, version.version)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            served = self._loaded.get(key)
            if served is not None:
                self._touch(key)
                return served
            served = self._loader(version)
            with self._guard:
                self._loaded[key] = served
                self.loads += 1
                self._evict(keep=key)
            return served

    def _evict(self, *, keep: tuple[str, int]) -> None:
        total = sum(s.memory_bytes for s in self._loaded.values())
        for key in list(self._loaded):
            if total <= self.memory_budget_bytes:
                break
            if key == keep:
                continue
            total -= self._loaded.pop(key).memory_bytes
            self.evictions += 1
            log.info("unloaded %s/%s (memory budget %d bytes)", key[0], key[1], self.memory_budget_bytes)

    def _touch(self, key: tuple[str, int]) -> None:
        with self._guard:
            if key in self._loaded:
                self._loaded.move_to_end(key)

    def _refresh_in_background(self, ref: str, resolved: _Resolved) -> None:
        with self._guard:
            if resolved.refreshing:
                return
            resolved.refreshing = True
        self._background.submit(self._refresh_ref, ref, resolved)

    def _refresh_ref(self, ref: str, resolved: _Resolved) -> None:
        try:
            version = self._registry.get(parse_ref(ref))
            self._versions[(version.model, version.version)] = version
            if version.version != resolved.version:
                self._load(version)  # load first: requests keep the old version meanwhile
                log.info("%s moved from version %d to %d", ref, resolved.version, version.version)
            self._refs[ref] = _Resolved(version.version, time.monotonic(), immutable=False)
        except NotFoundError as exc:
            self._refs.pop(ref, None)
            self._misses[ref] = (exc, time.monotonic())
        except Exception:  # a failed refresh keeps serving the known version; retried next interval
            log.exception("cannot refresh %s; still serving version %d", ref, resolved.version)
            self._refs[ref] = _Resolved(resolved.version, time.monotonic(), immutable=False)


def _name_of(ref: str) -> str:
    for separator in ("@", "/"):
        if separator in ref:
            return ref.split(separator, 1)[0]
    return ref
