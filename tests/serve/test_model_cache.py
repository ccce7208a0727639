import pytest

from mlprod.errors import NotFoundError
from mlprod.models import ModelVersion, Registry
from mlprod.serve import ModelCache
from mlprod.workspace import Workspace


class CountingRegistry(Registry):
    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace)
        self.lookups = 0

    def get(self, ref):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return super().get(ref)


def test_versions_are_cached_for_good_and_aliases_refreshed(
    workspace: Workspace, registered: ModelVersion
) -> None:
    registry = CountingRegistry(workspace)
    cache = ModelCache(registry, refresh_seconds=3600)
    first = cache.get("toy/1")
    assert cache.peek("toy/1") is first
    assert cache.get("toy@champion").version == 1
    assert registry.lookups == 2
    for _ in range(100):
        cache.peek("toy@champion")
    assert registry.lookups == 2


def test_unknown_models_are_remembered_as_missing(workspace: Workspace, registered: ModelVersion) -> None:
    registry = CountingRegistry(workspace)
    cache = ModelCache(registry, refresh_seconds=3600)
    with pytest.raises(NotFoundError):
        cache.get("ghost")
    for _ in range(100):
        with pytest.raises(NotFoundError, match="model 'ghost' is not registered"):
            cache.peek("ghost")
    assert registry.lookups == 1


def test_a_miss_expires_so_a_new_model_is_found(workspace: Workspace, registered: ModelVersion) -> None:
    cache = ModelCache(Registry(workspace), refresh_seconds=0)
    with pytest.raises(NotFoundError):
        cache.get("toy@staging")
    Registry(workspace).set_alias("toy", "staging", 1)
    assert cache.peek("toy@staging") is None
    assert cache.get("toy@staging").version == 1
