from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlprod.errors import InvalidInputError
from mlprod.monitor import parallel_profile
from mlprod.monitor.parallel_profile import default_workers, reference_from_parquet, window_from_parquet
from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
from mlprod.monitor.sketches import CategoricalSketch, NumericSketch

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


def window_counts(profile: Profile) -> dict[str, object]:
    """Everything a window counts exactly: bins, out of range, categories, rows and missing values."""
    found: dict[str, object] = {"rows": profile.rows}
    for name, sketch in profile.columns.items():
        if isinstance(sketch, NumericSketch):
            found[name] = (sketch.counts.tolist(), sketch.below, sketch.above, sketch.rows, sketch.missing)
        else:
            assert isinstance(sketch, CategoricalSketch)
            found[name] = sketch.to_dict()
    return found


@pytest.fixture(scope="module")
def reference(files: list[Path]) -> Profile:
    builder = ReferenceBuilder(SPEC, bins=8)
    for path in files:
        builder.update(pq.read_table(path))
    return builder.finish()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threaded_window_counts_exactly_what_one_pass_counts(
    files: list[Path], reference: Profile, workers: int
) -> None:
    one_pass = reference.window()
    for path in files:
        for batch in pq.read_table(path).to_batches(max_chunksize=5_000):
            one_pass.update(batch)
    threaded = window_from_parquet(reference, files, workers=workers, batch_rows=1_500)
    assert window_counts(threaded) == window_counts(one_pass)
    for name in SPEC.numeric:
        mine, theirs = threaded.columns[name].stats, one_pass.columns[name].stats  # type: ignore[union-attr]
        assert (mine.mean, mine.std) == pytest.approx((theirs.mean, theirs.std), rel=1e-12)


def test_threaded_reference_edges_are_within_the_kll_error(files: list[Path], reference: Profile) -> None:
    """The bins of a 3-thread reference sit at the same quantiles as one pass's, within the KLL error."""
    threaded = reference_from_parquet(files, SPEC, workers=3, batch_rows=1_500, bins=8).finish()
    values = np.concatenate([pq.read_table(path).column("amount").to_numpy() for path in files])
    ordered = np.sort(values[np.isfinite(values)])
    for profile in (threaded, reference):
        sketch = profile.columns["amount"]
        assert isinstance(sketch, NumericSketch)
        ranks = np.searchsorted(ordered, sketch.edges[1:-1]) / ordered.size
        bound = sketch.stats.kll.normalized_rank_error(False)
        # 99 % confidence per query, so half again keeps the test steady (as in test_profile)
        assert np.abs(ranks - np.arange(1, 8) / 8).max() <= 1.5 * bound
        assert (sketch.edges[0], sketch.edges[-1]) == (ordered[0], ordered[-1])
        assert sketch.counts.sum() == ordered.size


def test_long_row_groups_stream_in_batches(
    files: list[Path], reference: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel_profile, "_WHOLE_CHUNK_ROWS", 2_000)  # every row group is longer
    streamed = window_from_parquet(reference, files, workers=2, batch_rows=700)
    whole = window_from_parquet(reference, files, workers=2, batch_rows=700)
    monkeypatch.undo()
    assert window_counts(streamed) == window_counts(whole)
    assert streamed.rows == 39_000


def test_wrong_column_type_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    pq.write_table(table(100, seed=4).set_column(0, "amount", pa.array(["12.5"] * 100)), path)
    with pytest.raises(
        InvalidInputError, match=r"column 'amount' must be numeric \(integer, float or boolean\), got string"
    ):
        reference_from_parquet(path, SPEC)


@pytest.mark.parametrize(("load", "expected"), [(0.2, 2), (1.4, 2), (1.6, 1), (9.5, 1)])
def test_default_workers_are_the_idle_cores(
    monkeypatch: pytest.MonkeyPatch, load: float, expected: int
) -> None:
    monkeypatch.setattr(parallel_profile.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(parallel_profile.os, "getloadavg", lambda: (load, load, load))
    assert default_workers() == expected


def test_default_workers_without_a_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(parallel_profile.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(parallel_profile.os, "getloadavg", unknown)
    assert default_workers() == 3


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
