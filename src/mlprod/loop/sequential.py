"""An always-valid sequential test for rollout decisions: challenger vs champion on a binary outcome.

Each request has a binary outcome: a *failure* (a wrong prediction once the label arrives, or a
failed request). The rollout looks at the cumulative counts after every batch and must decide:
continue, promote the step, or roll back. A fixed-sample test checked after every batch rolls back
a harmless challenger far more often than its nominal level; this one does not, however often it is
checked.

The statistic is the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and
Walsh, "Always valid inference: bringing sequential analysis to A/B testing" (2017; Optimizely's
Stats Engine), in its Gaussian form for the difference of two proportions. With the challenger's
failure rate minus the champion's ``θ̂`` and its variance ``V = p̂₀(1-p̂₀)/n₀ + p̂₁(1-p̂₁)/n₁``,
mixing over alternatives ``θ ~ N(θ₀, τ²)`` gives the likelihood ratio::

    Λ(θ₀) = sqrt(V / (V + τ²)) · exp(τ² (θ̂ - θ₀)² / (2 V (V + τ²)))

which is a nonnegative martingale under ``θ = θ₀``; by Ville's inequality it ever exceeds
``1/alpha`` with probability at most ``alpha``. Inverting it gives a confidence sequence, an interval
``θ̂ ± r`` that covers the true difference at *every* look simultaneously with probability ``1 - alpha``::

    r = sqrt(V (V + τ²) / τ² · (2 log(1/alpha) + log((V + τ²) / V)))

Decisions read the interval:

- **rollback** when its lower end is above 0: the challenger fails more often. If the challenger is
  in truth no worse, this happens with probability at most ``alpha`` over the whole rollout, at any
  number of looks (the interval must miss the truth for it to happen).
- **promote-step** when its upper end is below ``margin``: the challenger is at most ``margin``
  worse (non-inferiority). A challenger worse by ``margin`` or more is promoted with probability at
  most ``alpha``.
- **continue** otherwise, and always before both arms have ``min_requests`` requests (the normal
  approximation needs a few failures on each side).

A rollout changes the challenger's share step by step while the failure rate drifts (flights are
late more often in some weeks than others), so the pooled rates of the two arms cover different
periods and their difference is biased (Simpson's paradox): on replayed flights traffic, pooled
counts rolled back half of the rollouts of a challenger identical to the champion. The test
therefore takes counts per step (the share is constant within a step, so each step's difference is
unbiased) and combines the steps' differences weighted by their inverse variance; the sum of
independent steps is again a Gaussian process in its information, so the mixture bound holds.

Examples:
    >>> test = MixtureSPRT(alpha=0.05, effect=0.02, margin=0.01)
    >>> test.look(Counts(20_000, 4_000), Counts(20_000, 4_500)).decision
    <Decision.ROLLBACK: 2>
    >>> test.look(Counts(60_000, 12_000), Counts(60_000, 11_900)).decision
    <Decision.PROMOTE_STEP: 1>
    >>> test.look(Counts(1_000, 200), Counts(50, 12)).decision
    <Decision.CONTINUE: 0>
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray
else:
    np = lazy_module("numpy")


class Decision(IntEnum):
    """What one look at a rollout step decides."""

    CONTINUE = 0
    PROMOTE_STEP = 1
    ROLLBACK = 2


@dataclass(frozen=True)
class Counts:
    """Requests one arm served and how many of them failed (wrong prediction or failed request)."""

    requests: int
    failures: int

    def __post_init__(self) -> None:
        if self.requests < 0 or self.failures < 0 or self.failures > self.requests:
            raise InvalidInputError(
                f"counts need 0 <= failures <= requests, got {self.failures} failures "
                f"of {self.requests} requests"
            )


@dataclass(frozen=True)
class Look:
    """One look's verdict with its evidence: the difference of failure rates (challenger minus
    champion), its always-valid interval and p-value."""

    decision: Decision
    estimate: float
    lower: float
    upper: float
    p_value: float
    champion: Counts
    challenger: Counts

    @property
    def reason(self) -> str:
        """One line for the loop's history: what was decided, on what evidence."""
        evidence = (
            f"failure rate difference {self.estimate:+.4f} [{self.lower:+.4f}, {self.upper:+.4f}], "
            f"always-valid p {self.p_value:.3g}, on {self.challenger.requests} challenger / "
            f"{self.champion.requests} champion requests"
        )
        return f"{self.decision.name.lower().replace('_', '-')}: {evidence}"


