from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mlprod.errors import InvalidInputError
from mlprod.models import TrainingSpec, build_frame
from mlprod.models.training_spec import LABEL_COLUMN, TIME_COLUMN, split_by_time

BASE = {
    "model": "m",
    "dataset": "d",
    "label": "delay > 15",
    "time": "t",
    "features": {"dist": "distance", "hour": "sched // 100", "carrier": "carrier"},
    "categorical": ["carrier"],
}


def table(n: int = 100) -> pa.Table:
    return pa.table(
        {
            "distance": [float(i) for i in range(n)],
            "sched": [700 + i for i in range(n)],
            "carrier": ["AA" if i % 2 else "UA" for i in range(n)],
            "delay": [i % 40 for i in range(n)],
            "t": pd.date_range("2013-01-01", periods=n, freq="h", tz="UTC"),
        }
    )


def test_spec_evaluates_features_label_and_time_in_sql() -> None:
    frame = build_frame(TrainingSpec.parse(BASE), table())
    assert list(frame.columns) == ["dist", "hour", "carrier", LABEL_COLUMN, TIME_COLUMN]
    assert frame["hour"].tolist()[:3] == [7, 7, 7]
    assert frame[LABEL_COLUMN].tolist()[15:18] == [0, 1, 1]


def test_where_filters_rows() -> None:
    frame = build_frame(TrainingSpec.parse({**BASE, "where": "carrier = 'AA'"}), table())
    assert set(frame["carrier"]) == {"AA"}
    assert len(frame) == 50


def test_an_expression_that_does_not_evaluate_is_named() -> None:
    spec = TrainingSpec.parse({**BASE, "features": {"x": "no_such_column + 1"}, "categorical": []})
    with pytest.raises(
        InvalidInputError, match=r"training spec for 'm' does not evaluate on the data: .*no_such_column"
    ):
        build_frame(spec, table())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "colour: unknown key 'colour'; valid keys: model, dataset, dataset_ref, "),
        ({"modle": "m"}, r"modle: unknown key 'modle' \(did you mean 'model'\?\)"),
        (
            {"estimator": {"kind": "linear", "parms": {}}},
            r"estimator.parms: unknown key 'parms' \(did you mean 'params'\?\); "
            "valid keys: kind, class_path, params",
        ),
        ({"categorical": ["nope"]}, r"categorical names \['nope'\] that are not features"),
        ({"features": {"_x": "distance"}}, "feature name '_x' must be an identifier"),
        ({"features": {}}, "features must name at least one feature"),
        ({"estimator": {"kind": "catboost"}}, "unknown estimator kind 'catboost'"),
        ({"validation_fraction": 1.5}, "validation_fraction: Input should be less than 1"),
        ({"model": "../m"}, "model name '../m' is not valid"),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(change: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        TrainingSpec.parse({**BASE, **change})


SKLEARN_HGB = "sklearn.ensemble.HistGradientBoostingClassifier"


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (
            {"kind": "lightgbm"},
            "estimator: unknown lightgbm parameter 'n_estimatorz' (did you mean 'n_estimators'?); "
            "valid parameters: boosting_type, class_weight, colsample_bytree, ",
        ),
        (
            {"kind": "xgboost"},
            "estimator: unknown xgboost parameter 'n_estimatorz' (did you mean 'n_estimators'?); "
            "valid parameters: base_score, booster, ",
        ),
        (
            {"kind": "linear"},
            "estimator: unknown linear parameter 'n_estimatorz'; valid parameters: C, class_weight, ",
        ),
        (
            {"kind": "sklearn", "class_path": SKLEARN_HGB},
            "estimator: unknown sklearn parameter 'n_estimatorz'; valid parameters: categorical_features, ",
        ),
    ],
    ids=["lightgbm", "xgboost", "linear", "sklearn"],
)
def test_a_misspelled_hyperparameter_is_refused_for_every_estimator_kind(
    estimator: dict, message: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        TrainingSpec.parse({**BASE, "estimator": {**estimator, "params": {"n_estimatorz": 5}}})
    assert str(refused.value).startswith(f"training spec: {message}")
    assert str(refused.value).endswith(", or any LightGBM parameter or alias") == (
        estimator["kind"] == "lightgbm"
    )


def test_valid_hyperparameters_pass_including_lightgbm_native_aliases() -> None:
    spec = TrainingSpec.parse({**BASE, "estimator": {"kind": "lightgbm", "params": {"num_iterations": 7}}})
    assert spec.estimator.spec().build().get_params()["num_iterations"] == 7
    linear = TrainingSpec.parse(
        {**BASE, "estimator": {"kind": "linear", "params": {"C": 0.5, "max_iter": 50}}}
    )
    assert linear.estimator.spec().build().named_steps["model"].C == 0.5
    hgb = {"kind": "sklearn", "class_path": SKLEARN_HGB, "params": {"max_iter": 10}}
    assert TrainingSpec.parse({**BASE, "estimator": hgb}).estimator.spec().build().max_iter == 10


def test_estimator_spec_built_directly_refuses_unknown_params_too() -> None:
    from mlprod.models.estimators import EstimatorSpec

    with pytest.raises(
        InvalidInputError, match="unknown xgboost parameter 'max_deph' \\(did you mean 'max_depth'\\?\\)"
    ):
        EstimatorSpec("xgboost", {"max_deph": 3}).build()


def test_toml_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(
        'model = "m"\ndataset = "d"\nlabel = "delay > 15"\ntime = "t"\n'
        '[features]\ndist = "distance"\n[estimator]\nkind = "xgboost"\nparams = { n_estimators = 5 }\n'
    )
    spec = TrainingSpec.from_toml(path)
    assert spec.estimator.spec().build().n_estimators == 5
    path.write_text("model = ")
    with pytest.raises(InvalidInputError, match=r"spec\.toml: not valid TOML"):
        TrainingSpec.from_toml(path)
    with pytest.raises(InvalidInputError, match="cannot read training spec"):
        TrainingSpec.from_toml(tmp_path / "missing.toml")


def test_feature_set_hash_changes_with_the_definition_only() -> None:
    a = TrainingSpec.parse(BASE)
    assert (
        a.feature_set_hash()
        == TrainingSpec.parse({**BASE, "estimator": {"kind": "xgboost"}}).feature_set_hash()
    )
    assert a.feature_set_hash() != TrainingSpec.parse({**BASE, "label": "delay > 30"}).feature_set_hash()
    assert len(a.feature_set_hash()) == 64


def test_split_by_time_never_puts_a_time_on_both_sides() -> None:
    frame = build_frame(TrainingSpec.parse(BASE), table(1000))
    frame[TIME_COLUMN] = frame[TIME_COLUMN].dt.floor("D")  # many rows share each time
    train, validation, cut = split_by_time(frame, 0.2)
    assert train[TIME_COLUMN].max() < cut <= validation[TIME_COLUMN].min()
    assert len(train) + len(validation) == 1000
    assert 0.15 < len(validation) / 1000 < 0.3


def test_split_needs_distinct_times() -> None:
    frame = pd.DataFrame({TIME_COLUMN: [1, 1, 1], LABEL_COLUMN: [0, 1, 0]})
    with pytest.raises(InvalidInputError, match="every row has the same time"):
        split_by_time(frame, 0.2)
