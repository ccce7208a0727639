"""Service objectives of a canary step, checked with an always-valid bound on a rate.

Both SLOs of a loop spec are rates of a binary outcome per request: ``error_rate`` is the share of
failed requests, and ``p99_ms`` says that at most 1 % of requests may be slower than it. A step
breaches an SLO when the always-valid confidence sequence of the challenger's rate lies entirely
above the limit, so a challenger within its SLOs is stopped with probability at most ``alpha``
however often it is checked (the one-sample form of ``mlprod.loop.MixtureSPRT``'s mixture bound;
the mixing spread is the limit itself: the test is tuned to catch a doubled rate).

Examples:
    >>> check = SloCheck(alpha=0.05)
    >>> check.look(Counts(5_000, 150), limit=0.01).breached   # 3 % errors against 1 %
    True
    >>> check.look(Counts(5_000, 45), limit=0.01).breached
    False
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlprod.errors import InvalidInputError
from mlprod.loop.sequential import Counts

P99_SHARE = 0.01
"""Share of requests a p99 latency objective allows above it."""


@dataclass(frozen=True)
class SloLook:
    """One look at a rate against its limit: the estimate, its always-valid interval, the verdict."""

    breached: bool
    estimate: float
    lower: float
    upper: float
    limit: float
    counts: Counts


@dataclass(frozen=True, kw_only=True)
class SloCheck:
    """The always-valid test of a rate against a limit (see the module docstring).

    No verdict before ``min_events`` failures are expected at the limit (the normal approximation
    needs them): at a 1 % limit, 500 requests.
    """

    alpha: float = 0.05
    min_events: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"alpha must be between 0 and 1 (exclusive), got {self.alpha}")
        if self.min_events <= 0:
            raise InvalidInputError(f"min_events must be positive, got {self.min_events}")

    def look(self, counts: Counts, *, limit: float) -> SloLook:
        """Whether ``counts`` (requests, and those that failed or were slower than the objective)
        show the rate above ``limit``."""
        if not 0 < limit < 1:
            raise InvalidInputError(f"an SLO limit is a rate between 0 and 1 (exclusive), got {limit}")
        n = max(counts.requests, 1)
        estimate = counts.failures / n
        # The variance at the limit: the null being tested, and never zero while no failure is seen.
        variance = limit * (1 - limit) / n
        tau2 = limit**2
        radius = math.sqrt(
            variance
            * (variance + tau2)
            / tau2
            * (2 * math.log(1 / self.alpha) + math.log((variance + tau2) / variance))
        )
        enough = counts.requests * limit >= self.min_events
        lower, upper = estimate - radius, estimate + radius
        return SloLook(enough and lower > limit, estimate, lower, upper, limit, counts)
