"""Routing plans: validation, sticky canary buckets, and the stored history of every change."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.models import ModelVersion, Registry
from mlprod.serve import RoutePlan, RouteStore
from mlprod.serve.routing import bucket_of
from mlprod.workspace import Workspace
from tests.conftest import train_toy


def test_the_canary_share_follows_the_percentage_and_keys_stay_put() -> None:
    plan = RoutePlan("m", canary="/2", canary_percent=10.0)
    routes = [plan.choose(f"customer-{i}")[1] for i in range(20_000)]
    assert routes.count("canary") / len(routes) == pytest.approx(0.10, abs=0.01)
    assert all(plan.choose(f"customer-{i}") == plan.choose(f"customer-{i}") for i in range(100))
    wider = RoutePlan("m", canary="/2", canary_percent=30.0)  # raising the share only adds keys
    assert all(wider.choose(f"customer-{i}")[1] == "canary" for i in range(2000) if routes[i] == "canary")


def test_without_a_key_the_choice_is_random_but_keeps_the_share() -> None:
    plan = RoutePlan("m", canary="/2", canary_percent=50.0)
    routes = [plan.choose(None)[1] for _ in range(4000)]
    assert routes.count("canary") / len(routes) == pytest.approx(0.5, abs=0.05)


def test_zero_and_full_canary() -> None:
    assert {RoutePlan("m", canary="/2", canary_percent=0).choose(str(i))[1] for i in range(500)} == {
        "champion"
    }
    full = RoutePlan("m", canary="@next", canary_percent=100)
    assert {full.choose(str(i)) for i in range(500)} == {("@next", "canary")}


def test_buckets_are_stable_across_processes() -> None:
    code = "from mlprod.serve.routing import bucket_of; print(bucket_of('customer-42'))"
    for seed in ("1", "2"):  # Python's own str hash would differ between these processes
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert int(out.stdout) == bucket_of("customer-42")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"canary": "2"}, "must be '@ALIAS' or '/VERSION'"),
        ({"champion": "@"}, "must be '@ALIAS' or '/VERSION'"),
        ({"canary": "/x"}, "version"),
        ({"canary": "/2", "canary_percent": 120}, "within 0..100"),
        ({"canary_percent": 5}, "no canary target"),
        ({"shadows": ["/2", "/2"]}, "listed twice"),
        ({"shadows": "/2"}, "must be a list"),
        ({"canary_percent": "ten"}, "must be a number"),
        ({"champion": 3}, "must be a string"),
        ({"canary": "/2", "weight": 5}, "unknown routing field"),
        ({"sticky_key": " "}, "must name a request field"),
    ],
)
def test_bad_plans_are_refused_naming_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        RoutePlan.from_dict("m", fields)


@pytest.fixture
def two_versions(workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame) -> Workspace:
    trained = train_toy(frame, rounds=3)
    Registry(workspace).register("toy", trained.model, signature=trained.signature)
    return workspace


def test_every_change_is_stored_with_its_history(two_versions: Workspace) -> None:
    store = RouteStore(two_versions)
    assert store.get("toy") is None
    first = store.set(RoutePlan("toy", canary="/2", canary_percent=5), why="canary v2")
    second = store.set(RoutePlan("toy", canary="/2", canary_percent=50, shadows=("/1",)), why="widen")
    assert store.get("toy") == RoutePlan("toy", canary="/2", canary_percent=50, shadows=("/1",))
    cleared = store.clear("toy", why="done")
    assert store.get("toy") is None and store.all() == {}
    history = store.history("toy")
    assert [c.revision for c in history] == [1, 2, 3] == [first.revision, second.revision, cleared.revision]
    assert history[0].before is None and history[0].after["canary_percent"] == 5
    assert history[1].before == history[0].after and history[2].after is None
    assert [c.why for c in history] == ["canary v2", "widen", "done"]
    assert all(c.who for c in history)


def test_targets_must_exist_and_nothing_is_stored_otherwise(two_versions: Workspace) -> None:
    store = RouteStore(two_versions)
    with pytest.raises(NotFoundError, match="no version 9"):
        store.set(RoutePlan("toy", canary="/9", canary_percent=5))
    with pytest.raises(NotFoundError, match="no alias 'next'"):
        store.set(RoutePlan("toy", shadows=("@next",)))
    with pytest.raises(NotFoundError, match="ghost"):
        store.set(RoutePlan("ghost"))
    with pytest.raises(NotFoundError, match="has no routing plan"):
        store.clear("toy")
    assert store.history("toy") == []


def test_setting_the_same_plan_twice_is_refused(two_versions: Workspace) -> None:
    store = RouteStore(two_versions)
    store.set(RoutePlan("toy", canary="/2", canary_percent=5))
    with pytest.raises(InvalidInputError, match="nothing changed"):
        store.set(RoutePlan("toy", canary="/2", canary_percent=5))
    assert len(store.history("toy")) == 1
