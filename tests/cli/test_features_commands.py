"""``mlprod features``: list, show, frame, materialize and lookup in a real workspace, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from mlprod.workspace import Workspace
from tests.cli.conftest import Run
from tests.features.workspace_fixture import prepare, write_entity_rows


def test_features_commands_end_to_end(mlprod: Run, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        prepare(ws)
    listed = mlprod("features", "list", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert "shop-context" in listed.stdout and "signals" in listed.stdout and "visits" in listed.stdout
    shown = mlprod("features", "show", "shop-context", cwd=root)
    definition = json.loads(shown.stdout)
    assert len(definition["version"]) == 64 and definition["views"][0]["ttl"] == "2d"

    write_entity_rows(root / "rows.parquet")
    framed = mlprod("features", "frame", "shop-context", "rows.parquet", "-o", "frame.parquet", cwd=root)
    assert framed.returncode == 0, framed.stderr
    frame = pq.read_table(root / "frame.parquet").to_pydict()
    assert frame["shop"] == ["a", "e", "b"] and frame["signal"][1] is None and frame["visits_1d"][1] == 0
    assert frame["visits_1d"][0] == 6  # hours 0..5 of the first day
    out_of_core = mlprod(
        "features",
        "frame",
        "shop-context",
        "rows.parquet",
        "-o",
        "asof.parquet",
        "--method",
        "asof",
        cwd=root,
    )
    assert out_of_core.returncode == 0, out_of_core.stderr
    assert pq.read_table(root / "asof.parquet").to_pydict() == frame

    materialized = mlprod("features", "materialize", "shop-context", "--at", "2026-01-01T05:00:00", cwd=root)
    assert materialized.returncode == 0, materialized.stderr
    looked = mlprod("features", "lookup", "shop-context", "shop=a", "--at", "2026-01-01T05:00:00", cwd=root)
    online = json.loads(looked.stdout)
    assert online["missing"] == [] and online["values"]["signal"] == frame["signal"][0]
    unknown = json.loads(mlprod("features", "lookup", "shop-context", "shop=zz", cwd=root).stdout)
    assert unknown["missing"] == ["signals", "visits"] and unknown["values"]["signal"] is None


def test_features_errors_are_one_line_and_exit_2(mlprod: Run, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.init(root).close()
    unconfigured = mlprod("features", "list", cwd=root)
    assert unconfigured.returncode == 2 and "set [features] module in mlprod.toml" in unconfigured.stderr
    with Workspace.open(root) as ws:
        prepare(ws)
    unknown = mlprod("features", "show", "nope", cwd=root)
    assert unknown.returncode == 2 and "no feature set or view 'nope'" in unknown.stderr
    bad_key = mlprod("features", "lookup", "shop-context", "shop", cwd=root)
    assert bad_key.returncode == 2 and "must be written column=value" in bad_key.stderr
    missing_key = mlprod("features", "lookup", "shop-context", "store=a", cwd=root)
    assert missing_key.returncode == 2 and "lookup of view 'signals' needs key 'shop'" in missing_key.stderr
    no_time = mlprod("features", "frame", "signals", "nope.parquet", "-o", "x.parquet", cwd=root)
    assert no_time.returncode == 2 and "entity rows: no file" in no_time.stderr
    write_entity_rows(root / "rows.parquet")
    bad_method = mlprod(
        "features", "frame", "signals", "rows.parquet", "-o", "x.parquet", "--method", "x", cwd=root
    )
    assert bad_method.returncode == 2 and "method must be 'auto', 'in_memory' or 'asof'" in bad_method.stderr


def test_lookup_at_takes_the_time_forms_of_every_other_command(mlprod: Run, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        prepare(ws)
    materialized = mlprod("features", "materialize", "shop-context", "--at", "2026-01-01T05:00Z", cwd=root)
    assert materialized.returncode == 0, materialized.stderr

    def lookup(at: str) -> dict[str, object]:
        result = mlprod("features", "lookup", "shop-context", "shop=a", "--at", at, cwd=root)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    naive = lookup("2026-01-01T05:00:00")
    assert naive["missing"] == []
    for same in (
        "2026-01-01T05:00:00Z",
        "2026-01-01T05:00Z",
        "2026-01-01T07:00:00+02:00",
        "2026-01-01 05:00",
    ):
        assert lookup(same) == naive, same
    assert lookup("2026-01-02") == lookup("2026-01-02T00:00:00Z")
    bad = mlprod("features", "lookup", "shop-context", "shop=a", "--at", "yesterday", cwd=root)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --at 'yesterday' is not a date or time; use e.g. 2013-08-01, 2013-08-01T08:00, "
        "2013-08-01T08:00:00Z or 2013-08-01T10:00+02:00"
    )
