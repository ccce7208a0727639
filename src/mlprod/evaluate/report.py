"""An evaluation report: everything measured about one model version on one evaluation set.

The report keeps each part (quality, slices, robustness, fairness, serving cost, interpretability,
feature usefulness) and a flat ``metrics`` view whose names are the ones profiles, constraints and
the leaderboard use (see ``mlprod.evaluate.utility.DEFAULT_DIRECTIONS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlprod.evaluate.evaluation_set import EvaluationSet
from mlprod.evaluate.fairness import FairnessReport
from mlprod.evaluate.importance import ImportanceReport
from mlprod.evaluate.interpretability import Interpretability
from mlprod.evaluate.json_numbers import number
from mlprod.evaluate.robustness import RobustnessReport
from mlprod.evaluate.serving_cost import ServingCost
from mlprod.evaluate.slices import SliceReport

SERVING_METRICS = (
    "latency_p50_ms",
    "latency_p99_ms",
    "throughput_rows_per_s",
    "artifact_mb",
    "memory_mb",
    "cost_per_million",
)


@dataclass(frozen=True)
class EvaluationReport:
    """One model version evaluated on one evaluation set (read at ``dataset_commit``, with ``seed``).

    ``host`` names the machine the serving cost was measured on: figures from different machines
    do not compare. ``rows_digest`` is the content hash of the rows the set selected (None in
    reports made before it was recorded); reports on other commits with the same digest measured
    the same rows.
    """

    id: str
    model: str
    version: int
    evaluation_set: EvaluationSet
    dataset_commit: str
    seed: int
    created_at: datetime
    rows: int
    quality: dict[str, float]
    slices: SliceReport
    robustness: RobustnessReport
    fairness: tuple[FairnessReport, ...]
    serving: ServingCost | None
    interpretability: Interpretability
    importance: ImportanceReport
    seconds: float
    host: dict[str, str] = field(default_factory=dict)
    rows_digest: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        """The flat metrics a profile can weigh or constrain (only those that were measured)."""
        flat = dict(self.quality)
        if self.slices.worst is not None:
            flat[f"worst_slice_{self.slices.metric}"] = self.slices.worst.metric
        flat["robustness_drop"] = self.robustness.worst_drop
        if self.fairness:
            flat["dp_difference"] = max(f.demographic_parity_difference.value for f in self.fairness)
            flat["eo_difference"] = max(f.equalized_odds_difference.value for f in self.fairness)
        if self.serving is not None:
            flat |= {name: float(getattr(self.serving, name)) for name in SERVING_METRICS}
        flat["interpretability"] = self.interpretability.declared_score
        return {name: value for name, value in flat.items() if math.isfinite(value)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "evaluation_set": self.evaluation_set.definition(),
            "dataset_commit": self.dataset_commit,
            "seed": self.seed,
            "created_at": self.created_at.isoformat(),
            "rows": self.rows,
            "quality": self.quality,
            "slices": self.slices.to_dict(),
            "robustness": self.robustness.to_dict(),
            "fairness": [f.to_dict() for f in self.fairness],
            "serving": None if self.serving is None else self.serving.to_dict(),
            "interpretability": self.interpretability.to_dict(),
            "importance": self.importance.to_dict(),
            "seconds": self.seconds,
            "host": self.host,
            "rows_digest": self.rows_digest,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        return cls(
            id=data["id"],
            model=data["model"],
            version=data["version"],
            evaluation_set=EvaluationSet.from_definition(data["evaluation_set"]),
            dataset_commit=data["dataset_commit"],
            seed=data["seed"],
            created_at=datetime.fromisoformat(data["created_at"]),
            rows=data["rows"],
            quality={name: number(value) for name, value in data["quality"].items()},
            slices=SliceReport.from_dict(data["slices"]),
            robustness=RobustnessReport.from_dict(data["robustness"]),
            fairness=tuple(FairnessReport.from_dict(f) for f in data["fairness"]),
            serving=None if data["serving"] is None else ServingCost.from_dict(data["serving"]),
            interpretability=Interpretability.from_dict(data["interpretability"]),
            importance=ImportanceReport.from_dict(data["importance"]),
            seconds=data["seconds"],
            host=dict(data.get("host", {})),
            rows_digest=data.get("rows_digest"),
        )
