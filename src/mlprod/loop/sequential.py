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
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Estimate, lower and upper end of the confidence sequence, and always-valid p-value
        (of "no difference"), elementwise over arrays of counts (one element per rollout)."""  # fmt: skip
        n0, f0 = _arm(champion_requests, champion_failures)
        n1, f1 = _arm(challenger_requests, challenger_failures)
        # Rates shrunk half a failure toward 1/2: no zero variance when an arm has no failure yet.
        p0, p1 = (f0 + 0.5) / (n0 + 1.0), (f1 + 0.5) / (n1 + 1.0)
        estimate = f1 / np.maximum(n1, 1.0) - f0 / np.maximum(n0, 1.0)
        variance = p0 * (1 - p0) / np.maximum(n0, 1.0) + p1 * (1 - p1) / np.maximum(n1, 1.0)
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
    ) -> NDArray[np.int8]:
        """The decision (``Decision`` values) for each element of arrays of cumulative counts."""  # fmt: skip
        _, lower, upper, _ = self.interval(
            champion_requests, champion_failures, challenger_requests, challenger_failures
        )
        enough = (np.asarray(champion_requests) >= self.min_requests) & (
            np.asarray(challenger_requests) >= self.min_requests
        )
        decision = np.where(upper < self.margin, Decision.PROMOTE_STEP, Decision.CONTINUE)
        decision = np.where(lower > 0, Decision.ROLLBACK, decision)
        return np.where(enough, decision, Decision.CONTINUE).astype(np.int8)

    def look(self, champion: Counts, challenger: Counts) -> Look:
        """Decide on one rollout's cumulative counts."""
        args = (champion.requests, champion.failures, challenger.requests, challenger.failures)
        estimate, lower, upper, p_value = (float(v) for v in self.interval(*args))
        decision = Decision(int(self.decide(*args)))
        return Look(decision, estimate, lower, upper, p_value, champion, challenger)


def _arm(requests: ArrayLike, failures: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n, f = np.asarray(requests, dtype=np.float64), np.asarray(failures, dtype=np.float64)
    if np.any(n < 0) or np.any(f < 0) or np.any(f > n):
        raise InvalidInputError("counts need 0 <= failures <= requests on every arm")
    return n, f
