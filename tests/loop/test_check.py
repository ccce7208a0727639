"""A loop spec checked against a workspace: every unknown name is refused with what exists."""

from __future__ import annotations

import pytest

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.loop.check import check_loop, workspace_loops
from mlprod.loop.spec import LoopSpec
from mlprod.models import ModelVersion
from mlprod.workspace import Workspace
from tests.conftest import make_frame

TRAINING = """
model = "toy"
dataset = "rows"
label = "y"
time = "id"
[features]
x = "x"
"""


@pytest.fixture
def ready(workspace: Workspace, registered: ModelVersion) -> Workspace:
    """``toy@champion``, a table ``rows`` and a training spec ``toy.toml`` reading it."""
    frame = make_frame(50).reset_index(names="id")
    TableStore(workspace).create("rows", key=["id"], data=frame)
    (workspace.root / "toy.toml").write_text(TRAINING)
    return workspace


def spec(**raw: object) -> LoopSpec:
    return LoopSpec.parse("toy-loop", {"model": "toy", "training_spec": "toy.toml", **raw})


def test_a_valid_spec_resolves_every_name(ready: Workspace) -> None:
    checked = check_loop(ready, spec(gate_profile="edge"))
    assert (checked.champion, checked.table, checked.gate_profile) == ("toy/1", "rows", "edge")
    assert checked.training.model == "toy"


def test_the_gate_profile_defaults_to_the_evaluate_profile(ready: Workspace) -> None:
    assert check_loop(ready, spec()).gate_profile == "accuracy-first"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model": "toyy"},
            "model: unknown model 'toyy' (did you mean 'toy'?); known: toy (see `mlprod models list`)",
        ),
        (
            {"alias": "champ"},
            "alias: model 'toy' has no alias 'champ' (did you mean 'champion'?); its aliases: champion",
        ),
        (
            {"gate_profile": "acuracy-first"},
            "gate_profile: unknown profile 'acuracy-first' (did you mean 'accuracy-first'?)",
        ),
    ],
)
def test_unknown_registry_names_and_profiles(ready: Workspace, raw: dict[str, object], message: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        check_loop(ready, spec(**raw))
    assert str(caught.value).startswith("[loop.toy-loop] ")
    assert message in str(caught.value)


def test_an_unknown_table_is_named_with_the_known_ones(ready: Workspace) -> None:
    (ready.root / "toy.toml").write_text(TRAINING.replace('"rows"', '"rowz"'))
    with pytest.raises(
        NotFoundError, match=r"training spec: unknown table 'rowz' \(did you mean 'rows'\?\); known: rows"
    ):
        check_loop(ready, spec())


def test_an_unknown_feature_set_is_named(ready: Workspace) -> None:
    (ready.root / "toy.toml").write_text(TRAINING.replace('label = "y"', 'label = "y"\nfeature_set = "ctx"'))
    with pytest.raises(
        NotFoundError, match="training spec: feature set 'ctx': no feature definitions configured"
    ):
        check_loop(ready, spec())


def test_a_training_spec_for_another_model_is_refused(ready: Workspace) -> None:
    (ready.root / "toy.toml").write_text(TRAINING.replace('model = "toy"', 'model = "other"'))
    with pytest.raises(InvalidInputError, match=r"toy\.toml trains model 'other', but the loop is for 'toy'"):
        check_loop(ready, spec())


def test_a_missing_training_spec_file_is_named(ready: Workspace) -> None:
    with pytest.raises(InvalidInputError, match=r"training_spec: cannot read training spec .*nope.toml"):
        check_loop(ready, spec(training_spec="nope.toml"))


def test_without_a_training_spec_the_champion_needs_its_lineage(ready: Workspace) -> None:
    with pytest.raises(
        InvalidInputError, match="training_spec: not set, and model 'toy' has no training lineage"
    ):
        check_loop(ready, LoopSpec.parse("toy-loop", {"model": "toy"}))


def test_loops_come_from_the_config_or_a_file(ready: Workspace) -> None:
    assert workspace_loops(ready) == {}
    (ready.root / "loops.toml").write_text('[loop.a]\nmodel = "toy"\n')
    assert list(workspace_loops(ready, ready.root / "loops.toml")) == ["a"]
