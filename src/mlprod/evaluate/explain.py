"""Per-prediction explanations: why the model scored these rows of an evaluation set as it did.

Each explained row gets its inputs, its probability, and the additive contribution of every input
to its log-odds (TreeSHAP for LightGBM and XGBoost; coefficient times deviation from the average row
for linear models). Linear contributions are taken relative to the average of a seeded background
sample of the set, not of the few rows explained, so they do not depend on how many rows are asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlprod.errors import InvalidInputError
from mlprod.evaluate.evaluation import request_rows, score_rows
from mlprod.evaluate.evaluation_set import EvaluationSet, get_evaluation_set, load_rows
from mlprod.evaluate.interpretability import contributions
from mlprod.models import Registry
from mlprod.progress import Step, no_step
from mlprod.workspace import Workspace

BACKGROUND_ROWS = 2000


@dataclass(frozen=True)
class Explanation:
    """One prediction: inputs, probability, base log-odds and each input's contribution (largest first)."""

    inputs: dict[str, Any]
    probability: float
    base: float
    contributions: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "probability": self.probability,
            "base": self.base,
            "contributions": self.contributions,
        }


def explain_rows(
    workspace: Workspace,
    ref: str,
    evaluation_set: str | EvaluationSet,
    *,
    rows: int = 5,
    seed: int = 0,
    step: Step | None = None,
) -> list[Explanation]:
    """Explain ``rows`` seeded random rows of the set as scored by ``ref``; ``step`` hears each phase."""
    step = step or no_step
    if not 1 <= rows <= BACKGROUND_ROWS:
        raise InvalidInputError(f"rows to explain must be between 1 and {BACKGROUND_ROWS}, got {rows}")
    chosen = (
        get_evaluation_set(workspace, evaluation_set) if isinstance(evaluation_set, str) else evaluation_set
    )
    registry = Registry(workspace)
    version = registry.get(ref)
    step(f"reading {chosen.describe()}")
    loaded_rows = load_rows(workspace, chosen)
    loaded = registry.load(version)
    step("scoring")
    scored = score_rows(workspace, version, loaded, loaded_rows, chosen)
    step("contributions")
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(scored.y), size=min(BACKGROUND_ROWS, len(scored.y)), replace=False)
    parts = contributions(loaded, scored.matrix[sample])[:rows]
    names = loaded.signature.input_names
    inputs = request_rows(scored.frame.iloc[sample[:rows]], names, seed=seed, shuffle=False)
    result = []
    for i, row in enumerate(parts):
        order = np.argsort(-np.abs(row[:-1]), kind="stable")
        result.append(
            Explanation(
                inputs=inputs[i],
                probability=float(scored.probability[sample[i]]),
                base=float(row[-1]),
                contributions={names[j]: float(row[j]) for j in order},
            )
        )
    return result
