from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlprod.errors import InvalidInputError
from mlprod.monitor.parallel_profile import reference_from_parquet
from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder

SPEC = ProfileSpec(numeric=("amount", "age"), categorical=("city",), label=None)


def table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, rows)
    amount[rng.random(rows) < 0.05] = np.nan
    cities = np.array(["paris", "rome", "oslo", None], dtype=object)
    return pa.table(
        {
            "amount": amount,
            "age": rng.integers(18, 90, rows),
            "city": pa.array(rng.choice(cities, rows, p=[0.5, 0.3, 0.15, 0.05]), pa.string()),
            "prediction": rng.random(rows),
            "unwatched": np.zeros(rows),
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("reference")
    paths = [folder / "a.parquet", folder / "b.parquet"]
    pq.write_table(table(30_000, seed=1), paths[0], row_group_size=4_000)
    pq.write_table(table(9_000, seed=2), paths[1], row_group_size=9_000)
    return paths


def exact_counts(profile: Profile) -> dict[str, object]:
    """What a profile counts exactly: not the KLL quantiles, which are randomized, nor the edges from them."""
    found: dict[str, object] = {"rows": profile.rows}
    for name, sketch in profile.columns.items():
        if name in SPEC.categorical:
            found[name] = sketch.to_dict()
        else:
            stats = sketch.stats  # type: ignore[union-attr]
            found[name] = (stats.rows, stats.missing, stats.min, stats.max)
    return found


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threads_count_what_one_pass_counts(files: list[Path], workers: int) -> None:
    one_pass = ReferenceBuilder(SPEC, bins=8)
    for path in files:
        one_pass.update(pq.read_table(path))
    parallel = reference_from_parquet(files, SPEC, workers=workers, batch_rows=1_500, bins=8)
    assert exact_counts(parallel.finish()) == exact_counts(one_pass.finish())
    for name in SPEC.numeric:
        threaded, serial = parallel.columns[name], one_pass.columns[name]
        assert threaded.mean == pytest.approx(serial.mean, rel=1e-12)  # type: ignore[union-attr]
        assert threaded.kll.n == serial.kll.n  # type: ignore[union-attr]


def test_one_file_path_and_builder_settings(files: list[Path]) -> None:
    profile = reference_from_parquet(str(files[1]), SPEC, bins=4, max_categories=2).finish()
    assert profile.rows == 9_000
    assert profile.columns["amount"].counts.size == 4  # type: ignore[union-attr]
    assert profile.columns["city"].vocabulary == ("paris", "rome")  # type: ignore[union-attr]


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "partial.parquet"
    pq.write_table(table(100, seed=3).drop_columns(["city"]), path)
    with pytest.raises(InvalidInputError, match="has no column 'city'"):
        reference_from_parquet(path, SPEC)


def test_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.parquet"
    path.write_text("not parquet")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        reference_from_parquet(path, SPEC)


def test_workers_must_be_positive(files: list[Path]) -> None:
    with pytest.raises(InvalidInputError, match="workers and batch_rows must be at least 1, got 0"):
        reference_from_parquet(files, SPEC, workers=0)
