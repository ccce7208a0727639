"""The continual loop: loop specs checked against the workspace, and the decisions of a progressive
rollout (an always-valid sequential test, baselines, a rollout simulator)."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.loop.baselines import FixedThreshold, PeekingZTest, Rule, SequentialRule
    from mlprod.loop.check import CheckedLoop, check_loop, workspace_loops
    from mlprod.loop.sequential import Counts, Decision, Look, MixtureSPRT
    from mlprod.loop.simulation import Outcome, Replay, RolloutPlan, SimulationResult, check_steps, simulate
    from mlprod.loop.slo import SloCheck, SloLook
    from mlprod.loop.spec import (
        LoopSpec,
        RolloutSpec,
        SloSpec,
        TriggerSpec,
        Window,
        parse_loops,
        read_loop_file,
    )

__all__ = [
    "CheckedLoop",
    "Counts",
    "Decision",
    "FixedThreshold",
    "Look",
    "LoopSpec",
    "MixtureSPRT",
    "Outcome",
    "PeekingZTest",
    "Replay",
    "RolloutPlan",
    "RolloutSpec",
    "Rule",
    "SequentialRule",
    "SimulationResult",
    "SloCheck",
    "SloLook",
    "SloSpec",
    "TriggerSpec",
    "Window",
    "check_loop",
    "check_steps",
    "parse_loops",
    "read_loop_file",
    "simulate",
    "workspace_loops",
]

__getattr__ = lazy_exports(__name__, __file__)
