import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlprod.errors import ArtifactCorruptedError, InvalidInputError, ModelFormatError, NotFoundError
from mlprod.meta.tables import model_versions, registered_models
from mlprod.models import (
    ModelRef,
    ModelVersion,
    Registry,
    parse_metric_filter,
    parse_ref,
    train_classifier,
)
from mlprod.workspace import Workspace
from tests.conftest import train_toy


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
    trained = train_toy(frame, rounds=5)
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
    trained = train_toy(frame, rounds=10)
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
    trained = train_toy(frame, rounds=5)
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
    trained = train_toy(frame)
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
    trained = train_toy(frame, rounds=5)
    with Workspace.init(tmp_path, database_url=postgres_url) as ws:
        registry = Registry(ws)
        for _ in range(3):
            registry.register("pg", trained.model, signature=trained.signature, lineage={"k": [1, 2]})
        registry.set_alias("pg", "champion", 2)
        assert registry.get("pg@champion").lineage == {"k": [1, 2]}
        assert registry.get("pg").version == 3
        assert registry.load("pg@champion").predict_rows([{"x": 0.0, "c": "a"}]).shape == (1,)


def register_n(
    workspace: Workspace, frame: pd.DataFrame, name: str, n: int, **kwargs: object
) -> list[ModelVersion]:
    trained = train_toy(frame, rounds=5)
    sample = trained.signature.encoder().encode_frame(frame.head(100))
    registry = Registry(workspace)
    return [
        registry.register(name, trained.model, signature=trained.signature, sample=sample, **kwargs)
        for _ in range(n)
    ]


def test_rollback_walks_back_through_the_alias_history(workspace: Workspace, frame: pd.DataFrame) -> None:
    register_n(workspace, frame, "m", 3)
    registry = Registry(workspace)
    for version in (1, 2, 3):
        registry.set_alias("m", "champion", version)
    assert registry.rollback("m", "champion", why="v3 hurt conversions").to_version == 2
    assert registry.rollback("m", "champion").to_version == 1
    assert registry.get("m@champion").version == 1
    with pytest.raises(InvalidInputError, match="m@champion has no earlier target to roll back to"):
        registry.rollback("m", "champion")
    history = registry.alias_history("m")
    assert [(h.action, h.from_version, h.to_version) for h in history] == [
        ("set", None, 1), ("set", 1, 2), ("set", 2, 3), ("rollback", 3, 2), ("rollback", 2, 1),
    ]  # fmt: skip
    assert history[3].why == "v3 hurt conversions"
    assert history[4].why == "rollback"


def test_rollback_of_an_alias_that_never_moved(workspace: Workspace, registered: ModelVersion) -> None:
    with pytest.raises(NotFoundError, match="model 'toy' has no alias 'staging' to roll back"):
        Registry(workspace).rollback("toy", "staging")
    with pytest.raises(InvalidInputError, match="no earlier target"):
        Registry(workspace).rollback("toy", "champion")


def test_search_by_name_tag_and_metric_threshold(workspace: Workspace, frame: pd.DataFrame) -> None:
    register_n(workspace, frame, "fraud-eu", 1, metrics={"auc": 0.91}, tags={"team": "risk"})
    register_n(workspace, frame, "fraud-us", 1, metrics={"auc": 0.72}, tags={"team": "risk"})
    register_n(workspace, frame, "churn", 1, metrics={"auc": 0.95}, tags={"team": "growth"})
    registry = Registry(workspace)
    refs = lambda found: [v.ref for v in found]  # noqa: E731
    assert refs(registry.search(name="fraud")) == ["fraud-eu/1", "fraud-us/1"]
    assert refs(registry.search(tags={"team": "risk"}, metric="auc>=0.9")) == ["fraud-eu/1"]
    assert refs(registry.search(metric="auc<0.8")) == ["fraud-us/1"]
    assert refs(registry.search(metric="auc>0.99")) == []
    assert refs(registry.search(name="%")) == []  # LIKE wildcards are taken literally
    registry.set_tags("churn/1", {"team": "risk", "stage": "prod"})
    assert registry.tags("churn/1") == {"stage": "prod", "team": "risk"}
    assert refs(registry.search(tags={"team": "risk"})) == ["churn/1", "fraud-eu/1", "fraud-us/1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auc", "metric filter 'auc' should be METRIC OP NUMBER (e.g. 'validation_auc>=0.7'; operators: "),
        (">=0.5", "metric filter '>=0.5' should be METRIC OP NUMBER"),
        ("auc>>1", "metric filter 'auc>>1': unknown operator '>>'"),
        ("auc=>0.7", "metric filter 'auc=>0.7': unknown operator '=>'"),
        ("auc!=0.7", "metric filter 'auc!=0.7': unknown operator '!='"),
        ("auc>=high", "metric filter 'auc>=high': 'high' is not a finite number"),
        ("auc>=", "metric filter 'auc>=': '' is not a finite number"),
        ("auc>=nan", "metric filter 'auc>=nan': 'nan' is not a finite number"),
    ],
)
def test_bad_metric_filters_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_metric_filter(text)
    assert str(refused.value).startswith(message)


