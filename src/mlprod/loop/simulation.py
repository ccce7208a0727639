"""Simulated progressive rollouts: what a decision rule does to a harmless or a worse challenger.

A rollout serves a stream of requests in batches of ``batch``; each request goes to the challenger
with the current step's weight (5 % → 25 % → 50 % → 100 % by default) and fails (a wrong prediction)
with its arm's failure rate. After every batch the rule looks at the counts:

- rollback ends the rollout (the champion takes all traffic back);
- a step advances once the challenger has served ``min_step_requests`` in it, except the last step
  before 100 %, which also needs the rule's promote-step (for the sequential test: evidence that
  the challenger is at most ``margin`` worse; baselines give it whenever they do not roll back);
- reaching 100 % is a promotion; ``max_requests`` served without either is *inconclusive* (the
  champion stays: the safe outcome, counted apart from rollbacks).

Outcomes are Bernoulli at each arm's failure rate, or replayed from recorded per-request outcomes
(``Replay``: real traffic, with its drift from week to week). Many rollouts run at once as numpy
arrays, from one seed, so a run is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import TYPE_CHECKING

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module
from mlprod.loop.baselines import Arms, Rule
from mlprod.loop.sequential import Decision

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
else:
    np = lazy_module("numpy")


class Outcome(IntEnum):
    """How a simulated rollout ended."""

    RUNNING = 0
    PROMOTED = 1
    ROLLED_BACK = 2
    INCONCLUSIVE = 3


@dataclass(frozen=True, kw_only=True)
class RolloutPlan:
    """Traffic steps (percent of requests to the challenger) and how long each one lasts."""

    steps: tuple[int, ...] = (5, 25, 50, 100)
    batch: int = 500
    min_step_requests: int = 1_000
    max_requests: int = 400_000

    def __post_init__(self) -> None:
        check_steps(self.steps)
        if self.batch < 1 or self.min_step_requests < 0 or self.max_requests < self.batch:
            raise InvalidInputError(
                f"need batch >= 1, min_step_requests >= 0 and max_requests >= batch, got batch "
                f"{self.batch}, min_step_requests {self.min_step_requests}, max_requests {self.max_requests}"
            )


@dataclass(frozen=True)
class SimulationResult:
    """Per rollout: how it ended, after how many requests, how many of them the challenger served."""

    outcome: NDArray[np.int8]
    requests: NDArray[np.int64]
    challenger_requests: NDArray[np.int64]

    def share(self, outcome: Outcome) -> float:
        return float(np.mean(self.outcome == outcome))

    def median_requests(self, outcome: Outcome) -> float | None:
        """Median requests served until rollouts ended with ``outcome`` (None: none did)."""
        chosen = self.outcome == outcome
        return float(np.median(self.requests[chosen])) if chosen.any() else None

    def median_challenger_requests(self, outcome: Outcome) -> float | None:
        chosen = self.outcome == outcome
        return float(np.median(self.challenger_requests[chosen])) if chosen.any() else None


def check_steps(steps: Sequence[int]) -> None:
    """Refuse a step list that is empty, not strictly increasing, outside (0, 100] or not ending at 100."""
    if not steps:
        raise InvalidInputError("rollout steps are empty: give percentages such as [5, 25, 50, 100]")
    if any(not isinstance(step, int) or isinstance(step, bool) or not 0 < step <= 100 for step in steps):
        raise InvalidInputError(
            f"rollout steps must be whole percentages in 1..100, got {list(steps)} (e.g. [5, 25, 50, 100])"
        )
    if any(later <= earlier for earlier, later in pairwise(steps)):
        raise InvalidInputError(f"rollout steps must be strictly increasing, got {list(steps)}")
    if steps[-1] != 100:
        raise InvalidInputError(
            f"rollout steps must end at 100 (the challenger takes all traffic), got {list(steps)}"
        )


@dataclass(frozen=True)
class Replay:
    """Recorded traffic: for each request in time order, whether the champion's answer failed and
    whether the challenger's would have (e.g. per-request correctness of two models on the labelled
    prediction log). Each simulated rollout starts at a random request and wraps around at the end."""

    champion_failures: NDArray[np.bool_]
    challenger_failures: NDArray[np.bool_]

    def __post_init__(self) -> None:
        if len(self.champion_failures) != len(self.challenger_failures) or len(self.champion_failures) == 0:
            raise InvalidInputError(
                f"a replay needs one outcome per request for both models, got {len(self.champion_failures)} "
                f"and {len(self.challenger_failures)}"
            )


def simulate(
    rule: Rule,
    *,
    champion_failure_rate: float | None = None,
    challenger_failure_rate: float | None = None,
    replay: Replay | None = None,
    rollouts: int = 200,
    plan: RolloutPlan | None = None,
    seed: int = 0,
) -> SimulationResult:
    """Run ``rollouts`` simulated rollouts of one challenger under ``rule`` (see the module docstring):
    outcomes are Bernoulli at the two failure rates, or taken from ``replay``."""
    plan = plan or RolloutPlan()
    rates = (champion_failure_rate, challenger_failure_rate)
    if replay is not None and rates != (None, None):
        raise InvalidInputError("give either the two failure rates or a replay, not both")
    if replay is None:
        for name, rate in (("champion", champion_failure_rate), ("challenger", challenger_failure_rate)):
            if rate is None or not 0 <= rate <= 1:
                raise InvalidInputError(f"{name} failure rate must be in [0, 1], got {rate}")
    if rollouts < 1:
        raise InvalidInputError(f"rollouts must be at least 1, got {rollouts}")
    rng = np.random.default_rng(seed)
    starts = None if replay is None else rng.integers(0, len(replay.champion_failures), size=rollouts)
    weights = np.asarray(plan.steps, dtype=np.float64) / 100
    final = len(plan.steps) - 2  # the step whose promotion puts the challenger at 100 %
    rule.reset(rollouts)
    cumulative = [np.zeros((rollouts, len(plan.steps)), dtype=np.int64) for _ in range(4)]
    rows = np.arange(rollouts)
    step = np.zeros(rollouts, dtype=np.int64)
    step_challenger = np.zeros(rollouts, dtype=np.int64)
    outcome = np.full(rollouts, Outcome.RUNNING, dtype=np.int8)
    ended_at = np.zeros(rollouts, dtype=np.int64)
    ended_challenger = np.zeros(rollouts, dtype=np.int64)
    if len(plan.steps) == 1:  # straight to 100 %: nothing to decide
        outcome[:] = Outcome.PROMOTED
    served = 0
    while served < plan.max_requests and (outcome == Outcome.RUNNING).any():
        running = outcome == Outcome.RUNNING
        window: Arms
        if replay is None or starts is None:
            window = _drawn(
                (champion_failure_rate or 0.0, challenger_failure_rate or 0.0),
                plan.batch,
                weights[step],
                running,
                rng,
            )
        else:
            window = _replayed(replay, starts + served, plan.batch, weights[step], running, rng)
        to_challenger = window[2]
        for total, added in zip(cumulative, window, strict=True):
            total[rows, step] += added
        served += plan.batch
        step_challenger += to_challenger
        decision = rule.decide((cumulative[0], cumulative[1], cumulative[2], cumulative[3]), window)
        rollback = running & (decision == Decision.ROLLBACK)
        advance = (
            running
            & ~rollback
            & (step_challenger >= plan.min_step_requests)
            & ((step != final) | (decision == Decision.PROMOTE_STEP))
        )
        step = np.where(advance, step + 1, step)
        step_challenger = np.where(advance, 0, step_challenger)
        promoted = advance & (step == len(plan.steps) - 1)
        ended = rollback | promoted
        outcome = np.where(rollback, Outcome.ROLLED_BACK, outcome)
        outcome = np.where(promoted, Outcome.PROMOTED, outcome).astype(np.int8)
        ended_at = np.where(ended, served, ended_at)
        ended_challenger = np.where(ended, cumulative[2].sum(axis=1), ended_challenger)
    left = outcome == Outcome.RUNNING
    outcome[left] = Outcome.INCONCLUSIVE
    ended_at[left] = served
    ended_challenger[left] = cumulative[2].sum(axis=1)[left]
    return SimulationResult(outcome, ended_at, ended_challenger)


def _drawn(
    rates: tuple[float, float],
    batch: int,
    weight: NDArray[np.float64],
    running: NDArray[np.bool_],
    rng: np.random.Generator,
) -> Arms:
    """A batch of Bernoulli outcomes per rollout: requests and failures per arm."""
    to_challenger = rng.binomial(batch, weight) * running
    to_champion = (batch - to_challenger) * running
    return (
        to_champion,
        rng.binomial(to_champion, rates[0]),
        to_challenger,
        rng.binomial(to_challenger, rates[1]),
    )


def _replayed(
    replay: Replay,
    first: NDArray[np.int64],
    batch: int,
    weight: NDArray[np.float64],
    running: NDArray[np.bool_],
    rng: np.random.Generator,
) -> Arms:
    """The next ``batch`` recorded requests of each rollout, each routed to the challenger with the
    rollout's current weight: requests and failures per arm."""
    rows = (first[:, None] + np.arange(batch)) % len(replay.champion_failures)
    to_challenger = (rng.random(rows.shape) < weight[:, None]) & running[:, None]
    to_champion = ~to_challenger & running[:, None]
    return (
        to_champion.sum(axis=1),
        (to_champion & replay.champion_failures[rows]).sum(axis=1),
        to_challenger.sum(axis=1),
        (to_challenger & replay.challenger_failures[rows]).sum(axis=1),
    )
