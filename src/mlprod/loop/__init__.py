"""The continual loop: loop specs, and the decisions of a progressive rollout (always-valid tests)."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.loop.baselines import FixedThreshold, PeekingZTest, Rule, SequentialRule
    from mlprod.loop.sequential import Counts, Decision, Look, MixtureSPRT
    from mlprod.loop.simulation import Outcome, RolloutPlan, SimulationResult, check_steps, simulate

__all__ = [
    "Counts",
    "Decision",
    "FixedThreshold",
    "Look",
    "MixtureSPRT",
    "Outcome",
    "PeekingZTest",
    "RolloutPlan",
    "Rule",
    "SequentialRule",
    "SimulationResult",
    "check_steps",
    "simulate",
]

__getattr__ = lazy_exports(__name__, __file__)
