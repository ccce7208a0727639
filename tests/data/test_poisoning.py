from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mlprod.data.poisoning import (
    Finding,
    PoisoningReport,
    check_poisoning,
    duplicate_flood,
    label_issues,
    label_shift,
    outliers,
)
from mlprod.errors import InvalidInputError

N_REFERENCE = 3000
N_BATCH = 2000


def make_table(n: int, seed: int, *, start: int = 0, positive_share: float = 0.2) -> pa.Table:
    """Six numeric and three categorical features; the label is an easily learnt linear cut."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    columns: dict[str, object] = {"id": np.arange(start, start + n)}
    for j in range(6):
        columns[f"x{j}"] = x[:, j]
    for j in range(3):
        columns[f"c{j}"] = rng.choice(["a", "b", "c"], size=n)
    score = x[:, 0] + 0.5 * x[:, 1] + 0.1 * rng.normal(size=n)
    cut = np.quantile(score, 1 - positive_share)
    columns["y"] = (score > cut).astype(np.int64)
    return pa.table(columns)


def replace(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


@pytest.fixture(scope="module")
def reference() -> pa.Table:
    return make_table(N_REFERENCE, seed=1)


@pytest.fixture(scope="module")
def clean() -> pa.Table:
    return make_table(N_BATCH, seed=2, start=N_REFERENCE)


# --- duplicate flood ---------------------------------------------------------------------------


def test_duplicate_flood_finds_all_copies_of_a_flooded_row(reference: pa.Table, clean: pa.Table) -> None:
    copies = clean.take(pa.array([0] * 300)).set_column(0, "id", pa.array(np.arange(300) + 10**6))
    batch = pa.concat_tables([clean, copies])

    found = duplicate_flood(batch, reference, key=["id"], features=None)

    assert found.flagged
    assert found.statistic == 301  # the original row plus its 300 copies
    assert found.threshold == 20
    assert found.rows.tolist() == [0, *range(N_BATCH, N_BATCH + 300)]
    assert found.count == 301
    assert found.examples[0]["copies"] == 301
    assert found.examples[0]["id"] == N_REFERENCE
    assert found.examples[0]["x0"] == pytest.approx(clean.column("x0")[0].as_py())


def test_duplicate_flood_passes_clean_batch(reference: pa.Table, clean: pa.Table) -> None:
    found = duplicate_flood(clean, reference, key=["id"])

    assert not found.flagged
    assert found.statistic == 1
    assert found.rows.size == 0


def test_duplicate_flood_allows_repeats_the_reference_has_too() -> None:
    # Three categorical features with three values each: rows repeat about 110 times naturally.
    reference = make_table(N_REFERENCE, seed=1)
    batch = make_table(N_BATCH, seed=2)

    found = duplicate_flood(batch, reference, key=["id"], features=["c0", "c1", "c2"])

    assert found.statistic > 20
    assert not found.flagged
    assert found.threshold > found.statistic


# --- outliers ----------------------------------------------------------------------------------


def test_outliers_finds_rows_far_outside_the_reference(reference: pa.Table, clean: pa.Table) -> None:
    rng = np.random.default_rng(5)
    planted = np.sort(rng.choice(N_BATCH, N_BATCH // 100, replace=False))
    x3 = clean.column("x3").to_numpy().copy()
    x3[planted] = 50.0 * rng.choice([-1.0, 1.0], size=len(planted))
    batch = replace(clean, "x3", x3)

    found = outliers(batch, reference, key=["id"])

    assert found.flagged
    assert found.rows.tolist() == planted.tolist()
    assert found.statistic == pytest.approx(0.01)
    assert found.threshold == pytest.approx(0.005)
    assert [e["column"] for e in found.examples] == ["x3"] * 5
    scores = [e["score"] for e in found.examples]
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] > 40


def test_outliers_counts_unseen_categories(reference: pa.Table, clean: pa.Table) -> None:
    c1 = clean.column("c1").to_numpy(zero_copy_only=False).copy()
    c1[:50] = "<script>"
    batch = replace(clean, "c1", c1)

    found = outliers(batch, reference, key=["id"])

    assert found.flagged
    assert found.rows.tolist() == list(range(50))
    assert found.examples[0]["column"] == "c1"
    assert found.examples[0]["value"] == "<script>"
    assert found.examples[0]["unseen"] is True


def test_outliers_passes_clean_batch_with_degenerate_features(reference: pa.Table, clean: pa.Table) -> None:
    # A mostly-zero feature (MAD is 0), a constant one and free text must not make ordinary rows outliers.
    def degenerate(table: pa.Table, seed: int) -> pa.Table:
        rng = np.random.default_rng(seed)
        sparse = np.where(rng.random(table.num_rows) < 0.95, 0.0, rng.exponential(size=table.num_rows))
        table = table.append_column("sparse", pa.array(sparse))
        table = table.append_column("name", pa.array([f"user-{seed}-{i}" for i in range(table.num_rows)]))
        return table.append_column("constant", pa.array(np.full(table.num_rows, 3)))

    found = outliers(degenerate(clean, 7), degenerate(reference, 8), key=["id"])

    assert not found.flagged
    assert found.statistic < 0.005
    assert found.rows.size == 0
    assert found.detail.endswith("new values not counted in open-ended column(s) name")


# --- label shift -------------------------------------------------------------------------------


def test_label_shift_finds_a_jump_in_class_shares(reference: pa.Table) -> None:
    batch = make_table(N_BATCH, seed=3, positive_share=0.6)

    found = label_shift(batch, reference, label="y")

    assert found.flagged
    assert found.statistic == pytest.approx(0.4, abs=0.01)
    assert found.count == N_BATCH
    assert found.rows.size == 0
    shares = {e["class"]: (e["reference_share"], e["batch_share"]) for e in found.examples}
    assert shares[1] == pytest.approx((0.2, 0.6), abs=0.01)


def test_label_shift_passes_clean_batch_and_small_noisy_batch(reference: pa.Table, clean: pa.Table) -> None:
    assert not label_shift(clean, reference, label="y").flagged
    # 6 of 20 positive is a 10-point jump, but far from significant in a batch that small.
    small = pa.table({"y": [1] * 7 + [0] * 13})
    found = label_shift(small, reference, label="y")
    assert found.statistic > 0.1
    assert not found.flagged


# --- label issues ------------------------------------------------------------------------------


def test_label_issues_finds_flipped_labels(reference: pa.Table, clean: pa.Table) -> None:
    rng = np.random.default_rng(6)
    flipped = rng.choice(N_BATCH, N_BATCH // 10, replace=False)
    y = clean.column("y").to_numpy().copy()
    y[flipped] = 1 - y[flipped]
    batch = replace(clean, "y", y)

    found = label_issues(batch, reference, key=["id"], label="y", seed=0)

    assert found.flagged
    hits = len(set(found.rows.tolist()) & set(flipped.tolist()))
    assert hits / len(found.rows) > 0.7  # precision
    assert hits / len(flipped) > 0.7  # recall
    scores = [e["score"] for e in found.examples]
    assert scores == sorted(scores)
    assert all(e["label"] != e["predicted"] for e in found.examples)
    again = label_issues(batch, reference, key=["id"], label="y", seed=0)
    assert again.rows.tolist() == found.rows.tolist()


def test_label_issues_passes_clean_batch(reference: pa.Table, clean: pa.Table) -> None:
    found = label_issues(clean, reference, key=["id"], label="y")

    assert not found.flagged
    assert found.statistic < found.threshold
    assert found.rows.size == 0


def test_label_issues_skips_without_label_or_enough_rows(reference: pa.Table) -> None:
    small = reference.slice(0, 100)

    skipped = label_issues(small, small, key=["id"], label="y")
    no_label = label_issues(reference, reference, key=["id"], label=None)

    assert not skipped.flagged
    assert skipped.detail.startswith("skipped: class 1 has ")
    assert no_label.detail == "skipped: no label column given"


# --- inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": ["nope"]}, "key column 'nope' is missing from the batch table"),
        ({"key": ["id"], "label": "nope"}, "label column 'nope' is missing from the batch table"),
        (
            {"key": ["id"], "features": ["x0", "nope"]},
            "feature column 'nope' is missing from the batch table",
        ),
        ({"key": ["id"], "label": "x0"}, "label column 'x0' has non-integer values in the batch table"),
        (
            {"key": ["id"], "label": "y", "features": ["x0", "y"]},
            "label column 'y' is also listed in features",
        ),
    ],
)
def test_bad_columns_are_refused(reference: pa.Table, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_poisoning(reference, reference, **kwargs)  # type: ignore[arg-type]


def test_missing_from_reference_and_mismatched_types_are_refused(reference: pa.Table) -> None:
    batch = reference.append_column("extra", pa.array(np.zeros(N_REFERENCE)))
    with pytest.raises(InvalidInputError, match="feature column 'extra' is missing from the reference table"):
        check_poisoning(batch, reference, key=["id"], features=["extra"])
    as_text = replace(reference, "x0", np.array(["1.0"] * N_REFERENCE, dtype=object))
    with pytest.raises(InvalidInputError, match="feature column 'x0' is string in the batch but double"):
        check_poisoning(as_text, reference, key=["id"])
    many = pa.table({"id": np.arange(100), "y": np.arange(100)})
    with pytest.raises(InvalidInputError, match="label column 'y' has 100 distinct numeric values"):
        label_shift(many, many, label="y")


# --- report ------------------------------------------------------------------------------------


def test_report_summarises_flagged_findings(reference: pa.Table, clean: pa.Table) -> None:
    copies = clean.take(pa.array([1] * 100)).set_column(0, "id", pa.array(np.arange(100) + 10**6))
    x2 = clean.column("x2").to_numpy().copy()
    x2[[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] = np.inf
    batch = pa.concat_tables([replace(clean, "x2", x2), copies])

    report = check_poisoning(batch, reference, key=["id"])

    assert [f.check for f in report.flagged] == ["duplicate_flood", "outliers"]
    assert report.suspicious_rows.tolist() == [1, *range(5, 16), *range(N_BATCH, N_BATCH + 100)]
    assert all(isinstance(f, Finding) for f in report.findings)
    text = report.format()
    assert text.splitlines()[0] == "poisoning checks: 2 of 4 flagged, 112 suspicious row(s)"
    assert "[FLAGGED] duplicate_flood: 1 row content(s) repeated more than 20 times" in text
    assert "[ok] label_issues: skipped: no label column given" in text
    as_dict = report.to_dict()
    encoded = json.loads(json.dumps(as_dict, allow_nan=False))
    assert encoded["flagged"] == ["duplicate_flood", "outliers"]
    assert encoded["suspicious_rows"] == 112
    outlier = encoded["findings"][1]
    assert outlier["count"] == 11
    assert outlier["examples"][0]["score"] == "inf"
    assert "rows" not in outlier


def test_empty_report() -> None:
    report = PoisoningReport(findings=())

    assert report.suspicious_rows.size == 0
    assert report.to_dict() == {"flagged": [], "suspicious_rows": 0, "findings": []}
