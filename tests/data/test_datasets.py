import pyarrow as pa
import pytest

from mlprod.data import DatasetStore
from mlprod.errors import ArtifactCorruptedError, InvalidInputError, NotFoundError
from mlprod.workspace import Workspace


def test_commit_then_read_returns_the_same_rows(workspace: Workspace) -> None:
    store = DatasetStore(workspace)
    table = pa.table({"id": [1, 2, 3], "city": ["a", "b", None]})
    version = store.commit("cities", table, message="first")
    assert (version.dataset, version.version, version.num_rows) == ("cities", 1, 3)
    assert version.schema == {"id": "int64", "city": "string"}
    assert store.read("cities").equals(table)


def test_versions_are_numbered_and_each_stays_readable(workspace: Workspace) -> None:
    store = DatasetStore(workspace)
    store.commit("d", pa.table({"x": [1]}))
    store.commit("d", pa.table({"x": [1, 2]}))
    assert [v.version for v in store.versions("d")] == [1, 2]
    assert store.read("d", 1).num_rows == 1
    assert store.read("d").num_rows == 2


def test_committing_identical_data_creates_no_new_version(workspace: Workspace) -> None:
    store = DatasetStore(workspace)
    first = store.commit("d", pa.table({"x": [1, 2]}))
    again = store.commit("d", pa.table({"x": [1, 2]}), message="rerun")
    assert again == first
    assert len(store.versions("d")) == 1


def test_unknown_dataset_and_version_are_named(workspace: Workspace) -> None:
    store = DatasetStore(workspace)
    store.commit("known", pa.table({"x": [1]}))
    with pytest.raises(NotFoundError, match=r"dataset 'other' not found \(datasets: known\)"):
        store.get("other")
    with pytest.raises(NotFoundError, match="dataset 'known' version 7 not found"):
        store.read("known", 7)


@pytest.mark.parametrize("name", ["", "../x", "a b", "x" * 200])
def test_invalid_names_are_refused_before_anything_is_written(workspace: Workspace, name: str) -> None:
    with pytest.raises(InvalidInputError, match="dataset name"):
        DatasetStore(workspace).commit(name, pa.table({"x": [1]}))
    assert list(workspace.artifacts) == []


def test_a_table_without_columns_is_refused(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="no columns"):
        DatasetStore(workspace).commit("d", pa.table({}))


def test_a_tampered_snapshot_is_refused(workspace: Workspace) -> None:
    store = DatasetStore(workspace)
    version = store.commit("d", pa.table({"x": [1, 2, 3]}))
    workspace.artifacts.path_of(version.artifact_sha256).write_bytes(b"not parquet")
    with pytest.raises(ArtifactCorruptedError, match=version.artifact_sha256):
        store.read("d")
