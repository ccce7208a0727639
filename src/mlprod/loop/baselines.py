"""Rollout rules that do what deployment tools do today, to measure the sequential test against.

Each rule sees, at every look, the cumulative counts of both arms per rollout step (arrays of shape
rollouts x steps) and the counts of the window since the previous look (one element per simulated
rollout), and returns ``Decision`` values.

- ``SequentialRule``: the always-valid ``MixtureSPRT`` on the cumulative counts, step by step.
- ``FixedThreshold``: Flagger / Argo Rollouts analysis. At every interval the metric over that
  interval is compared with a fixed threshold (here: the challenger's failure rate may exceed the
  champion's by at most ``tolerance``); after ``failed_checks`` failed checks the canary is rolled
  back. Flagger's documented example uses ``threshold: 5``.
- ``PeekingZTest``: a fixed-sample one-sided z-test at level ``alpha`` recomputed at every look, the
  textbook way repeated looks inflate false alarms (on the counts pooled over the steps).

Neither baseline produces evidence for promotion: a step advances when its traffic is served
without a rollback, as in Flagger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Protocol

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module
from mlprod.loop.sequential import Decision, MixtureSPRT

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
else:
    np = lazy_module("numpy")

Arms = tuple["NDArray[np.int64]", "NDArray[np.int64]", "NDArray[np.int64]", "NDArray[np.int64]"]
"""Champion requests, champion failures, challenger requests, challenger failures (cumulative:
one row per rollout, one column per step; window: one element per rollout)."""


class Rule(Protocol):
    """A rollout decision rule over many rollouts at once."""

    name: str

    def reset(self, rollouts: int) -> None:
        """Forget every rollout's state: ``rollouts`` new rollouts start."""

    def decide(self, cumulative: Arms, window: Arms) -> NDArray[np.int8]:
        """The decision of each rollout at this look."""


@dataclass
class SequentialRule:
    """``MixtureSPRT`` as a rule (it needs no state: its guarantee holds over cumulative counts).

    ``by_step=False`` pools the counts over the steps, to measure the bias it suffers from.
    """

    test: MixtureSPRT = field(default_factory=MixtureSPRT)
    name: str = "mSPRT (always valid)"
    by_step: bool = True

    def reset(self, rollouts: int) -> None:
        del rollouts

    def decide(self, cumulative: Arms, window: Arms) -> NDArray[np.int8]:
        del window
        if self.by_step:
            return self.test.decide(*cumulative, axis=1)
        return self.test.decide(*(counts.sum(axis=1) for counts in cumulative))


@dataclass
class FixedThreshold:
    """Flagger-style analysis: a windowed metric against a fixed threshold, rolled back after
    ``failed_checks`` failures (not necessarily consecutive). A check runs every ``interval`` looks,
    on the requests served since the previous check."""

    tolerance: float = 0.02
    failed_checks: int = 5
    interval: int = 1
    name: str = "fixed threshold (Flagger-style)"
    _failed: NDArray[np.int64] = field(init=False, repr=False)
    _window: list[NDArray[np.int64]] = field(init=False, repr=False)
    _looks: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise InvalidInputError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.failed_checks < 1:
            raise InvalidInputError(f"failed_checks must be at least 1, got {self.failed_checks}")
        if self.interval < 1:
            raise InvalidInputError(f"interval must be at least 1 look, got {self.interval}")
        self.reset(0)

    def reset(self, rollouts: int) -> None:
        self._failed = np.zeros(rollouts, dtype=np.int64)
        self._window = [np.zeros(rollouts, dtype=np.int64) for _ in range(4)]
        self._looks = 0

    def decide(self, cumulative: Arms, window: Arms) -> NDArray[np.int8]:
        del cumulative
        for total, added in zip(self._window, window, strict=True):
            total += added
        self._looks += 1
        if self._looks % self.interval:
            return np.where(
                self._failed >= self.failed_checks, Decision.ROLLBACK, Decision.PROMOTE_STEP
            ).astype(np.int8)
        n0, f0, n1, f1 = self._window
        self._window = [np.zeros_like(total) for total in self._window]
        checked = (n0 > 0) & (n1 > 0)
        difference = f1 / np.maximum(n1, 1) - f0 / np.maximum(n0, 1)
        self._failed += checked & (difference > self.tolerance)
        rollback = self._failed >= self.failed_checks
        return np.where(rollback, Decision.ROLLBACK, Decision.PROMOTE_STEP).astype(np.int8)


@dataclass
class PeekingZTest:
    """A one-sided two-proportion z-test at level ``alpha``, recomputed on the cumulative counts at
    every look as if each look were the only one."""

    alpha: float = 0.05
    min_requests: int = 100
    name: str = "z-test at every look"

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"alpha must be between 0 and 1 (exclusive), got {self.alpha}")

    def reset(self, rollouts: int) -> None:
        del rollouts

    def decide(self, cumulative: Arms, window: Arms) -> NDArray[np.int8]:
        del window
        n0, f0, n1, f1 = (np.asarray(a, dtype=np.float64).sum(axis=1) for a in cumulative)
        pooled = (f0 + f1 + 0.5) / (n0 + n1 + 1.0)
        se = np.sqrt(pooled * (1 - pooled) * (1 / np.maximum(n0, 1) + 1 / np.maximum(n1, 1)))
        z = (f1 / np.maximum(n1, 1) - f0 / np.maximum(n0, 1)) / se
        critical = NormalDist().inv_cdf(1 - self.alpha)
        rollback = (z > critical) & (n0 >= self.min_requests) & (n1 >= self.min_requests)
        return np.where(rollback, Decision.ROLLBACK, Decision.PROMOTE_STEP).astype(np.int8)
