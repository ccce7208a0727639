import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlprod.errors import ArtifactCorruptedError, InvalidInputError, ModelFormatError, NotFoundError
from mlprod.meta.tables import model_versions, registered_models
from mlprod.models import EstimatorSpec, ModelRef, ModelVersion, Registry, parse_ref, train_classifier
from mlprod.workspace import Workspace


def test_refs_parse_into_name_version_or_alias() -> None:
    assert parse_ref("m") == ModelRef("m")
    assert parse_ref("m/2") == ModelRef("m", version=2)
    assert parse_ref("m@champion") == ModelRef("m", alias="champion")
    assert str(parse_ref("m@champion")) == "m@champion"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("m/0", "positive integer"),
        ("m/x", "positive integer"),
        ("..", "model name"),
        ("../m", "positive integer"),
        ("m@a/b", "alias name"),
    ],
)
def test_bad_refs_are_refused(ref: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_ref(ref)


def test_versions_are_immutable_and_numbered(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    registry = Registry(workspace)
    trained = train_classifier(
        frame,
        label="y",
        numeric=["x"],
        categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": 5}),
    )
    second = registry.register("toy", trained.model, signature=trained.signature)
    assert (registered.version, second.version) == (1, 2)
    assert registry.get("toy").version == 2
    assert registry.get("toy/1") == registered
    assert registry.get("toy@champion").version == 1
    assert [v.version for v in registry.versions("toy")] == [1, 2]
    summary = registry.models()[0]
    assert (summary.name, summary.latest_version, summary.num_versions, summary.aliases) == (
        "toy",
        2,
        2,
        {"champion": 1},
    )


def test_loaded_model_predicts_like_the_trained_one(workspace: Workspace, frame: pd.DataFrame) -> None:
    trained = train_classifier(
        frame,
        label="y",
        numeric=["x"],
        categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": 10}),
    )
    registry = Registry(workspace)
    version = registry.register("toy", trained.model, signature=trained.signature)
    loaded = registry.load(version.ref)
    expected = trained.predict_frame(frame)
    np.testing.assert_allclose(loaded.predict_frame(frame), expected, rtol=0, atol=1e-12)
    rows = frame[["x", "c"]].head(5).to_dict(orient="records")
    np.testing.assert_allclose(loaded.predict_rows(rows), expected[:5], rtol=0, atol=1e-12)


def test_alias_moves_are_recorded_with_who_and_why(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    registry = Registry(workspace)
    trained = train_classifier(
        frame,
        label="y",
        numeric=["x"],
        categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": 5}),
    )
    registry.register("toy", trained.model, signature=trained.signature)
    registry.set_alias("toy", "champion", 2, why="better AUC")
    history = registry.alias_history("toy")
    assert [(m.alias, m.from_version, m.to_version, m.why) for m in history] == [
        ("champion", None, 1, "first"),
        ("champion", 1, 2, "better AUC"),
    ]
    assert all(m.who and m.at.tzinfo is not None for m in history)


def test_unknown_model_version_and_alias_are_named(workspace: Workspace, registered: ModelVersion) -> None:
    registry = Registry(workspace)
    with pytest.raises(NotFoundError, match=r"model 'nope' is not registered \(models: toy\)"):
        registry.get("nope")
    with pytest.raises(NotFoundError, match="model 'toy' has no version 9"):
        registry.get("toy/9")
    with pytest.raises(NotFoundError, match="model 'toy' has no alias 'staging'"):
        registry.get("toy@staging")
    with pytest.raises(NotFoundError, match="has no version 5; cannot point @champion at it"):
        registry.set_alias("toy", "champion", 5)
    assert registry.get("toy@champion").version == 1  # the failed move changed nothing
    with pytest.raises(NotFoundError, match="not registered"):
        registry.alias_history("nope")


class HandMadeModel:
    """A classifier of the user's own, which no safe format can store."""

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        return np.full((len(x), 2), 0.5)


def unsafe_models(frame: pd.DataFrame) -> list:
    with_function = make_pipeline(FunctionTransformer(lambda x: x * 2), LogisticRegression())
    return [HandMadeModel(), with_function.fit(frame[["x"]].to_numpy(), frame["y"])]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (0, r"cannot store a tests\.models\.test_registry\.HandMadeModel safely: supported formats are "
            r"lightgbm-text, xgboost-ubj, sklearn-skops .* never stores or loads pickles"),
        (1, r"Pipeline contains types mlprod does not trust to load: .*lambda"),
    ],
)  # fmt: skip
def test_an_unsafe_model_is_refused_and_nothing_is_registered(
    workspace: Workspace, frame: pd.DataFrame, index: int, message: str
) -> None:
    trained = train_classifier(
        frame, label="y", numeric=["x"], estimator=EstimatorSpec("lightgbm", {"n_estimators": 5})
    )
    with pytest.raises(ModelFormatError, match=message):
        Registry(workspace).register("unsafe", unsafe_models(frame)[index], signature=trained.signature)
    with workspace.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(registered_models)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(model_versions)) == 0
    assert list(workspace.artifacts) == []


def test_a_modified_artifact_is_refused_at_load(workspace: Workspace, registered: ModelVersion) -> None:
    path = workspace.artifacts.path_of(registered.artifact_sha256)
    path.write_bytes(path.read_bytes().replace(b"learning_rate", b"learning_rata"))
    with pytest.raises(
        ArtifactCorruptedError, match=f"artifact {registered.artifact_sha256} .* is corrupted"
    ):
        Registry(workspace).load("toy@champion")


@pytest.mark.postgres
def test_registry_on_postgres(tmp_path, postgres_url: str, frame: pd.DataFrame) -> None:
    trained = train_classifier(
        frame,
        label="y",
        numeric=["x"],
        categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": 5}),
    )
    with Workspace.init(tmp_path, database_url=postgres_url) as ws:
        registry = Registry(ws)
        for _ in range(3):
            registry.register("pg", trained.model, signature=trained.signature, lineage={"k": [1, 2]})
        registry.set_alias("pg", "champion", 2)
        assert registry.get("pg@champion").lineage == {"k": [1, 2]}
        assert registry.get("pg").version == 3
        assert registry.load("pg@champion").predict_rows([{"x": 0.0, "c": "a"}]).shape == (1,)
