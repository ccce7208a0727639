"""``mlprod predict``: the real entry point in a subprocess, its summary line and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlprod.models import ModelVersion, Registry
from mlprod.workspace import Workspace
from tests.cli.conftest import Run


@pytest.fixture
def ws_with_model(workspace: Workspace, registered: ModelVersion) -> Path:
    return workspace.root


@pytest.fixture
def source(frame: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    frame[["x", "c"]].head(500).to_parquet(path)
    return path


def _expected(ws_root: Path, frame: pd.DataFrame) -> np.ndarray:
    with Workspace.open(ws_root) as ws:
        return Registry(ws).load("toy/1").predict_frame(frame.head(500))


def test_predict_streams_in_chunks_and_prints_a_summary(
    mlprod: Run, ws_with_model: Path, source: Path, frame: pd.DataFrame, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "scored.parquet"
    result = mlprod(
        "predict", "--model", "toy@champion", "--input", str(source), "--output", str(output),
        "--chunk-rows", "64", cwd=ws_with_model,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote 500 predictions of toy/1 to {output} in " in result.stdout
    assert "rows/s, local engine)" in result.stdout
    scored = pq.read_table(output)
    assert scored.column_names == ["x", "c", "probability"]
    np.testing.assert_array_equal(scored["probability"].to_numpy(), _expected(ws_with_model, frame))
    assert sorted(p.name for p in output.parent.iterdir()) == ["scored.parquet"]


def test_predict_reads_csv_with_short_options(
    mlprod: Run, ws_with_model: Path, frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame[["x", "c"]].head(500).to_csv(tmp_path / "in.csv", index=False)
    output = tmp_path / "scored.parquet"
    result = mlprod(
        "predict", "-m", "toy", "-i", str(tmp_path / "in.csv"), "-o", str(output), cwd=ws_with_model
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        pq.read_table(output)["probability"].to_numpy(), _expected(ws_with_model, frame)
    )


def _case(tmp_path: Path, source: Path, name: str) -> tuple[list[str], str]:
    """Arguments for one bad invocation, and the error line it must print."""
    output = str(tmp_path / "out" / "o.parquet")
    base = ["--model", "toy@champion", "--input", str(source), "--output", output]
    if name == "missing input":
        return [
            "-m",
            "toy",
            "-i",
            str(tmp_path / "nope.parquet"),
            "-o",
            output,
        ], "nope.parquet does not exist"
    if name == "unsupported extension":
        (tmp_path / "in.txt").write_text("x,c\n1,a\n")
        return [
            "-m",
            "toy",
            "-i",
            str(tmp_path / "in.txt"),
            "-o",
            output,
        ], "expected a .parquet, .csv or .csv.gz file"
    if name == "missing column":
        pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "no_c.parquet")
        return [
            "-m",
            "toy",
            "-i",
            str(tmp_path / "no_c.parquet"),
            "-o",
            output,
        ], "lacks the model's input column(s) ['c']"
    if name == "wrong type":
        pd.DataFrame({"x": ["1.5", "slow"], "c": ["a", "b"]}).to_parquet(tmp_path / "typed.parquet")
        return [
            "-m",
            "toy",
            "-i",
            str(tmp_path / "typed.parquet"),
            "-o",
            output,
        ], "column 'x' expects numbers"
    if name == "unknown category":
        pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "zebra"]}).to_parquet(tmp_path / "cat.parquet")
        return (
            ["-m", "toy", "-i", str(tmp_path / "cat.parquet"), "-o", output],
            "column 'c': 1 value(s) are not allowed categories, e.g. ['zebra']",
        )
    if name == "unwritable output":
        (tmp_path / "afile").write_text("")
        return [*base[:4], "-o", str(tmp_path / "afile" / "o.parquet")], "cannot write predictions to"
    if name == "unknown model":
        return ["-m", "nobody", *base[2:]], "model 'nobody'"
    if name == "unknown alias":
        return ["-m", "toy@nowhere", *base[2:]], "model 'toy' has no alias 'nowhere'"
    if name == "chunk rows":
        return [*base, "--chunk-rows", "0"], "--chunk-rows must be a positive number of rows, got 0"
    if name == "engine":
        return [*base, "--engine", "spark"], "--engine must be one of local, ray, got 'spark'"
    if name == "no output":
        return base[:4], "missing --output"
    if name == "no model":
        return base[2:], "missing --model (or the MODEL argument)"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "missing input", "unsupported extension", "missing column", "wrong type", "unknown category",
        "unwritable output", "unknown model", "unknown alias", "chunk rows", "engine", "no output",
        "no model",
    ],
)  # fmt: skip
def test_bad_invocations_fail_with_one_line_and_leave_nothing(
    mlprod: Run, ws_with_model: Path, source: Path, tmp_path: Path, name: str
) -> None:
    args, message = _case(tmp_path, source, name)
    result = mlprod("predict", *args, cwd=ws_with_model)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_predict_on_ray_data(
    mlprod: Run, ws_with_model: Path, source: Path, frame: pd.DataFrame, tmp_path: Path
) -> None:
    output = tmp_path / "ray.parquet"
    result = mlprod(
        "predict", "-m", "toy@champion", "-i", str(source), "-o", str(output),
        "--engine", "ray", "--num-cpus", "2", "--chunk-rows", "100", cwd=ws_with_model, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 500 predictions of toy/1" in result.stdout and "ray engine" in result.stdout
    np.testing.assert_array_equal(
        pq.read_table(output)["probability"].to_numpy(), _expected(ws_with_model, frame)
    )
