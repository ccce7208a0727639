"""Utility scoring: hand-computed AMRS and utilities, the Dynascore reference, snapshots, edge cases."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.evaluate.profiles import Profile, parse_constraint
from mlprod.evaluate.utility import PoolSnapshot, ScoredCandidate, build_snapshot, pareto_front, score

# Binary-exact AUCs keep the hand arithmetic exact: Δauc = 0.25 then 0.125.
LATENCY_POOL = {
    "A": {"auc": 0.5, "latency_p99_ms": 10.0},
    "B": {"auc": 0.75, "latency_p99_ms": 30.0},
    "C": {"auc": 0.875, "latency_p99_ms": 80.0},
}
LATENCY = Profile(name="latency", primary="auc", weights={"auc": 1, "latency_p99_ms": 1})

NLI_METRICS = ("Perf", "Throughput", "Memory", "Fairness", "Robustness")
NLI = {
    "DeBERTa": (69.54, 7.41, 5.71, 91.97, 75.70),
    "RoBERTa": (69.07, 9.23, 4.82, 90.94, 74.82),
    "ALBERT": (67.29, 9.60, 2.18, 89.94, 74.12),
    "T5": (67.16, 7.10, 10.62, 91.89, 73.47),
    "BERT": (64.82, 9.39, 4.13, 92.11, 66.38),
    "Majority Baseline": (32.41, 77.33, 1.15, 100.00, 100.00),
    "FastText": (31.29, 73.94, 2.20, 83.23, 69.14),
}


def by_name(scored: list[ScoredCandidate]) -> dict[str, ScoredCandidate]:
    return {candidate.name: candidate for candidate in scored}


def utilities(scored: list[ScoredCandidate]) -> dict[str, float | None]:
    return {candidate.name: candidate.utility for candidate in scored}


def nli(memory: str, offset: float = 0.0) -> tuple[dict[str, dict[str, float]], Profile]:
    pool = {
        name: {**dict(zip(NLI_METRICS, row, strict=True)), "Memory": row[2] + offset}
        for name, row in NLI.items()
    }
    directions = {metric: "higher" for metric in NLI_METRICS} | {"Memory": memory}
    weights = {"Perf": 4, "Throughput": 1, "Memory": 1, "Fairness": 1, "Robustness": 1}
    return pool, Profile(name=f"nli-{memory}", primary="Perf", weights=weights, directions=directions)


def test_amrs_and_utilities_of_a_tiny_pool_by_hand() -> None:
    pool = {
        "A": {"auc": 0.5, "throughput_rows_per_s": 100.0},
        "B": {"auc": 0.75, "throughput_rows_per_s": 50.0},
        "C": {"auc": 0.875, "throughput_rows_per_s": 40.0},
    }
    profile = Profile(name="tiny", primary="auc", weights={"auc": 3, "throughput_rows_per_s": 1})
    scored, snapshot = score(pool, profile, method="mean")
    # Sorted by auc: A, B, C. |Δthroughput| / Δauc = 50 / 0.25 = 200 and 10 / 0.125 = 80.
    assert snapshot.amrs == {"auc": 1.0, "throughput_rows_per_s": 140.0}
    assert snapshot.candidates == ("A", "B", "C")
    # Weights normalize to 3/4 and 1/4.
    expected = {
        "C": 0.75 * 0.875 + 0.25 * 40 / 140,
        "B": 0.75 * 0.75 + 0.25 * 50 / 140,
        "A": 0.75 * 0.5 + 0.25 * 100 / 140,
    }
    assert [c.name for c in scored] == ["C", "B", "A"]
    assert [c.rank for c in scored] == [1, 2, 3]
    assert utilities(scored) == pytest.approx(expected, abs=1e-15)
    assert by_name(scored)["A"].contributions == pytest.approx(
        {"auc": 0.375, "throughput_rows_per_s": 25 / 140}
    )


def test_a_lower_is_better_metric_by_hand() -> None:
    scored, snapshot = score(LATENCY_POOL, LATENCY, method="mean")
    # |Δlatency| / Δauc = 20 / 0.25 = 80 and 50 / 0.125 = 400; latency enters negated.
    assert snapshot.amrs == {"auc": 1.0, "latency_p99_ms": 240.0}
    expected = {"A": 0.25 - 10 / 480, "B": 0.375 - 30 / 480, "C": 0.4375 - 80 / 480}
    assert utilities(scored) == pytest.approx(expected, abs=1e-15)
    assert [c.name for c in scored] == ["B", "C", "A"]
    # Read the wrong way round, C's extra latency would have made it the winner.
    wrong = Profile(
        name="wrong", primary="auc", weights=LATENCY.weights, directions={"latency_p99_ms": "higher"}
    )
    assert score(LATENCY_POOL, wrong, method="mean")[0][0].name == "C"


def test_the_dynascore_notebook_is_reproduced_with_its_memory_sign() -> None:
    pool, profile = nli("higher", offset=16)
    scored, snapshot = score(pool, profile, method="mean")
    assert [c.name for c in scored] == list(NLI)  # the notebook's order
    deberta = by_name(scored)["DeBERTa"]
    assert deberta.utility == pytest.approx(38.730978, abs=1e-6)
    assert by_name(scored)["FastText"].utility == pytest.approx(20.941156, abs=1e-6)
    # The notebook's converted columns are contributions divided by the normalized weight 1/8.
    assert deberta.contributions["Throughput"] * 8 == pytest.approx(1.511594, abs=1e-6)
    assert deberta.contributions["Memory"] * 8 == pytest.approx(1.806587, abs=1e-6)
    assert snapshot.amrs["Perf"] == 1.0


def test_weighted_amrs_by_hand_and_its_indifference_to_a_near_tie() -> None:
    _, snapshot = score(LATENCY_POOL, LATENCY)
    # Σ|Δlatency| / ΣΔauc = (20 + 50) / (0.25 + 0.125)
    assert snapshot.amrs["latency_p99_ms"] == pytest.approx(70 / 0.375)
    # A near-tie: D is 0.0001 AUC better than C and 10 ms slower.
    tied = {**LATENCY_POOL, "D": {"auc": 0.8751, "latency_p99_ms": 90.0}}
    mean_scale = score(tied, LATENCY, method="mean")[1].amrs["latency_p99_ms"]
    weighted_scale = score(tied, LATENCY)[1].amrs["latency_p99_ms"]
    assert mean_scale > 100 * 240  # one tiny Δauc swamps the mean: latency all but vanishes
    assert weighted_scale == pytest.approx(80 / 0.3751)  # barely moved from 186.7
    ranked = [c.name for c in score(tied, LATENCY)[0]]
    assert ranked.index("D") > ranked.index("C")  # 10 ms for 0.0001 AUC is a bad trade


def test_more_memory_costs_utility_only_when_memory_is_lower_is_better() -> None:
    for memory, offset, sign in (("higher", 16.0, +1), ("lower", 0.0, -1)):
        pool, profile = nli(memory, offset)
        _, snapshot = score(pool, profile)
        fatter = {"DeBERTa": pool["DeBERTa"], "DeBERTa-fat": {**pool["DeBERTa"]}}
        fatter["DeBERTa-fat"]["Memory"] += 4.0
        scored = by_name(score(fatter, profile, snapshot=snapshot)[0])
        gain = scored["DeBERTa-fat"].utility - scored["DeBERTa"].utility
        # 4 GB more, at weight 1/8, in units of the pool's AMRS for memory (same for either sign).
        assert gain == pytest.approx(sign * 4 / (8 * snapshot.amrs["Memory"]), rel=1e-9)
    assert nli("lower")[1].direction("Memory") == "lower"
    assert score(*nli("lower"))[1].amrs["Memory"] == pytest.approx(
        score(*nli("higher", 16))[1].amrs["Memory"]
    )


@pytest.mark.parametrize("seed", range(25))
def test_a_dominating_model_ranks_first_for_any_positive_weights(seed: int) -> None:
    rng = np.random.default_rng(seed)
    metrics = ["auc", "log_loss", "latency_p99_ms", "throughput_rows_per_s"]
    pool = {
        f"m{i}": {
            "auc": rng.uniform(0.6, 0.9),
            "log_loss": rng.uniform(0.3, 0.7),
            "latency_p99_ms": rng.uniform(1, 50),
            "throughput_rows_per_s": rng.uniform(1e3, 1e5),
        }
        for i in range(6)
    }
    pool["best"] = {
        "auc": max(row["auc"] for row in pool.values()) + 0.01,
        "log_loss": min(row["log_loss"] for row in pool.values()) - 0.01,
        "latency_p99_ms": min(row["latency_p99_ms"] for row in pool.values()) - 0.5,
        "throughput_rows_per_s": max(row["throughput_rows_per_s"] for row in pool.values()) + 1,
    }
    weights = dict(zip(metrics, rng.uniform(0.01, 10, len(metrics)).tolist(), strict=True))
    profile = Profile(name="random", primary=str(rng.choice(metrics)), weights=weights)
    scored, _ = score(pool, profile)
    assert (scored[0].name, scored[0].rank) == ("best", 1)
    assert [c.name for c in scored if c.pareto] == ["best"]


def test_scoring_new_candidates_in_an_old_snapshot_leaves_old_utilities_alone() -> None:
    old_scored, old = score(LATENCY_POOL, LATENCY, method="mean")
    frozen = json.loads(json.dumps(old.to_dict()))
    pool = {**LATENCY_POOL, "D": {"auc": 0.625, "latency_p99_ms": 50.0}}

    in_old_units, returned = score(pool, LATENCY, snapshot=old)
    assert returned is old
    assert {name: utilities(in_old_units)[name] for name in LATENCY_POOL} == utilities(old_scored)
    assert utilities(in_old_units)["D"] == pytest.approx(0.3125 - 50 / 480, abs=1e-15)

    restored = PoolSnapshot.from_dict(json.loads(json.dumps(old.to_dict())))
    assert restored == old
    assert utilities(score(pool, LATENCY, snapshot=restored)[0]) == utilities(in_old_units)
    # The snapshot alone recomputes the original scores exactly.
    assert utilities(score(restored.metrics, LATENCY, snapshot=restored)[0]) == utilities(old_scored)

    _, fresh = score(pool, LATENCY, method="mean")
    # Sorted A, D, B, C: |Δlatency| / Δauc = 40 / 0.125, 20 / 0.125, 50 / 0.125.
    assert fresh.amrs["latency_p99_ms"] == pytest.approx(880 / 3)
    assert fresh.candidates == ("A", "D", "B", "C")
    assert old.to_dict() == frozen


def test_a_snapshot_of_another_profile_definition_is_refused() -> None:
    _, snapshot = score(LATENCY_POOL, LATENCY)
    heavier = Profile(name="latency", primary="auc", weights={"auc": 1, "latency_p99_ms": 2})
    with pytest.raises(InvalidInputError, match="different definition"):
        score(LATENCY_POOL, heavier, snapshot=snapshot)
    with pytest.raises(InvalidInputError, match="Not a pool snapshot"):
        PoolSnapshot.from_dict({"profile": "latency"})


def test_constraints_filter_the_ranking_but_keep_the_utility() -> None:
    profile = Profile(
        name="fast",
        primary="auc",
        weights=LATENCY.weights,
        constraints=(parse_constraint("latency_p99_ms <= 50"), parse_constraint("memory_mb < 100")),
    )
    pool = {name: {**row, "memory_mb": 10.0} for name, row in LATENCY_POOL.items()}
    del pool["A"]["memory_mb"]
    scored, _ = score(pool, profile, method="mean")
    assert [(c.name, c.rank) for c in scored] == [("B", 1), ("C", None), ("A", None)]
    assert by_name(scored)["C"].failures == ("latency_p99_ms = 80 > 50",)
    assert by_name(scored)["A"].failures == ("memory_mb missing",)  # constraint-only metric: not unscorable
    assert utilities(scored) == pytest.approx(
        {"A": 0.25 - 10 / 480, "B": 0.375 - 30 / 480, "C": 0.4375 - 80 / 480}
    )


def test_a_missing_or_nan_metric_makes_a_candidate_unscorable() -> None:
    pool: dict[str, Mapping[str, float | None]] = {
        **LATENCY_POOL,
        "D": {"auc": 0.99, "latency_p99_ms": None},
        "E": {"auc": math.nan, "latency_p99_ms": 1.0},
        "F": {"auc": 0.99},
    }
    scored, snapshot = score(pool, LATENCY, method="mean")
    assert [c.name for c in scored] == ["B", "C", "A", "D", "E", "F"]
    unscorable = scored[3:]
    assert [c.missing for c in unscorable] == [("latency_p99_ms",), ("auc",), ("latency_p99_ms",)]
    assert all(c.utility is None and c.rank is None and not c.pareto for c in unscorable)
    assert all(c.contributions == {} for c in unscorable)
    assert snapshot.candidates == ("A", "B", "C")
    assert snapshot.amrs == score(LATENCY_POOL, LATENCY, method="mean")[1].amrs
    assert "D left out: missing latency_p99_ms" in snapshot.notes


def test_a_value_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="Candidate 'A': latency_p99_ms must be a number, got 'fast'"):
        score({"A": {"auc": 0.5, "latency_p99_ms": "fast"}}, LATENCY)


def test_a_constant_metric_contributes_nothing() -> None:
    pool = {name: {**row, "latency_p99_ms": 7.0} for name, row in LATENCY_POOL.items()}
    scored, snapshot = score(pool, LATENCY)
    assert snapshot.amrs["latency_p99_ms"] == 0.0
    assert any(note.startswith("latency_p99_ms contributes 0") for note in snapshot.notes)
    assert all(c.contributions["latency_p99_ms"] == 0.0 for c in scored)
    assert utilities(scored) == {"C": 0.4375, "B": 0.375, "A": 0.25}


def test_equal_primary_falls_back_to_range_scaling_with_a_note() -> None:
    pool = {
        "A": {"auc": 0.8, "latency_p99_ms": 10.0},
        "B": {"auc": 0.8, "latency_p99_ms": 20.0},
        "C": {"auc": 0.8 + 1e-9, "latency_p99_ms": 40.0},  # within the 1e-4 cutoff: still "equal"
    }
    scored, snapshot = score(pool, LATENCY)
    assert snapshot.amrs == {"auc": 1.0, "latency_p99_ms": 30.0}
    assert any("scaled by their range" in note for note in snapshot.notes)
    assert [c.name for c in scored] == ["A", "B", "C"]
    assert by_name(scored)["A"].contributions["latency_p99_ms"] == pytest.approx(-0.5 * 10 / 30)
    assert by_name(scored)["C"].utility == pytest.approx(0.5 * (0.8 + 1e-9) - 0.5 * 40 / 30)


def test_a_single_candidate_scores_its_weighted_primary() -> None:
    profile = Profile(name="one", primary="auc", weights={"auc": 3, "latency_p99_ms": 1})
    scored, snapshot = score({"only": {"auc": 0.8, "latency_p99_ms": 12.0}}, profile)
    (only,) = scored
    assert only.utility == pytest.approx(0.75 * 0.8)
    assert (only.rank, only.pareto, only.contributions["latency_p99_ms"]) == (1, True, 0.0)
    assert any("fewer than two scorable candidates" in note for note in snapshot.notes)
    assert score({}, profile)[0] == []
    assert build_snapshot({}, profile).candidates == ()


def test_a_lower_is_better_primary_sorts_the_other_way() -> None:
    profile = Profile(name="reg", primary="rmse", weights={"rmse": 1, "latency_p99_ms": 1})
    pool = {
        "A": {"rmse": 3.0, "latency_p99_ms": 10.0},
        "B": {"rmse": 2.0, "latency_p99_ms": 20.0},
        "C": {"rmse": 1.0, "latency_p99_ms": 60.0},
    }
    scored, snapshot = score(pool, profile)
    assert snapshot.candidates == ("A", "B", "C")  # worst rmse first
    assert snapshot.amrs["latency_p99_ms"] == 25.0  # mean of 10 / 1 and 40 / 1
    assert utilities(scored) == pytest.approx({"A": -1.5 - 0.2, "B": -1.0 - 0.4, "C": -0.5 - 1.2})


def test_pareto_front_by_hand() -> None:
    assert pareto_front({"a": [1, 2], "b": [2, 1], "c": [1, 1], "d": [2, 1]}) == {"a", "b", "d"}
    assert pareto_front({"top": [3, 3], "x": [3, 2], "y": [1, 3]}) == {"top"}
    assert pareto_front({}) == set()
    with pytest.raises(InvalidInputError, match="equal length"):
        pareto_front({"a": [1, 2], "b": [1]})
