import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlprod.errors import InvalidInputError
from mlprod.models import EstimatorSpec, train_classifier
from tests.conftest import make_frame


def test_trained_model_learns_the_signal() -> None:
    train, test = make_frame(3000, seed=1), make_frame(2000, seed=2)
    trained = train_classifier(
        train,
        label="y",
        numeric=["x"],
        categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": 30}),
    )
    p = trained.predict_frame(test)
    assert roc_auc_score(test["y"], p) > 0.85
    assert trained.train_rows == 3000
    assert trained.params["n_estimators"] == 30
    assert trained.signature.input_names == ["x", "c"]


def test_missing_label_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match=r"no label column 'late'; it has \['x', 'c', 'y'\]"):
        train_classifier(frame, label="late", numeric=["x"])


def test_constant_label_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match=r"label column 'y' is constant \(0\): nothing to learn"):
        train_classifier(frame.assign(y=0), label="y", numeric=["x"])


def test_non_binary_label_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="must be 0/1"):
        train_classifier(frame.assign(y=np.arange(len(frame)) % 3), label="y", numeric=["x"])


def test_missing_labels_are_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="has 1 missing values"):
        train_classifier(frame.assign(y=[None, *frame["y"][1:]]), label="y", numeric=["x"])


def test_empty_training_data_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="training data is empty"):
        train_classifier(frame.iloc[:0], label="y", numeric=["x"])


def test_linear_kind_one_hot_encodes_categories_and_tolerates_missing_values(workspace) -> None:
    from mlprod.models import Registry

    frame = make_frame(3000, seed=3)
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "c"] = None
    trained = train_classifier(
        frame, label="y", numeric=["x"], categorical=["c"], estimator=EstimatorSpec("linear")
    )
    inputs = trained.model.named_steps["inputs"]
    assert inputs.transformers_[0][0] == "categorical" and inputs.transformers_[0][2] == [1]
    assert roc_auc_score(frame["y"], trained.predict_frame(frame)) > 0.8
    stored = Registry(workspace).register("linear", trained.model, signature=trained.signature)
    assert stored.format == "sklearn-skops"
    loaded = Registry(workspace).load("linear/1")
    np.testing.assert_allclose(loaded.predict_frame(frame), trained.predict_frame(frame))
