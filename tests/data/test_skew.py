from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mlprod.data.skew import ks_statistic, psi, skew
from mlprod.errors import InvalidInputError


def _table(seed: int, *, shift: float = 0.0, mix: tuple[float, float, float] = (0.5, 0.3, 0.2)) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = 5_000
    return pa.table(
        {
            "delay": rng.normal(10.0 + shift, 5.0, rows),
            "distance": rng.integers(100, 3_000, rows),
            "carrier": rng.choice(["AA", "UA", "DL"], rows, p=list(mix)),
        }
    )


def test_identical_tables_do_not_drift() -> None:
    table = _table(0)
    report = skew(table, table)
    assert [c.name for c in report.columns] == ["delay", "distance", "carrier"]
    assert report.drifted == []
    for column in report.columns:
        assert column.psi == pytest.approx(0.0, abs=1e-12)
        assert not column.drifted
    assert report.column("delay").ks == 0.0
    assert report.column("carrier").ks is None
    assert [c.kind for c in report.columns] == ["numeric", "numeric", "categorical"]


def test_two_samples_of_one_distribution_do_not_drift() -> None:
    report = skew(_table(0), _table(1))
    assert report.drifted == []
    assert all(c.psi < 0.02 for c in report.columns)


def test_shifted_numeric_and_changed_category_mix_drift() -> None:
    report = skew(_table(0), _table(1, shift=5.0, mix=(0.1, 0.3, 0.6)))
    assert report.drifted == ["delay", "carrier"]
    assert report.column("delay").psi > 0.2
    assert report.column("carrier").psi > 0.2
    assert report.column("distance").psi < 0.02
    assert "DRIFTED" in report.format().splitlines()[1]
    assert report.format().splitlines()[0] == "2 of 3 column(s) drifted (PSI > 0.2):"


def test_psi_threshold_decides_drift() -> None:
    reference, current = _table(0), _table(1, shift=1.0)
    moderate = skew(reference, current).column("delay").psi
    assert 0.0 < moderate < 0.2
    assert skew(reference, current, psi_threshold=moderate / 2).drifted == ["delay"]


def test_ks_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    reference, current = _table(0), _table(1, shift=0.7)
    for name in ("delay", "distance"):
        expected = stats.ks_2samp(
            reference.column(name).to_numpy(), current.column(name).to_numpy()
        ).statistic
        assert skew(reference, current).column(name).ks == pytest.approx(expected, abs=1e-12)


def test_ks_statistic_with_ties_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 200).astype(float), rng.integers(1, 6, 300).astype(float)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_psi_formula() -> None:
    assert psi(np.array([50.0, 50.0]), np.array([90.0, 10.0])) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) + (-0.4) * np.log(0.1 / 0.5)
    )
    # an empty bin on one side is clipped, not log(0)
    assert np.isfinite(psi(np.array([10.0, 0.0]), np.array([5.0, 5.0])))


def test_null_fraction_reported_and_nulls_count_as_drift() -> None:
    reference = pa.table({"x": [float(i) for i in range(100)], "c": ["a", "b"] * 50})
    current = pa.table(
        {
            "x": [None if i % 2 else float(i) for i in range(100)],
            "c": [None if i < 40 else "ab"[i % 2] for i in range(100)],
        }
    )
    report = skew(reference, current)
    x, c = report.column("x"), report.column("c")
    assert (x.null_fraction_reference, x.null_fraction_current) == (0.0, 0.5)
    assert (c.null_fraction_reference, c.null_fraction_current) == (0.0, 0.4)
    assert x.drifted and c.drifted
    assert "nulls 0.0% -> 50.0%" in report.format()


def test_nan_counts_as_missing() -> None:
    reference = pa.table({"x": [1.0, 2.0, 3.0, 4.0]})
    current = pa.table({"x": [1.0, 2.0, float("nan"), None]})
    assert skew(reference, current).column("x").null_fraction_current == 0.5


def test_columns_only_in_one_table_are_listed() -> None:
    reference = _table(0).append_column("old", pa.array([1] * 5_000))
    current = _table(0).append_column("new", pa.array(["n"] * 5_000))
    report = skew(reference, current)
    assert report.only_in_reference == ("old",)
    assert report.only_in_current == ("new",)
    assert [c.name for c in report.columns] == ["delay", "distance", "carrier"]
    assert "only in reference: old" in report.format()


def test_selected_columns() -> None:
    report = skew(_table(0), _table(1), columns=["carrier"])
    assert [c.name for c in report.columns] == ["carrier"]


def test_unknown_column_is_an_error_naming_it() -> None:
    with pytest.raises(
        InvalidInputError, match=r"column 'nope' is not in the reference table \(columns: delay"
    ):
        skew(_table(0), _table(1), columns=["delay", "nope"])
    current = _table(1).drop_columns(["carrier"])
    with pytest.raises(InvalidInputError, match="column 'carrier' is not in the current table"):
        skew(_table(0), current, columns=["carrier"])


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="bins must be at least 1, got 0"):
        skew(_table(0), _table(1), bins=0)
    with pytest.raises(InvalidInputError, match="the current table has no rows"):
        skew(_table(0), _table(1).slice(0, 0))


def test_constant_and_all_null_columns() -> None:
    reference = pa.table({"k": [7] * 10, "z": pa.array([None] * 10, pa.float64())})
    current = pa.table({"k": [7] * 10, "z": pa.array([1.0] * 10)})
    report = skew(reference, current)
    assert report.column("k").psi == pytest.approx(0.0)
    assert report.column("z").ks is None
    assert report.column("z").drifted


def test_temporal_and_dictionary_columns() -> None:
    days = pa.array(np.arange(100, dtype="int32"), pa.date32())
    later = pa.array(np.arange(100, 200, dtype="int32"), pa.date32())
    carriers = pa.array(["AA", "UA"] * 50).dictionary_encode()
    report = skew(pa.table({"day": days, "c": carriers}), pa.table({"day": later, "c": carriers}))
    assert report.column("day").kind == "numeric"
    assert report.column("day").ks == 1.0
    assert report.column("c").kind == "categorical"
    assert report.drifted == ["day"]


def test_to_dict_is_json_serialisable() -> None:
    report = skew(_table(0), _table(1, shift=5.0))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["drifted"] == ["delay"]
    assert data["columns"][0]["name"] == "delay"
    assert data["columns"][0]["kind"] == "numeric"
    assert set(data) == {"columns", "drifted", "only_in_reference", "only_in_current", "psi_threshold"}
