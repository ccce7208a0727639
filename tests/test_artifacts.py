import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlprod.artifacts import ArtifactStore, sha256_bytes
from mlprod.errors import ArtifactCorruptedError, ArtifactError, ArtifactNotFoundError


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_blob_is_named_by_its_sha256_and_read_back(store: ArtifactStore) -> None:
    sha = store.put_bytes(b"model bytes")
    assert sha == sha256_bytes(b"model bytes")
    assert store.path_of(sha) == store.root / sha[:2] / sha[2:]
    assert store.get_bytes(sha) == b"model bytes"
    assert list(store) == [sha]


def test_storing_the_same_bytes_twice_keeps_one_blob(store: ArtifactStore) -> None:
    assert store.put_bytes(b"x") == store.put_bytes(b"x")
    assert len(list(store)) == 1


def test_no_temporary_file_is_left_after_a_write(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    sha = store.put_file(source)
    assert store.get_bytes(sha) == source.read_bytes()
    assert list((store.root / "tmp").iterdir()) == []


def test_a_corrupted_blob_is_refused_with_its_name(store: ArtifactStore) -> None:
    sha = store.put_bytes(b"original")
    store.path_of(sha).write_bytes(b"tampered")
    with pytest.raises(ArtifactCorruptedError, match=f"artifact {sha} at .* is corrupted"):
        store.get_bytes(sha)
    with pytest.raises(ArtifactCorruptedError, match=sha):
        store.verify(sha)


def test_a_missing_blob_is_not_found(store: ArtifactStore) -> None:
    missing = "0" * 64
    with pytest.raises(ArtifactNotFoundError, match=f"artifact {missing} not found"):
        store.get_bytes(missing)
    with pytest.raises(ArtifactNotFoundError):
        store.verify(missing)


@pytest.mark.parametrize("bad", ["abc", "../" + "a" * 61, "A" * 64])
def test_a_name_that_is_not_a_digest_is_refused(store: ArtifactStore, bad: str) -> None:
    with pytest.raises(ArtifactError, match="is not a sha256 hex digest"):
        store.get_bytes(bad)


def test_stale_temporaries_of_killed_writers_are_removed(store: ArtifactStore) -> None:
    stale = store.root / "tmp" / "put-stale"
    fresh = store.root / "tmp" / "put-fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.remove_stale_temporaries() == 1
    assert not stale.exists() and fresh.exists()


def test_a_store_root_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ArtifactError, match="cannot create artifact store"):
        ArtifactStore(tmp_path / "file")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    store = ArtifactStore(tmp_path_factory.mktemp("a"))
    assert store.get_bytes(store.put_bytes(data)) == data


def test_writing_the_same_bytes_again_repairs_a_corrupted_blob(store: ArtifactStore) -> None:
    sha = store.put_bytes(b"model")
    store.path_of(sha).write_bytes(b"tampered")
    assert store.put_bytes(b"model") == sha
    assert store.get_bytes(sha) == b"model"
