"""``mlprod data`` end to end through the real entry point: the versioned-table workflow of a user."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq

from tests.cli.conftest import Run


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_create_commit_log_diff_branch_merge_checkout(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    ws = ["-C", "ws"]
    first = write(tmp_path / "jan.csv", "id,city,temp\n1,Paris,3.5\n2,Oslo,-4.0\n3,Rome,9.0\n")
    created = mlprod(*ws, "data", "create", "weather", "--key", "id", "--from", str(first), "--buckets", "4")
    assert created.returncode == 0, created.stderr
    assert "table weather created (key id, 4 buckets): 3 rows at" in created.stdout
    mlprod(*ws, "data", "tag", "weather", "v1")

    feb = write(tmp_path / "feb.csv", "id,city,temp\n2,Oslo,-6.0\n4,Lima,20.0\n")
    committed = mlprod(*ws, "data", "commit", "weather", str(feb), "-m", "february")
    assert re.search(r"weather main → [0-9a-f]{12}: \+1 -0 ~1 rows, 4 in total", committed.stdout)
    again = mlprod(*ws, "data", "commit", "weather", str(feb))
    assert "nothing to commit" in again.stdout

    log = mlprod(*ws, "data", "log", "weather").stdout
    assert log.index("february") < log.index("initial data") < log.index("create table")

    diff = mlprod(*ws, "data", "diff", "weather", "v1", "main").stdout
    assert "+1 added, -0 removed, ~1 changed" in diff
    assert re.search(r"2\s+│ temp\s+│ -4\s+│ -6", diff) and "Lima" in diff

    assert mlprod(*ws, "data", "branch", "weather", "fix", "--from", "v1").returncode == 0
    fix = write(tmp_path / "fix.csv", "id,city,temp\n2,Oslo,-5.0\n3,Roma,9.0\n")
    mlprod(*ws, "data", "commit", "weather", str(fix), "--branch", "fix")
    conflict = mlprod(*ws, "data", "merge", "weather", "fix")
    assert conflict.returncode == 2
    assert "1 conflict(s), nothing was committed" in conflict.stderr
    assert re.search(r"\{'id': 2\}\s+│ temp\s+│ -4.0\s+│ -6.0\s+│ -5.0", conflict.stderr)
    merged = mlprod(*ws, "data", "merge", "weather", "fix", "--policy", "theirs")
    assert "merged fix into main" in merged.stdout and "1 conflicting key(s) resolved" in merged.stdout

    out = tmp_path / "now.parquet"
    checkout = mlprod(*ws, "data", "checkout", "weather", "-o", str(out))
    assert "4 rows written" in checkout.stdout
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert rows[2]["temp"] == -5.0 and rows[3]["city"] == "Roma" and rows[4]["city"] == "Lima"
    old = tmp_path / "v1.csv"
    mlprod(*ws, "data", "checkout", "weather", "--ref", "v1", "-o", str(old))
    assert old.read_text().count("\n") == 4

    listed = mlprod(*ws, "data", "list").stdout
    assert re.search(r"weather\s+│ id\s+│ 4\s+│", listed) and "fix, main" in listed and "v1" in listed
    branches = mlprod(*ws, "data", "branch", "weather").stdout
    assert "fix" in branches and "tag" in branches
    shown = mlprod(*ws, "data", "show", "weather").stdout
    assert "id (key)" in shown and "Lima" in shown


def test_expectations_validation_quarantine_skew_check_gc(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    ws = ["-C", "ws"]
    rows = "\n".join(f"{i},{'a' if i % 2 else 'b'},{i % 10}.5" for i in range(200))
    first = write(tmp_path / "first.csv", "id,kind,value\n" + rows + "\n")
    mlprod(*ws, "data", "create", "t", "-k", "id", "--from", str(first))
    expected = mlprod(*ws, "data", "expect", "t")
    assert expected.returncode == 0, expected.stderr
    assert "batches of 100 to 400 rows" in expected.stdout

    bad = "\n".join(f"{i},{'zzz' if i == 205 else 'a'},{999 if i == 206 else 1}" for i in range(200, 300))
    batch = write(tmp_path / "batch.csv", "id,kind,value\n" + bad + "\n")
    checked = mlprod(*ws, "data", "validate", "t", str(batch))
    assert checked.returncode == 2
    assert "kind  unknown_category  1" in checked.stdout and "value  above_maximum  1" in checked.stdout
    rejected = mlprod(*ws, "data", "commit", "t", str(batch), "--mode", "append")
    assert rejected.returncode == 2 and "nothing was committed" in rejected.stderr
    held = mlprod(*ws, "data", "commit", "t", str(batch), "--mode", "append", "--validation", "quarantine")
    assert held.returncode == 0, held.stderr
    assert "+98 -0 ~0 rows" in held.stdout and "quarantined 2 row(s) into table t.quarantine" in held.stdout

    skew = mlprod(*ws, "data", "skew", "t", "main~", "main")
    assert skew.returncode == 2 and "no branch, tag or commit 'main~'" in skew.stderr
    log = mlprod(*ws, "data", "log", "t").stdout
    first_commit = re.findall(r"([0-9a-f]{12})", log)[1]
    skew = mlprod(*ws, "data", "skew", "t", first_commit, "main")
    assert re.search(r"value\s+│ numeric", skew.stdout) and "kind" in skew.stdout

    flood = "\n".join(f"{i},a,1.5" for i in range(1000, 1300))
    check = mlprod(
        *ws, "data", "check", "t", str(write(tmp_path / "flood.csv", "id,kind,value\n" + flood + "\n"))
    )
    assert check.returncode == 0, check.stderr
    assert "duplicate_flood" in check.stdout

    gc = mlprod(*ws, "data", "gc", "--grace", "0")
    assert re.search(r"removed 0 object\(s\) \(0.0 MB\), kept \d+", gc.stdout)


def test_bad_inputs_are_one_line_errors(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    ws = ["-C", "ws"]
    nope = mlprod(*ws, "data", "log", "nope")
    assert nope.returncode == 2 and "table 'nope' not found (tables: none)" in nope.stderr
    broken = write(tmp_path / "broken.csv", "a,b\n1,2,3\n")
    result = mlprod(*ws, "data", "create", "x", "-k", "a", "--from", str(broken))
    assert result.returncode == 2 and f"cannot read {broken}" in result.stderr
    assert "nope" not in mlprod(*ws, "data", "list").stdout  # nothing created
    missing_key = write(tmp_path / "nokey.csv", "a,b\n1,2\n")
    result = mlprod(*ws, "data", "create", "x", "-k", "id", "--from", str(missing_key))
    assert result.returncode == 2 and "key column(s) id missing" in result.stderr
    wrong = mlprod(*ws, "data", "checkout", "x", "-o", str(tmp_path / "x.txt"))
    assert wrong.returncode == 2 and "must end in .parquet or .csv" in wrong.stderr


def test_fsck_and_gc_report_damage_and_gc_deletes_nothing_then(mlprod: Run, tmp_path: Path) -> None:
    import json
    import os

    mlprod("init", "ws")
    ws = ["-C", "ws"]
    first = write(tmp_path / "a.csv", "id,v\n1,1.0\n2,2.0\n3,3.0\n")
    assert (
        mlprod(*ws, "data", "create", "t", "--key", "id", "--from", str(first), "--buckets", "2").returncode
        == 0
    )
    clean = mlprod(*ws, "data", "fsck")
    assert clean.returncode == 0, clean.stderr
    assert re.search(
        r"checked 1 table\(s\), 1 ref\(s\), 2 commit\(s\), \d+ object\(s\) \(0.0 MB\): ok", clean.stdout
    )

    objects = tmp_path / "ws" / "artifacts" / "tables"
    debris = objects / "ab" / ("c" * 62)
    debris.parent.mkdir(exist_ok=True)
    debris.write_bytes(b"left by a killed writer")
    os.utime(debris, (1_000_000_000, 1_000_000_000))
    dry = mlprod(*ws, "data", "gc", "--dry-run")
    assert dry.returncode == 0 and "ab" + "c" * 62 in dry.stdout
    assert "would remove 1 object(s) (0.0 MB), kept" in dry.stdout and "nothing was deleted" in dry.stdout
    assert debris.exists()

    head = json.loads(mlprod(*ws, "data", "fsck", "--format", "json").stdout)
    assert head["ok"] is True and head["checked"]["commits"] == 2
    log = mlprod(*ws, "data", "log", "t").stdout
    short = re.findall(r"([0-9a-f]{12})\s+│", log)[0]
    manifest = next(
        p for p in objects.rglob("*") if p.is_file() and (p.parent.name + p.name).startswith(short)
    )
    manifest.unlink()
    damaged = mlprod(*ws, "data", "fsck", "--format", "json")
    assert damaged.returncode == 2
    report = json.loads(damaged.stdout)
    assert report["ok"] is False and [d["kind"] for d in report["damage"]] == ["missing-manifest"]
    text = mlprod(*ws, "data", "fsck", "t")
    assert text.returncode == 2 and "missing-manifest" in text.stdout and "1 problem(s) found" in text.stdout
    refused = mlprod(*ws, "data", "gc", "--grace", "0")
    assert refused.returncode == 2
    assert "error: gc deleted nothing: 1 commit(s) cannot be read completely" in refused.stderr
    assert f"t commit {short}" in refused.stderr and debris.exists()
    bad = mlprod(*ws, "data", "fsck", "--format", "yaml")
    assert bad.returncode == 2 and "--format must be text or json, got 'yaml'" in bad.stderr


def test_commit_refuses_what_a_table_cannot_hold_in_one_line_and_commits_nothing(
    mlprod: Run, tmp_path: Path
) -> None:
    import pyarrow as pa

    mlprod("init", "ws")
    ws = ["-C", "ws"]
    first = tmp_path / "first.parquet"
    pq.write_table(pa.table({"id": [1, 2], "price": pa.array([1.5, 2.0], pa.float32())}), first)
    assert mlprod(*ws, "data", "create", "prices", "--key", "id", "--from", str(first)).returncode == 0
    head = mlprod(*ws, "data", "log", "prices").stdout

    half = tmp_path / "half.parquet"
    pq.write_table(
        pa.table({"id": [1], "price": pa.array([1.5], pa.float32()), "w": pa.array([1], pa.float16())}), half
    )
    clash = write(tmp_path / "clash.csv", "id,price,Price\n1,1.5,9\n")
    lossy = write(tmp_path / "lossy.csv", "id,price\n1,0.1\n")
    refusals = {
        half: "error: table 'prices': column 'w' has type halffloat, which versioned tables do not store; "
        "cast it to float32",
        clash: "error: table 'prices': columns 'price' and 'Price' differ only by case",
        lossy: "error: table 'prices': column 'price' cannot be cast from double to float without changing "
        "1 value(s), e.g. row {'id': 1}: 0.1 -> 0.10000000149011612; nothing was changed",
    }
    for source, message in refusals.items():
        refused = mlprod(*ws, "data", "commit", "prices", str(source))
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(message), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        assert mlprod(*ws, "data", "log", "prices").stdout == head

    rounded = mlprod(*ws, "data", "commit", "prices", str(lossy), "--allow-lossy-cast")
    assert rounded.returncode == 0, rounded.stderr
    assert "rounded values to fit column(s): price" in rounded.stdout


def test_checkout_as_of_takes_the_shared_time_forms(mlprod: Run, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    mlprod("init", "ws")
    ws = ["-C", "ws"]
    first = write(tmp_path / "jan.csv", "id,temp\n1,3.5\n2,-4.0\n")
    assert mlprod(*ws, "data", "create", "weather", "--key", "id", "--from", str(first)).returncode == 0
    later = datetime.now(UTC) + timedelta(minutes=1)
    for text in (
        f"{later:%Y-%m-%dT%H:%M:%S}Z",
        f"{later.astimezone(timezone(timedelta(hours=2))).isoformat()}",
    ):
        out = tmp_path / "asof.parquet"
        result = mlprod(*ws, "data", "checkout", "weather", "--as-of", text, "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert pq.read_table(out).num_rows == 2
    bad = mlprod(*ws, "data", "checkout", "weather", "--as-of", "31/01/2026", "-o", str(tmp_path / "x.csv"))
    assert bad.returncode == 2
    assert "error: --as-of '31/01/2026' is not a date or time; use e.g. 2013-08-01" in bad.stderr
