"""The model pool: references resolved without the database per request, LRU within a memory budget,
loads of different models in parallel, alias moves picked up in the background."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from mlprod.errors import NotFoundError
from mlprod.models import ModelVersion, Registry
from mlprod.serve.model_pool import ModelPool, Served
from mlprod.workspace import Workspace
from tests.conftest import train_toy


class CountingRegistry(Registry):
    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace)
        self.lookups = 0

    def get(self, ref):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return super().get(ref)


def loader_of(registry: Registry, size: int = 100):  # type: ignore[no-untyped-def]
    def load(version: ModelVersion) -> Served:
        return Served(version, registry.load(version), size)

    return load


def add_versions(workspace: Workspace, frame: pd.DataFrame, n: int, name: str = "toy") -> None:
    registry = Registry(workspace)
    trained = train_toy(frame, rounds=3)
    for _ in range(n):
        registry.register(name, trained.model, signature=trained.signature)


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_versions_are_cached_for_good_and_aliases_resolved_once(
    workspace: Workspace, registered: ModelVersion
) -> None:
    registry = CountingRegistry(workspace)
    pool = ModelPool(registry, loader_of(registry), refresh_seconds=3600)
    first = pool.get("toy/1")
    assert pool.peek("toy/1") is first
    assert pool.get("toy@champion") is first  # same version: loaded once
    assert registry.lookups == 2 and pool.loads == 1
    for _ in range(100):
        pool.peek("toy@champion")
    assert registry.lookups == 2


def test_unknown_models_are_remembered_as_missing(workspace: Workspace, registered: ModelVersion) -> None:
    registry = CountingRegistry(workspace)
    pool = ModelPool(registry, loader_of(registry), refresh_seconds=3600)
    with pytest.raises(NotFoundError):
        pool.get("ghost")
    for _ in range(100):
        with pytest.raises(NotFoundError, match="model 'ghost' is not registered"):
            pool.peek("ghost")
    assert registry.lookups == 1


def test_a_miss_expires_so_a_new_alias_is_found(workspace: Workspace, registered: ModelVersion) -> None:
    pool = ModelPool(Registry(workspace), loader_of(Registry(workspace)), refresh_seconds=0)
    with pytest.raises(NotFoundError):
        pool.get("toy@staging")
    Registry(workspace).set_alias("toy", "staging", 1)
    assert pool.peek("toy@staging") is None
    assert pool.get("toy@staging").version.version == 1


def test_an_alias_move_is_loaded_in_the_background_while_the_old_version_answers(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    add_versions(workspace, frame, 1)
    registry = Registry(workspace)
    pool = ModelPool(registry, loader_of(registry), refresh_seconds=0.05)
    assert pool.get("toy@champion").version.version == 1
    registry.set_alias("toy", "champion", 2)
    time.sleep(0.06)
    served = pool.peek("toy@champion")  # stale: answers at once with the known version, refreshes behind
    assert served is not None and served.version.version == 1
    wait_for(lambda: (s := pool.peek("toy@champion")) is not None and s.version.version == 2)


def test_least_recently_used_versions_are_unloaded_past_the_memory_budget(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    add_versions(workspace, frame, 3)
    registry = Registry(workspace)
    pool = ModelPool(registry, loader_of(registry, size=100), memory_budget_bytes=250, refresh_seconds=3600)
    pool.get("toy/1")
    pool.get("toy/2")
    pool.peek("toy/1")  # 1 is now more recent than 2
    pool.get("toy/3")
    assert [s.version.version for s in pool.loaded()] == [1, 3]
    assert pool.evictions == 1 and pool.memory_bytes == 200
    assert pool.peek("toy/2") is None  # unloaded: the next get loads it again
    assert pool.get("toy/2").version.version == 2
    assert pool.loads == 4 and [s.version.version for s in pool.loaded()] == [3, 2]


def test_a_model_larger_than_the_budget_is_still_served_alone(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    add_versions(workspace, frame, 1)
    registry = Registry(workspace)
    pool = ModelPool(registry, loader_of(registry, size=1000), memory_budget_bytes=10, refresh_seconds=3600)
    assert pool.get("toy/1").version.version == 1
    assert pool.get("toy/2").version.version == 2
    assert [s.version.version for s in pool.loaded()] == [2]


def test_a_slow_load_blocks_neither_other_loads_nor_loaded_models(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    add_versions(workspace, frame, 2)
    registry = Registry(workspace)
    release = threading.Event()
    normal = loader_of(registry)

    def load(version: ModelVersion) -> Served:
        if version.version == 2:
            assert release.wait(20), "the slow load was never released"
        return normal(version)

    pool = ModelPool(registry, load, refresh_seconds=3600)
    pool.get("toy/1")
    slow = threading.Thread(target=pool.get, args=("toy/2",))
    slow.start()
    time.sleep(0.1)  # the load of version 2 is now stuck in its loader
    started = time.monotonic()
    assert pool.peek("toy/1") is not None  # a loaded model answers
    assert pool.get("toy/3").version.version == 3  # another model loads meanwhile
    assert time.monotonic() - started < 5
    assert slow.is_alive()
    release.set()
    slow.join(20)
    assert pool.peek("toy/2") is not None


def test_concurrent_requests_for_one_new_version_load_it_once(
    workspace: Workspace, registered: ModelVersion
) -> None:
    registry = Registry(workspace)
    pool = ModelPool(registry, loader_of(registry), refresh_seconds=3600)
    threads = [threading.Thread(target=pool.get, args=("toy/1",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pool.loads == 1