def test_search_on_an_unknown_metric_names_the_known_ones(workspace: Workspace, frame: pd.DataFrame) -> None:
    registry = Registry(workspace)
    with pytest.raises(InvalidInputError, match="no registered version records any metric yet"):
        registry.search(metric="auc>=0.7")
    metrics = {"validation_auc": 0.8, "validation_log_loss": 0.4, "validation_accuracy": 0.7}
    register_n(workspace, frame, "m", 1, metrics=metrics)
    assert registry.metric_names() == ["validation_accuracy", "validation_auc", "validation_log_loss"]
    with pytest.raises(InvalidInputError) as refused:
        registry.search(metric="auc>=0.7")
    assert str(refused.value) == (
        "unknown metric 'auc' (did you mean 'validation_auc'?); "
        "known metrics: validation_accuracy, validation_auc, validation_log_loss"
    )
    with pytest.raises(
        InvalidInputError, match="unknown metric 'validation_acuracy' \\(did you mean 'validation_accuracy'"
    ):
        registry.search(metric="validation_acuracy>0.5")
    assert [v.ref for v in registry.search(metric="validation_auc>=0.7")] == ["m/1"]


def test_non_finite_metrics_are_refused(workspace: Workspace, frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="metric 'auc' is nan; metrics must be finite"):
        register_n(workspace, frame, "m", 1, metrics={"auc": float("nan")})
    assert Registry(workspace).models() == []


def test_onnx_export_is_parity_checked_and_loadable(workspace: Workspace, frame: pd.DataFrame) -> None:
    register_n(workspace, frame, "m", 1)
    registry = Registry(workspace)
    exported = registry.export("m/1")
    assert 0 <= exported.parity_max_abs_diff <= 1e-5
    onnx_model = registry.load("m/1", format="onnx")
    native = registry.load("m/1")
    rows = frame[["x", "c"]].head(20).to_dict(orient="records")
    assert onnx_model.format == "onnx"
    assert np.max(np.abs(onnx_model.predict_rows(rows) - native.predict_rows(rows))) <= 1e-5
    assert [e.format for e in registry.exports("m/1")] == ["onnx"]


def test_an_export_outside_tolerance_is_refused_with_the_difference(
    workspace: Workspace, frame: pd.DataFrame
) -> None:
    register_n(workspace, frame, "m", 1)
    with pytest.raises(
        ModelFormatError,
        match=r"ONNX export of m/1 refused: .* differ by up to [0-9.e-]+ on 100 sample rows "
        r"\(allowed 1e-15\)",
    ):
        Registry(workspace).export("m/1", tolerance=1e-15)
    with pytest.raises(
        NotFoundError, match="m/1 has no onnx export; create it with `mlprod models export m/1`"
    ):
        Registry(workspace).load("m/1", format="onnx")


def test_an_unconvertible_model_is_refused_clearly(workspace: Workspace, frame: pd.DataFrame) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    trained = train_classifier(frame, label="y", numeric=["x"], categorical=["c"],
                               estimator=HistGradientBoostingClassifier(max_iter=5))  # fmt: skip
    registry = Registry(workspace)
    sample = trained.signature.encoder().encode_frame(frame.head(10))
    registry.register("hgb", trained.model, signature=trained.signature, sample=sample)
    with pytest.raises(ModelFormatError, match=r"cannot convert hgb/1 \(sklearn-skops\) to ONNX"):
        registry.export("hgb/1")


def test_export_needs_sample_rows(workspace: Workspace, registered: ModelVersion) -> None:
    with pytest.raises(InvalidInputError, match="toy/1 has no stored sample rows"):
        Registry(workspace).export("toy/1")


def test_a_tampered_onnx_export_is_refused(workspace: Workspace, frame: pd.DataFrame) -> None:
    register_n(workspace, frame, "m", 1)
    exported = Registry(workspace).export("m/1")
    workspace.artifacts.path_of(exported.artifact_sha256).write_bytes(b"evil")
    with pytest.raises(ArtifactCorruptedError, match=exported.artifact_sha256):
        Registry(workspace).load("m/1", format="onnx")
