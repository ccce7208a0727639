import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlprod.errors import InvalidInputError
from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
from mlprod.monitor.sketches import CategoricalSketch, NumericSketch

SPEC = ProfileSpec(numeric=("age", "amount"), categorical=("city",))


def table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, rows)
    amount[rng.random(rows) < 0.05] = np.nan
    city = rng.choice(
        np.array(["paris", "rome", "oslo", "lima", None], dtype=object), rows, p=[0.4, 0.3, 0.2, 0.05, 0.05]
    )
    return pa.table(
        {
            "age": pa.array(rng.integers(18, 90, rows)),
            "amount": amount,
            "city": pa.array(city, pa.string()),
            "prediction": rng.random(rows),
            "label": rng.integers(0, 2, rows),
            "ignored": np.zeros(rows),
        }
    )


@pytest.fixture(scope="module")
def reference() -> Profile:
    builder = ReferenceBuilder(SPEC, bins=10, max_categories=3)
    for batch in table(20_000, seed=1).to_batches(max_chunksize=3000):
        builder.update(batch)
    return builder.finish()


def counts(profile: Profile) -> dict[str, tuple[object, ...]]:
    """Every exact count of a profile, column by column."""
    result: dict[str, tuple[object, ...]] = {}
    for name, sketch in profile.columns.items():
        if isinstance(sketch, NumericSketch):
            result[name] = (sketch.counts.tolist(), sketch.below, sketch.above, sketch.rows, sketch.missing)
        else:
            assert isinstance(sketch, CategoricalSketch)
            result[name] = (sketch.counts.tolist(), sketch.other, sketch.unseen, sketch.rows, sketch.missing)
    return result


def test_spec_kinds_cover_prediction_and_label() -> None:
    assert SPEC.kinds() == {
        "age": "numeric",
        "amount": "numeric",
        "prediction": "numeric",
        "city": "categorical",
        "label": "categorical",
    }
    assert SPEC.compared == ("age", "amount", "city", "prediction")
    assert ProfileSpec(numeric=("x",), prediction=None, label=None).kinds() == {"x": "numeric"}


def test_spec_refuses_a_column_named_twice() -> None:
    with pytest.raises(InvalidInputError, match="column 'x' appears twice"):
        ProfileSpec(numeric=("x",), categorical=("x",))
    with pytest.raises(InvalidInputError, match="column 'prediction' appears twice"):
        ProfileSpec(numeric=("prediction",))


def test_reference_has_fixed_bins_vocabulary_and_all_rows(reference: Profile) -> None:
    data = table(20_000, seed=1)
    amount = reference.columns["amount"]
    city = reference.columns["city"]
    assert isinstance(amount, NumericSketch) and isinstance(city, CategoricalSketch)
    assert reference.rows == 20_000
    assert amount.counts.size == 10 and amount.counts.sum() == amount.stats.count
    assert amount.missing == np.isnan(data.column("amount").to_numpy()).sum()
    assert city.vocabulary == ("paris", "rome", "oslo")
    assert city.other == data.column("city").to_pylist().count("lima")
    assert city.known == ("lima", "oslo", "paris", "rome")
    label = reference.columns["label"]
    assert isinstance(label, CategoricalSketch) and set(label.vocabulary) == {"0", "1"}


def test_reference_builders_merge_like_one_pass() -> None:
    data = table(20_000, seed=1)
    left = ReferenceBuilder(SPEC, bins=10).update(data.slice(0, 7000))
    right = ReferenceBuilder(SPEC, bins=10).update(data.slice(7000))
    merged = left.merge(right).finish()
    whole = ReferenceBuilder(SPEC, bins=10).update(data).finish()
    assert merged.rows == whole.rows == 20_000
    for name in ("age", "amount", "prediction"):
        ours, theirs = merged.columns[name], whole.columns[name]
        assert isinstance(ours, NumericSketch) and isinstance(theirs, NumericSketch)
        assert (ours.rows, ours.missing, ours.stats.min, ours.stats.max) == (
            theirs.rows,
            theirs.missing,
            theirs.stats.min,
            theirs.stats.max,
        )
        assert ours.stats.mean == pytest.approx(theirs.stats.mean, rel=1e-12)
    assert counts(merged)["city"] == counts(whole)["city"]


def test_reference_builders_with_other_settings_do_not_merge() -> None:
    with pytest.raises(InvalidInputError, match="different specs or settings"):
        ReferenceBuilder(SPEC, bins=10).merge(ReferenceBuilder(SPEC, bins=20))


def test_window_fed_batch_by_batch_counts_like_all_at_once(reference: Profile) -> None:
    data = table(30_000, seed=2)
    at_once = reference.window().update(data)
    by_batch = reference.window()
    for batch in data.to_batches(max_chunksize=1000):
        by_batch.update(batch)
    assert counts(by_batch) == counts(at_once)
    assert by_batch.rows == at_once.rows == 30_000


def test_window_kll_quantiles_are_within_the_error_bound(reference: Profile) -> None:
    data = table(30_000, seed=2)
    window = reference.window()
    for batch in data.to_batches(max_chunksize=1000):
        window.update(batch)
    sketch = window.columns["amount"]
    assert isinstance(sketch, NumericSketch)
    values = np.sort(data.column("amount").to_numpy())
    values = values[np.isfinite(values)]
    bound = sketch.stats.kll.normalized_rank_error(False)
    ranks = np.linspace(0.01, 0.99, 50)
    estimated_ranks = np.searchsorted(values, sketch.stats.kll.get_quantiles(ranks.tolist())) / values.size
    # the bound holds with 99% confidence per query (measured worst: 0.8x); half again keeps this test steady
    assert np.abs(estimated_ranks - ranks).max() <= 1.5 * bound


