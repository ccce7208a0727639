"""Check a loop spec against a workspace: every name it uses must exist before the loop runs.

The model and its alias (in the registry), the training spec (a file, or the champion's recorded
lineage) with its table (``mlprod data``) and feature set (the workspace's feature definitions), and
the gate profile (built-in or ``[evaluate.profiles.NAME]``). Reads only: nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, MlprodError, NotFoundError
from mlprod.evaluate.profiles import load_profiles
from mlprod.features.catalog import load_catalog
from mlprod.loop.spec import LoopSpec, parse_loops, read_loop_file
from mlprod.models import Registry
from mlprod.models.training_spec import TrainingSpec
from mlprod.suggest import did_you_mean
from mlprod.workspace import Workspace


@dataclass(frozen=True)
class CheckedLoop:
    """A loop spec whose names all resolved, with what they resolved to."""

    spec: LoopSpec
    champion: str
    training: TrainingSpec
    table: str
    gate_profile: str


def workspace_loops(workspace: Workspace, path: Path | None = None) -> dict[str, LoopSpec]:
    """The loop specs of ``mlprod.toml`` (``[loop.NAME]``), or of the TOML file ``path`` (relative to
    the current directory, like any path a user types)."""
    if path is not None:
        return read_loop_file(path)
    return parse_loops(workspace.config.loop)


def check_loop(workspace: Workspace, spec: LoopSpec) -> CheckedLoop:
    """Resolve every name ``spec`` uses in ``workspace``; the first unknown one is an error."""
    where = f"[loop.{spec.name}]"
    registry = Registry(workspace)
    models = {summary.name: summary for summary in registry.models()}
    if spec.model not in models:
        raise NotFoundError(f"{where} model: {_unknown('model', spec.model, models, 'mlprod models list')}")
    aliases = models[spec.model].aliases
    if spec.alias not in aliases:
        raise NotFoundError(
            f"{where} alias: model {spec.model!r} has no alias {spec.alias!r}"
            f"{did_you_mean(spec.alias, aliases)}; its aliases: {', '.join(sorted(aliases)) or 'none'} "
            f"(set one with `mlprod models alias {spec.model} {spec.alias} VERSION`)"
        )
    champion = registry.get(f"{spec.model}@{spec.alias}")
    training = _training_spec(workspace, spec, champion.lineage, where)
    if training.dataset is None:
        raise InvalidInputError(
            f"{where} training spec: it names no dataset; the loop retrains from a versioned table "
            "(set `dataset` in the training spec)"
        )
    tables = [info.name for info in TableStore(workspace).tables()]
    if training.dataset not in tables:
        raise NotFoundError(
            f"{where} training spec: {_unknown('table', training.dataset, tables, 'mlprod data list')}"
        )
    if training.feature_set is not None:
        try:
            load_catalog(workspace).feature_set(training.feature_set)
        except MlprodError as exc:
            raise NotFoundError(
                f"{where} training spec: feature set {training.feature_set!r}: {exc}"
            ) from exc
    profile = spec.gate_profile or workspace.config.evaluate.profile
    profiles = load_profiles(workspace.config.evaluate.profiles)
    if profile not in profiles:
        raise NotFoundError(
            f"{where} gate_profile: unknown profile {profile!r}{did_you_mean(profile, profiles)}; "
            f"known: {', '.join(sorted(profiles))} (define it under [evaluate.profiles.{profile}])"
        )
    return CheckedLoop(spec, champion.ref, training, training.dataset, profile)


def _training_spec(
    workspace: Workspace, spec: LoopSpec, lineage: dict[str, object], where: str
) -> TrainingSpec:
    if spec.training_spec is None:
        try:
            return TrainingSpec.from_lineage(spec.model, lineage)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where} training_spec: not set, and {exc}") from exc
    try:
        training = TrainingSpec.from_toml(workspace.resolve_path(spec.training_spec))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where} training_spec: {exc}") from exc
    if training.model != spec.model:
        raise InvalidInputError(
            f"{where} training_spec: {spec.training_spec} trains model {training.model!r}, "
            f"but the loop is for {spec.model!r}"
        )
    return training


def _unknown(kind: str, name: str, known: Iterable[str], command: str) -> str:
    names = sorted(known)
    shown = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
    return f"unknown {kind} {name!r}{did_you_mean(name, names)}; known: {shown or 'none'} (see `{command}`)"
