"""Decision quality of progressive rollouts: the always-valid test against fixed-threshold rules.

Run: ``.venv/bin/python bench/loop/decisions.py [--rollouts 200] [--accuracy 0.80] [--worse 0.02]``.

Two challengers go through the same rollout plan (5 % → 25 % → 50 % → 100 % of a request stream,
looked at after every batch of 500 requests, each step at least 1,000 challenger requests):

* **identical** to the champion (same accuracy): every rollback is a false rollback;
* **worse** by ``--worse`` points of accuracy: every promotion is a miss.

Each request's outcome is Bernoulli at the arm's accuracy; 0.80 is the flights demo's level (its
champion's realized weekly accuracy ranges 0.72-0.89 from August to November). With ``--replay``
the outcomes are real instead: a LightGBM model trained on January-March flights
(``bench/monitor/flights_estimation.py``'s data and model, about a minute to build) answers the
166,668 July-December flights in departure order; the identical challenger is that model, the worse
one is that model with 2 % more of its answers made wrong at random; each rollout starts at a random
flight. Rules, on the same seeds:

* ``mSPRT (always valid)``: ``mlprod.loop.MixtureSPRT`` (alpha 0.05, effect 0.02, margin 0.01) on
  the counts of each step, combined;
* ``mSPRT, steps pooled``: the same on counts pooled over the steps (biased when the accuracy drifts
  while the challenger's share grows: compare the two under ``--replay``);
* ``fixed threshold, every look``: at every look (500 requests) a check fails when the challenger's
  error rate over those requests exceeds the champion's by more than 2 points; 5 failed checks roll
  back (Flagger's ``threshold: 5``);
* ``fixed threshold (Flagger-style)``: the same check every 10 looks, on the 5,000 requests since
  the previous check;
* ``fixed threshold, 5 pts, 1 check``: the same checks with a 5-point tolerance, one failure rolls
  back;
* ``z-test at every look``: a one-sided two-proportion z-test at 0.05 recomputed at every look.

Printed: per rule and challenger, the share of rollouts promoted, rolled back and inconclusive,
the median requests (all, and challenger's) until the decision, and the CPU seconds; then the goal
lines of issue 21: false rollbacks <= 5 % (identical), rolled back in >= 95 % (worse).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mlprod.loop import (
    FixedThreshold,
    MixtureSPRT,
    Outcome,
    PeekingZTest,
    Replay,
    RolloutPlan,
    Rule,
    SequentialRule,
    SimulationResult,
    simulate,
)

BENCH = Path(__file__).resolve().parents[1]
GOAL_FALSE_ROLLBACK = 0.05
GOAL_DETECTION = 0.95


def _rules(alpha: float) -> list[Rule]:
    return [
        SequentialRule(MixtureSPRT(alpha=alpha, effect=0.02, margin=0.01)),
        SequentialRule(
            MixtureSPRT(alpha=alpha, effect=0.02, margin=0.01), name="mSPRT, steps pooled", by_step=False
        ),
        FixedThreshold(tolerance=0.02, failed_checks=5, interval=1, name="fixed threshold, every look"),
        FixedThreshold(tolerance=0.02, failed_checks=5, interval=10),
        FixedThreshold(tolerance=0.05, failed_checks=1, interval=10, name="fixed threshold, 5 pts, 1 check"),
        PeekingZTest(alpha=alpha),
    ]


def flights_replay(worse: float, seed: int) -> tuple[np.ndarray, dict[str, Replay]]:
    """Per-request failures of a LightGBM model trained on January-March flights, over the July-December
    flights in departure order (``bench/monitor/flights_estimation.py``'s data and model), and the two
    challengers: the same model, and one whose answers are wrong on ``worse`` more of the requests."""
    sys.path.insert(0, str(BENCH / "monitor"))
    from flights_estimation import load, train

    frame = load(1.0, seed)
    frame["score"] = train(frame, 100, seed)
    served = frame[frame["month"] >= 7]
    failures = ((served["score"] > 0.5).astype(np.int8) != served["label"]).to_numpy()
    flip = np.random.default_rng(seed).random(len(failures)) < worse / (1 - failures.mean())
    return failures, {
        "identical": Replay(failures, failures),
        f"worse {worse:.0%}": Replay(failures, failures | flip),
    }


def _median(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _row(name: str, challenger: str, result: SimulationResult, seconds: float) -> str:
    decided = Outcome.ROLLED_BACK if challenger.startswith("worse") else Outcome.PROMOTED
    return (
        f"{name:<32} {challenger:<12} {result.share(Outcome.PROMOTED):>9.1%} "
        f"{result.share(Outcome.ROLLED_BACK):>11.1%} {result.share(Outcome.INCONCLUSIVE):>12.1%} "
        f"{_median(result.median_requests(decided)):>15} "
        f"{_median(result.median_challenger_requests(decided)):>15} {seconds:>7.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--accuracy", type=float, default=0.80, help="champion accuracy")
    parser.add_argument("--worse", type=float, default=0.02, help="accuracy drop of the worse challenger")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=500, help="requests between two looks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--replay", action="store_true", help="replay real per-request outcomes of a flights model (Jul-Dec)"
    )
    args = parser.parse_args()

    plan = RolloutPlan(
        steps=(5, 25, 50, 100), batch=args.batch, min_step_requests=1_000, max_requests=400_000
    )
    champion = 1 - args.accuracy
    challengers = {"identical": champion, f"worse {args.worse:.0%}": champion + args.worse}
    replays: dict[str, Replay] = {}
    if args.replay:
        failures, replays = flights_replay(args.worse, args.seed)
        extra = replays[f"worse {args.worse:.0%}"].challenger_failures.mean() - failures.mean()
        print(
            f"replayed traffic: {len(failures):,} flights of Jul-Dec 2013 in departure order, champion "
            f"accuracy {1 - failures.mean():.3f}; the worse challenger fails on {extra:.3f} more of them"
        )
    print(
        f"{args.rollouts} rollouts per cell; steps {list(plan.steps)} %, a look every {plan.batch} requests, "
        f">= {plan.min_step_requests} challenger requests per step, at most {plan.max_requests:,} requests; "
        + (
            "outcomes replayed"
            if args.replay
            else f"Bernoulli outcomes, champion accuracy {args.accuracy:.2f}"
        )
    )
    print(
        f"{'rule':<32} {'challenger':<12} {'promoted':>9} {'rolled back':>11} {'inconclusive':>12} "
        f"{'median requests':>15} {'of challenger':>15} {'CPU s':>7}"
    )
    results: dict[tuple[str, str], SimulationResult] = {}
    for rule in _rules(args.alpha):
        for label, rate in challengers.items():
            start = time.process_time()
            if args.replay:
                result = simulate(
                    rule, replay=replays[label], rollouts=args.rollouts, plan=plan, seed=args.seed
                )
            else:
                result = simulate(
                    rule,
                    champion_failure_rate=champion,
                    challenger_failure_rate=rate,
                    rollouts=args.rollouts,
                    plan=plan,
                    seed=args.seed,
                )
            results[rule.name, label] = result
            print(_row(rule.name, label, result, time.process_time() - start))
    print("(median requests: until the promotion for 'identical', until the rollback for 'worse')")
    worse = next(label for label in challengers if label.startswith("worse"))
    print()
    for rule in _rules(args.alpha):
        false_rollbacks = results[rule.name, "identical"].share(Outcome.ROLLED_BACK)
        caught = results[rule.name, worse]
        verdict = (
            "met"
            if false_rollbacks <= GOAL_FALSE_ROLLBACK and caught.share(Outcome.ROLLED_BACK) >= GOAL_DETECTION
            else "not met"
        )
        print(
            f"{rule.name}: false rollbacks {false_rollbacks:.1%} (goal <= {GOAL_FALSE_ROLLBACK:.0%}), "
            f"{worse} rolled back {caught.share(Outcome.ROLLED_BACK):.1%} (goal >= {GOAL_DETECTION:.0%}) "
            f"after a median {_median(caught.median_requests(Outcome.ROLLED_BACK))} requests: goal {verdict}"
        )


if __name__ == "__main__":
    main()