def test_merged_windows_equal_the_window_of_their_union(reference: Profile) -> None:
    data = table(30_000, seed=3)
    union = reference.window().update(data)
    merged = (
        reference.window().update(data.slice(0, 12_345)).merge(reference.window().update(data.slice(12_345)))
    )
    assert counts(merged) == counts(union)
    assert merged.rows == union.rows


def test_window_counts_match_numpy(reference: Profile) -> None:
    data = table(30_000, seed=4)
    window = reference.window().update(data)
    amount = window.columns["amount"]
    assert isinstance(amount, NumericSketch)
    values = data.column("amount").to_numpy()
    finite = values[np.isfinite(values)]
    inner = np.histogram(np.clip(finite, amount.edges[0], amount.edges[-1]), bins=amount.edges)[0]
    assert amount.counts.tolist() == inner.tolist()
    assert amount.below == np.sum(finite < amount.edges[0]) and amount.above == np.sum(
        finite > amount.edges[-1]
    )
    assert amount.missing == values.size - finite.size


def test_profile_round_trips_through_json_bytes(reference: Profile) -> None:
    window = reference.window().update(table(5000, seed=5))
    data = window.to_bytes()
    assert data.startswith(b'{"format":"mlprod.monitor.profile"')
    back = Profile.from_bytes(data)
    assert back.spec == window.spec and back.rows == window.rows
    assert counts(back) == counts(window)
    assert back.to_bytes() == data
    back.require_comparable(reference)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80not json", "not a serialized monitoring profile"),
        (b'{"format": "other", "version": 1}', "expected format 'mlprod.monitor.profile' version 1"),
        (
            b'{"format": "mlprod.monitor.profile", "version": 1}',
            "not a serialized monitoring profile: 'spec'",
        ),
    ],
)
def test_profile_from_bad_bytes_says_so(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Profile.from_bytes(data)


def test_profile_accepts_pandas_record_batches_and_dictionaries(reference: Profile) -> None:
    data = table(2000, seed=6)
    from_arrow = reference.window().update(data)
    frame = data.to_pandas()
    assert frame["label"].dtype == np.int64
    frame["label"] = frame["label"].astype(float)  # as after a join that left some labels missing
    from_pandas = reference.window().update(frame)
    dictionary = data.set_column(2, "city", data.column("city").dictionary_encode())
    from_dictionary = reference.window()
    for batch in dictionary.to_batches(max_chunksize=500):
        from_dictionary.update(batch)
    assert counts(from_pandas) == counts(from_arrow) == counts(from_dictionary)


def test_missing_column_is_named(reference: Profile) -> None:
    data = table(10, seed=7).drop_columns(["amount"])
    with pytest.raises(
        InvalidInputError, match=r"batch has no column 'amount' \(numeric in the profile spec\)"
    ):
        reference.window().update(data)
    with pytest.raises(InvalidInputError, match="batch has no column 'amount'"):
        ReferenceBuilder(SPEC).update(data)


def test_wrong_column_types_are_named_and_change_nothing(reference: Profile) -> None:
    data = table(10, seed=7)
    window = reference.window().update(data)
    before = counts(window)
    as_text = data.set_column(1, "amount", pa.array(["1.5"] * 10))
    with pytest.raises(InvalidInputError, match=r"column 'amount' must be numeric .*, got string"):
        window.update(as_text)
    as_lists = data.set_column(2, "city", pa.array([["a"]] * 10))
    with pytest.raises(
        InvalidInputError, match=r"column 'city' must be categorical .*, got list<item: string>"
    ):
        window.update(as_lists)
    assert counts(window) == before and window.rows == 10


def test_batch_must_be_a_table() -> None:
    with pytest.raises(
        InvalidInputError, match="pyarrow Table or RecordBatch or a pandas DataFrame, got dict"
    ):
        ReferenceBuilder(SPEC).update({"age": [1]})


def test_incompatible_profiles_do_not_merge(reference: Profile) -> None:
    other_bins = ReferenceBuilder(SPEC, bins=5).update(table(20_000, seed=1)).finish()
    with pytest.raises(InvalidInputError, match="profiles differ in column 'age'"):
        reference.window().merge(other_bins.window())
    other_spec = (
        ReferenceBuilder(ProfileSpec(numeric=("age",), label=None)).update(table(100, seed=1)).finish()
    )
    with pytest.raises(InvalidInputError, match="profiles have different specs"):
        reference.merge(other_spec)


def test_profile_columns_must_match_the_spec(reference: Profile) -> None:
    columns = dict(reference.columns)
    columns["city"] = columns.pop("age")
    with pytest.raises(InvalidInputError, match="profile column 'age' must have a numeric sketch"):
        Profile(SPEC, columns)


def test_empty_reference_and_window_are_usable() -> None:
    spec = ProfileSpec(numeric=("x",), categorical=("c",), prediction=None, label=None)
    empty = pd.DataFrame({"x": pd.Series([], dtype=float), "c": pd.Series([], dtype=object)})
    reference = ReferenceBuilder(spec).update(empty).finish()
    window = reference.window().update(pd.DataFrame({"x": [1.0, None], "c": ["a", None]}))
    assert counts(window) == {"x": ([1], 0, 0, 2, 1), "c": ([], 0, 1, 2, 1)}
