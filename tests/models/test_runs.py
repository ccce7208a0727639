import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from mlprod.data import CommitInfo, TableStore
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.meta.tables import model_versions, runs
from mlprod.models import Registry, TrainingSpec, get_run, list_runs, run_training
from mlprod.models.runs import code_version
from mlprod.workspace import Workspace
from tests.conftest import make_frame


def synthetic_table(n: int = 3000) -> pa.Table:
    frame = make_frame(n, seed=5)
    frame["t"] = range(n)
    return pa.Table.from_pandas(frame, preserve_index=False)


def store_toy_data(workspace: Workspace) -> CommitInfo:
    """The synthetic table as the versioned table ``toy-data`` (key ``t``); its head commit."""
    tables = TableStore(workspace)
    tables.create("toy-data", key=["t"], data=synthetic_table())
    return tables.resolve("toy-data")


def spec(**changes: object) -> TrainingSpec:
    base = {
        "model": "toy",
        "dataset": "toy-data",
        "label": "y",
        "time": "t",
        "features": {"x": "x", "c": "c"},
        "categorical": ["c"],
        "estimator": {"kind": "lightgbm", "params": {"n_estimators": 20}},
        "tags": {"team": "search"},
    }
    return TrainingSpec.parse(base | changes)


def test_a_run_records_params_metrics_lineage_code_and_resources(workspace: Workspace) -> None:
    stored = store_toy_data(workspace)
    result = run_training(workspace, spec())
    run = result.run
    assert run.status == "finished"
    assert run.params["estimator"] == "lightgbm" and run.params["n_estimators"] == 20
    assert run.metrics["validation_auc"] > 0.85
    assert run.lineage["dataset"] == "toy-data"
    assert run.lineage["dataset_commit"] == stored.id and run.lineage["dataset_ref"] == "main"
    assert run.lineage["dataset_rows"] == 3000
    assert run.lineage["feature_set_hash"] == spec().feature_set_hash()
    assert run.lineage["train_rows"] + run.lineage["validation_rows"] == 3000
    assert run.packages["lightgbm"] and run.packages["python"]
    assert run.duration_seconds > 0 and run.peak_memory_mb > 10
    assert run.model_version == 1

    version = Registry(workspace).get("toy/1")
    assert version.run_id == run.id
    assert version.lineage == run.lineage
    assert version.metrics["validation_auc"] == pytest.approx(run.metrics["validation_auc"])
    assert Registry(workspace).tags("toy/1") == {"team": "search"}
    assert get_run(workspace, run.id[:8]) == run
    assert [r.id for r in list_runs(workspace, model="toy")] == [run.id]


def test_a_failing_run_is_recorded_and_registers_nothing(workspace: Workspace) -> None:
    store_toy_data(workspace)
    with pytest.raises(InvalidInputError, match="is constant"):
        run_training(workspace, spec(label="0"))
    [run] = list_runs(workspace)
    assert run.status == "failed"
    assert "constant" in run.error
    assert run.model_version is None
    with workspace.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(model_versions)) == 0


def test_training_from_an_in_memory_frame(workspace: Workspace) -> None:
    result = run_training(workspace, spec(dataset=None), frame=synthetic_table().to_pandas())
    assert result.run.lineage["source"] == "in-memory frame"
    assert result.version is not None and result.version.version == 1


def test_unknown_dataset_or_none_at_all(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError, match=r"table 'toy-data' not found \(tables: none\)"):
        run_training(workspace, spec())
    with pytest.raises(NotFoundError, match="names no dataset"):
        run_training(workspace, spec(dataset=None))


def test_each_built_in_estimator_trains_as_a_run(workspace: Workspace) -> None:
    store_toy_data(workspace)
    sklearn = {"kind": "sklearn", "class_path": "sklearn.ensemble.HistGradientBoostingClassifier",
               "params": {"max_iter": 20}}  # fmt: skip
    formats = []
    for estimator in ({"kind": "xgboost", "params": {"n_estimators": 20}}, sklearn):
        result = run_training(workspace, spec(estimator=estimator))
        assert result.run.metrics["validation_auc"] > 0.85
        formats.append(result.version.format)
    assert formats == ["xgboost-ubj", "sklearn-skops"]
    assert Registry(workspace).load("toy").predict_rows([{"x": 2.0, "c": "a"}])[0] > 0.5


def test_code_version_is_the_git_commit(tmp_path: Path) -> None:
    assert code_version(str(tmp_path)) is None
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code_version(str(tmp_path)) == head
    (tmp_path / "f").write_text("2")
    assert code_version(str(tmp_path)) == head + "+dirty"


def test_short_or_unknown_run_ids(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="at least 6 characters"):
        get_run(workspace, "ab")
    with pytest.raises(NotFoundError, match="run 'abcdef' not found"):
        get_run(workspace, "abcdef")


def test_a_run_whose_process_died_reads_as_interrupted(workspace: Workspace) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()  # its pid no longer names a live process
    row = {"id": "deadbeef" * 4, "model": "m", "status": "running", "started_at": datetime.now(UTC),
           "params": {}, "metrics": {}, "lineage": {}, "packages": {}, "who": "t",
           "host": socket.gethostname(), "pid": proc.pid}  # fmt: skip
    with workspace.engine.begin() as conn:
        conn.execute(runs.insert().values(**row))
    assert get_run(workspace, "deadbeef").status == "interrupted"


def test_an_invalid_alias_is_refused_before_anything_runs(workspace: Workspace) -> None:
    store_toy_data(workspace)
    with pytest.raises(InvalidInputError, match="alias name 'bad alias' is not valid"):
        run_training(workspace, spec(), alias="bad alias")
    assert list_runs(workspace) == []
    assert Registry(workspace).models() == []


def test_alias_moves_with_the_registration(workspace: Workspace) -> None:
    store_toy_data(workspace)
    result = run_training(workspace, spec(), alias="champion")
    assert Registry(workspace).get("toy@champion").version == result.version.version
    [move] = Registry(workspace).alias_history("toy")
    assert move.why == f"trained by run {result.run.id}"


def test_a_label_that_is_not_zero_or_one_is_refused(workspace: Workspace) -> None:
    store_toy_data(workspace)
    with pytest.raises(InvalidInputError, match=r"label '\(x \+ 4\) / 8' must be 0/1 or boolean"):
        run_training(workspace, spec(label="(x + 4) / 8"))
    assert Registry(workspace).models() == []


def test_a_label_constant_in_one_split_names_the_split(workspace: Workspace) -> None:
    store_toy_data(workspace)
    with pytest.raises(
        InvalidInputError, match=r"label 't >= 2900' in the training split \(time < .*\) is constant"
    ):
        run_training(workspace, spec(label="t >= 2900"))


@pytest.mark.parametrize(
    "estimator",
    [
        {"kind": "lightgbm", "params": {"n_estimators": "ten"}},
        {"kind": "sklearn", "class_path": "sklearn.ensemble.HistGradientBoostingClassifier",
         "params": {"max_iters": 10}},
    ],
)  # fmt: skip
def test_bad_estimator_params_are_the_users_error(workspace: Workspace, estimator: dict) -> None:
    store_toy_data(workspace)
    with pytest.raises(InvalidInputError, match="param"):  # "params" or "unknown … parameter"
        run_training(workspace, spec(estimator=estimator))
    assert Registry(workspace).models() == []
