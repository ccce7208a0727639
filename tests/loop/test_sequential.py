"""The always-valid rollout test: its error rates under many looks, its power, its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.loop import (
    Counts,
    Decision,
    FixedThreshold,
    MixtureSPRT,
    Outcome,
    PeekingZTest,
    Replay,
    RolloutPlan,
    SequentialRule,
    simulate,
)

# 200 looks of 200 requests at a 50/50 split; steps never advance: every look may roll back.
MANY_LOOKS = RolloutPlan(steps=(50, 100), batch=200, min_step_requests=10**9, max_requests=40_000)


def test_false_rollbacks_stay_below_alpha_over_200_looks() -> None:
    test = MixtureSPRT(alpha=0.05)
    result = simulate(
        SequentialRule(test), champion_failure_rate=0.2, challenger_failure_rate=0.2, rollouts=400,
        plan=MANY_LOOKS, seed=7,
    )  # fmt: skip
    assert result.share(Outcome.ROLLED_BACK) <= 0.05


def test_a_z_test_peeked_at_every_look_rolls_back_a_harmless_challenger_far_more_often() -> None:
    result = simulate(
        PeekingZTest(alpha=0.05), champion_failure_rate=0.2, challenger_failure_rate=0.2, rollouts=400,
        plan=MANY_LOOKS, seed=7,
    )  # fmt: skip
    assert result.share(Outcome.ROLLED_BACK) > 0.2


def test_a_clearly_worse_challenger_is_rolled_back() -> None:
    result = simulate(
        SequentialRule(MixtureSPRT()), champion_failure_rate=0.2, challenger_failure_rate=0.25, rollouts=200,
        plan=MANY_LOOKS, seed=3,
    )  # fmt: skip
    assert result.share(Outcome.ROLLED_BACK) >= 0.95
    assert result.median_requests(Outcome.ROLLED_BACK) < 10_000


def test_an_identical_challenger_goes_through_the_steps_to_promotion() -> None:
    result = simulate(
        SequentialRule(MixtureSPRT()), champion_failure_rate=0.2, challenger_failure_rate=0.2, rollouts=100,
        seed=1,
    )  # fmt: skip
    assert result.share(Outcome.PROMOTED) >= 0.95
    assert result.share(Outcome.ROLLED_BACK) <= 0.05


def test_a_run_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        result = simulate(
            SequentialRule(MixtureSPRT()), champion_failure_rate=0.2, challenger_failure_rate=0.22,
            rollouts=50, seed=seed,
        )  # fmt: skip
        return result.outcome, result.requests

    first, again, other = run(5), run(5), run(6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_look_reads_the_interval() -> None:
    test = MixtureSPRT(alpha=0.05, effect=0.02, margin=0.01)
    worse = test.look(Counts(20_000, 4_000), Counts(20_000, 4_500))
    assert worse.decision is Decision.ROLLBACK
    assert worse.estimate == pytest.approx(0.025)
    assert 0 < worse.lower < worse.estimate < worse.upper
    assert worse.p_value < 0.05
    assert worse.reason.startswith("rollback: failure rate difference +0.0250")
    same = test.look(Counts(60_000, 12_000), Counts(60_000, 11_900))
    assert same.decision is Decision.PROMOTE_STEP and same.upper < 0.01 and same.p_value == 1.0
    early = test.look(Counts(1_000, 200), Counts(50, 25))  # 50 % vs 20 %, but only 50 requests
    assert early.decision is Decision.CONTINUE


def test_the_interval_narrows_as_requests_accumulate() -> None:
    test = MixtureSPRT()
    widths = [test.look(Counts(n, n // 5), Counts(n, n // 5)) for n in (1_000, 10_000, 100_000)]
    assert [w.upper - w.lower for w in widths] == sorted((w.upper - w.lower for w in widths), reverse=True)


def test_arrays_and_scalars_decide_alike() -> None:
    test = MixtureSPRT()
    n0, f0 = np.array([20_000, 60_000, 1_000]), np.array([4_000, 12_000, 200])
    n1, f1 = np.array([20_000, 60_000, 50]), np.array([4_500, 11_900, 25])
    decided = test.decide(n0, f0, n1, f1)
    looked = [
        test.look(Counts(*a), Counts(*b)).decision
        for a, b in zip(zip(n0, f0, strict=True), zip(n1, f1, strict=True), strict=True)
    ]
    assert (
        list(decided)
        == [int(d) for d in looked]
        == [Decision.ROLLBACK, Decision.PROMOTE_STEP, Decision.CONTINUE]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0}, r"alpha must be between 0 and 1 \(exclusive\), got 0"),
        ({"effect": 1.5}, r"effect must be between 0 and 1 \(exclusive\), got 1.5"),
        ({"margin": -0.1}, r"margin must be in \[0, 1\), got -0.1"),
        ({"min_requests": 0}, "min_requests must be at least 1, got 0"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        MixtureSPRT(**kwargs)


def test_bad_counts_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="0 <= failures <= requests, got 5 failures of 3 requests"):
        Counts(3, 5)
    with pytest.raises(InvalidInputError, match="on every arm"):
        MixtureSPRT().decide([10], [11], [10], [1])


def test_the_flagger_style_rule_rolls_back_after_its_failed_checks() -> None:
    rule = FixedThreshold(tolerance=0.02, failed_checks=2, interval=1)
    rule.reset(2)
    window = (np.array([100, 100]), np.array([20, 20]), np.array([100, 100]), np.array([30, 20]))
    first = rule.decide(window, window)
    second = rule.decide(window, window)
    assert list(first) == [Decision.PROMOTE_STEP, Decision.PROMOTE_STEP]
    assert list(second) == [Decision.ROLLBACK, Decision.PROMOTE_STEP]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": (5, 25, 50)}, "must end at 100"),
        ({"steps": (25, 5, 100)}, "strictly increasing"),
        ({"batch": 0}, "need batch >= 1"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        RolloutPlan(**kwargs)  # type: ignore[arg-type]


def test_bad_failure_rates_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"challenger failure rate must be in \[0, 1\], got 1.2"):
        simulate(SequentialRule(), champion_failure_rate=0.2, challenger_failure_rate=1.2)


def test_counts_per_step_are_not_fooled_by_a_drifting_failure_rate() -> None:
    """Step 1 (5 %) in a good week, step 2 (50 %) in a bad one: the challenger is no worse in either,
    but pooled over both steps its failure rate looks 11 points worse (Simpson's paradox)."""
    test = MixtureSPRT()
    champion = [Counts(19_000, 1_900), Counts(10_000, 3_000)]
    challenger = [Counts(1_000, 100), Counts(10_000, 3_000)]
    pooled = test.look(Counts(29_000, 4_900), Counts(11_000, 3_100))
    assert pooled.decision is Decision.ROLLBACK
    by_step = test.look(champion, challenger)
    assert by_step.decision is not Decision.ROLLBACK
    assert by_step.estimate == pytest.approx(0.0)
    assert by_step.challenger == Counts(11_000, 3_100)
    with pytest.raises(InvalidInputError, match="the same steps on both arms, got 2 and 1"):
        test.look(champion, challenger[:1])


def test_replayed_traffic_with_drift_keeps_false_rollbacks_low_only_per_step() -> None:
    """Failure rate 0.1 then 0.35 in blocks of 20,000 requests; the challenger is the champion."""
    failures = np.random.default_rng(0).random(200_000) < np.repeat(np.tile([0.1, 0.35], 5), 20_000)
    replay = Replay(failures, failures)
    plan = RolloutPlan(steps=(5, 50, 100), batch=500, min_step_requests=1_000, max_requests=200_000)
    by_step = simulate(SequentialRule(MixtureSPRT()), replay=replay, rollouts=100, plan=plan, seed=1)
    pooled = simulate(
        SequentialRule(MixtureSPRT(), by_step=False), replay=replay, rollouts=100, plan=plan, seed=1
    )
    assert by_step.share(Outcome.ROLLED_BACK) <= 0.05
    assert pooled.share(Outcome.ROLLED_BACK) > 0.2


def test_a_replay_needs_both_outcomes_and_excludes_rates() -> None:
    with pytest.raises(InvalidInputError, match="one outcome per request for both models, got 2 and 1"):
        Replay(np.array([True, False]), np.array([True]))
    replay = Replay(np.array([True, False]), np.array([True, False]))
    with pytest.raises(InvalidInputError, match="either the two failure rates or a replay, not both"):
        simulate(SequentialRule(), champion_failure_rate=0.2, replay=replay)
