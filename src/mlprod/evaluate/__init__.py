"""Evaluation of model versions: reports, utility under profiles, leaderboards and the gate."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.evaluate.bootstrap import Interval
    from mlprod.evaluate.evaluation import EvaluationOptions, evaluate_model
    from mlprod.evaluate.evaluation_set import (
        EvaluationSet,
        evaluation_sets,
        get_evaluation_set,
        load_rows,
        save_evaluation_set,
        set_commit,
    )
    from mlprod.evaluate.explain import Explanation, explain_rows
    from mlprod.evaluate.fairness import FairnessReport, GroupRates, fairness_report
    from mlprod.evaluate.gate import GateVerdict, gate, gate_models
    from mlprod.evaluate.importance import FeatureImportance, ImportanceReport, permutation_importance
    from mlprod.evaluate.interpretability import Interpretability, contributions, interpretability_report
    from mlprod.evaluate.leaderboard import (
        Leaderboard,
        LeaderboardEntry,
        build_leaderboard,
        get_leaderboard,
        list_leaderboards,
    )
    from mlprod.evaluate.pool import LeftOut, Pool, comparable_reports, reevaluate_left_out
    from mlprod.evaluate.profiles import BUILTIN_PROFILES, get_profile, load_profiles
    from mlprod.evaluate.quality import classification_quality, regression_quality, score_metric
    from mlprod.evaluate.report import EvaluationReport
    from mlprod.evaluate.report_store import get_report, latest_report, latest_reports
    from mlprod.evaluate.robustness import RobustnessReport, ShiftResult, robustness_report
    from mlprod.evaluate.same_rows import Evaluated, RowsChange, SameRows, compare_rows, rows_digest
    from mlprod.evaluate.serving_cost import ServingCost, measure_serving_cost
    from mlprod.evaluate.slices import SliceMetric, SliceReport, slice_report
    from mlprod.evaluate.utility import (
        Constraint,
        PoolSnapshot,
        Profile,
        ScoredCandidate,
        parse_constraint,
        score,
    )
    from mlprod.models.metrics import binary_classification_metrics

__all__ = [
    "BUILTIN_PROFILES",
    "Constraint",
    "Evaluated",
    "EvaluationOptions",
    "EvaluationReport",
    "EvaluationSet",
    "Explanation",
    "FairnessReport",
    "FeatureImportance",
    "GateVerdict",
    "GroupRates",
    "ImportanceReport",
    "Interpretability",
    "Interval",
    "Leaderboard",
    "LeaderboardEntry",
    "LeftOut",
    "Pool",
    "PoolSnapshot",
    "Profile",
    "RobustnessReport",
    "RowsChange",
    "SameRows",
    "ScoredCandidate",
    "ServingCost",
    "ShiftResult",
    "SliceMetric",
    "SliceReport",
    "binary_classification_metrics",
    "build_leaderboard",
    "classification_quality",
    "comparable_reports",
    "compare_rows",
    "contributions",
    "evaluate_model",
    "evaluation_sets",
    "explain_rows",
    "fairness_report",
    "gate",
    "gate_models",
    "get_evaluation_set",
    "get_leaderboard",
    "get_profile",
    "get_report",
    "interpretability_report",
    "latest_report",
    "latest_reports",
    "list_leaderboards",
    "load_profiles",
    "load_rows",
    "measure_serving_cost",
    "parse_constraint",
    "permutation_importance",
    "reevaluate_left_out",
    "regression_quality",
    "robustness_report",
    "rows_digest",
    "save_evaluation_set",
    "score",
    "score_metric",
    "set_commit",
    "slice_report",
]

__getattr__ = lazy_exports(__name__, __file__)