@dataclass(frozen=True, kw_only=True)
class MixtureSPRT:
    """The always-valid rollout test (see the module docstring).

    ``effect`` is the mixing standard deviation ``τ``: the size of difference the test is most
    sensitive to (a 2-point accuracy drop: 0.02). ``margin`` is the largest harm still promoted.
    """

    alpha: float = 0.05
    effect: float = 0.02
    margin: float = 0.01
    min_requests: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"alpha must be between 0 and 1 (exclusive), got {self.alpha}")
        if not 0 < self.effect < 1:
            raise InvalidInputError(f"effect must be between 0 and 1 (exclusive), got {self.effect}")
        if not 0 <= self.margin < 1:
            raise InvalidInputError(f"margin must be in [0, 1), got {self.margin}")
        if self.min_requests < 1:
            raise InvalidInputError(f"min_requests must be at least 1, got {self.min_requests}")

    def interval(
        self,
        champion_requests: ArrayLike,
        champion_failures: ArrayLike,
        challenger_requests: ArrayLike,
        challenger_failures: ArrayLike,
        *,
        axis: int | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Estimate, lower and upper end of the confidence sequence, and always-valid p-value (of "no
        difference"), elementwise over arrays of counts (one element per rollout).

        With ``axis``, the counts are split along it into strata (one per rollout step) and the
        per-stratum differences are combined, weighted by their inverse variance.
        """
        n0, f0 = _arm(champion_requests, champion_failures)
        n1, f1 = _arm(challenger_requests, challenger_failures)
        if axis is None:
            n0, f0, n1, f1 = (np.expand_dims(a, -1) for a in (n0, f0, n1, f1))
            axis = -1
        # Rates shrunk half a failure toward 1/2: no zero variance when an arm has no failure yet.
        p0, p1 = (f0 + 0.5) / (n0 + 1.0), (f1 + 0.5) / (n1 + 1.0)
        difference = f1 / np.maximum(n1, 1.0) - f0 / np.maximum(n0, 1.0)
        information = np.where(
            (n0 > 0) & (n1 > 0),
            1 / (p0 * (1 - p0) / np.maximum(n0, 1.0) + p1 * (1 - p1) / np.maximum(n1, 1.0)),
            0.0,
        )
        total = information.sum(axis=axis)
        seen = total > 0
        estimate = np.where(seen, (information * difference).sum(axis=axis) / np.where(seen, total, 1.0), 0.0)
        variance = np.where(seen, 1 / np.where(seen, total, 1.0), 1.0)  # nothing seen: a vague interval
        tau2 = self.effect**2
        radius = np.sqrt(
            variance * (variance + tau2) / tau2
            * (2 * math.log(1 / self.alpha) + np.log((variance + tau2) / variance))
        )  # fmt: skip
        log_ratio = 0.5 * np.log(variance / (variance + tau2)) + tau2 * estimate**2 / (
            2 * variance * (variance + tau2)
        )
        p_value = np.minimum(1.0, np.exp(-log_ratio))
        return estimate, estimate - radius, estimate + radius, p_value

    def decide(
        self,
        champion_requests: ArrayLike,
        champion_failures: ArrayLike,
        challenger_requests: ArrayLike,
        challenger_failures: ArrayLike,
        *,
        axis: int | None = None,
    ) -> NDArray[np.int8]:
        """The decision (``Decision`` values) for each element of arrays of cumulative counts
        (per stratum along ``axis`` when given, as in ``interval``)."""
        _, lower, upper, _ = self.interval(
            champion_requests, champion_failures, challenger_requests, challenger_failures, axis=axis
        )
        n0, n1 = np.asarray(champion_requests), np.asarray(challenger_requests)
        if axis is not None:
            n0, n1 = n0.sum(axis=axis), n1.sum(axis=axis)
        enough = (n0 >= self.min_requests) & (n1 >= self.min_requests)
        decision = np.where(upper < self.margin, Decision.PROMOTE_STEP, Decision.CONTINUE)
        decision = np.where(lower > 0, Decision.ROLLBACK, decision)
        return np.where(enough, decision, Decision.CONTINUE).astype(np.int8)

    def look(self, champion: Counts | Sequence[Counts], challenger: Counts | Sequence[Counts]) -> Look:
        """Decide on one rollout's cumulative counts: one ``Counts`` per arm, or one per rollout step
        (the same number for both arms) so that a drifting failure rate cannot bias the comparison."""
        zero = [champion] if isinstance(champion, Counts) else list(champion)
        one = [challenger] if isinstance(challenger, Counts) else list(challenger)
        if len(zero) != len(one) or not zero:
            raise InvalidInputError(
                f"give counts for the same steps on both arms, got {len(zero)} and {len(one)}"
            )
        args = (
            [c.requests for c in zero], [c.failures for c in zero],
            [c.requests for c in one], [c.failures for c in one],
        )  # fmt: skip
        estimate, lower, upper, p_value = (float(v) for v in self.interval(*args, axis=0))
        decision = Decision(int(self.decide(*args, axis=0)))
        return Look(decision, estimate, lower, upper, p_value, _total(zero), _total(one))


def _total(counts: list[Counts]) -> Counts:
    return Counts(sum(c.requests for c in counts), sum(c.failures for c in counts))


def _arm(requests: ArrayLike, failures: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n, f = np.asarray(requests, dtype=np.float64), np.asarray(failures, dtype=np.float64)
    if np.any(n < 0) or np.any(f < 0) or np.any(f > n):
        raise InvalidInputError("counts need 0 <= failures <= requests on every arm")
    return n, f
