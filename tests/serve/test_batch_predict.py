"""Batch prediction: exact results chunk by chunk, bounded memory, clean failures, and Ray Data."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlprod.errors import InvalidInputError
from mlprod.models import FeatureEncoder, InputField, LoadedModel, ModelVersion, Registry, Signature
from mlprod.serve.batch_predict import ArrowEncoder, _rechunk, predict_file
from mlprod.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model(workspace: Workspace, registered: ModelVersion) -> LoadedModel:
    return Registry(workspace).load("toy@champion")


@pytest.fixture
def inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The toy inputs with an id and a pass-through column, some values missing."""
    data = frame[["x", "c"]].copy()
    data.insert(0, "id", np.arange(len(data)))
    data.loc[data.index % 97 == 0, "x"] = np.nan
    data.loc[data.index % 89 == 0, "c"] = None
    data["note"] = [f"row {i}" for i in range(len(data))]
    return data


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("chunk_rows", [1, 333, 2000, 100_000])
def test_output_equals_predict_frame_of_the_whole_input(
    model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path, chunk_rows: int
) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(inputs, preserve_index=False), source, row_group_size=150)
    seen: list[tuple[int, int | None]] = []
    result = predict_file(
        model,
        source,
        tmp_path / "out.parquet",
        chunk_rows=chunk_rows,
        progress=lambda d, t: seen.append((d, t)),
    )
    scored = pq.read_table(tmp_path / "out.parquet")
    assert scored.column_names == ["id", "x", "c", "note", "probability"]
    assert scored.schema.field("probability").type == pa.float64()
    np.testing.assert_array_equal(scored["probability"].to_numpy(), model.predict_frame(inputs))
    assert scored.select(["id", "x", "c", "note"]).equals(pq.read_table(source))
    assert (result.rows, result.model, result.version, result.engine) == (2000, "toy", 1, "local")
    done = [d for d, _ in seen]
    assert done == [min(i * chunk_rows, 2000) for i in range(1, -(-2000 // chunk_rows) + 1)]
    assert {t for _, t in seen} == {2000}


def test_csv_input_gives_the_same_predictions_as_parquet(
    model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    inputs.to_csv(source, index=False)
    seen: list[int | None] = []
    predict_file(
        model, source, tmp_path / "out.parquet", chunk_rows=300, progress=lambda d, t: seen.append(t)
    )
    scored = pq.read_table(tmp_path / "out.parquet").to_pandas()
    np.testing.assert_array_equal(scored["probability"].to_numpy(), model.predict_frame(inputs))
    assert set(seen) == {None}  # a CSV's row count is unknown until it is read


def test_rechunk_cuts_exact_chunks_across_reader_blocks() -> None:
    blocks = [
        pa.record_batch({"v": list(range(start, start + size))}) for start, size in [(0, 3), (3, 10), (13, 1)]
    ]
    chunks = list(_rechunk(iter(blocks), 4))
    assert [c.num_rows for c in chunks] == [4, 4, 4, 2]
    assert [v for c in chunks for v in c.column("v").to_pylist()] == list(range(14))


def test_an_input_column_named_like_the_output_is_replaced(
    model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path
) -> None:
    inputs["probability"] = "old"
    inputs.to_parquet(tmp_path / "in.parquet")
    predict_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet")
    scored = pq.read_table(tmp_path / "out.parquet")
    assert scored.column_names == ["id", "x", "c", "note", "probability"]
    np.testing.assert_array_equal(scored["probability"].to_numpy(), model.predict_frame(inputs))


def test_an_empty_input_writes_an_empty_output(
    model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path
) -> None:
    inputs.head(0).to_parquet(tmp_path / "in.parquet")
    result = predict_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet")
    scored = pq.read_table(tmp_path / "out.parquet")
    assert result.rows == 0 and scored.num_rows == 0 and scored.column_names[-1] == "probability"


# ---- the Arrow encoder agrees with encode_frame ---------------------------------------------------

SIGNATURE = Signature(
    inputs=(
        InputField("f", "number"),
        InputField("i", "number", dtype="int64"),
        InputField("s", "category", ("AA", "B6", "UA")),
        InputField("d", "category", ("AA", "B6", "UA")),
        InputField("n", "category", ("1", "2")),
        InputField("t", "number"),
    )
)


def _typed_batch() -> pa.Table:
    return pa.table(
        {
            "f": pa.array([1.5, None, float("nan"), -2.0, 1e300], pa.float32()).cast(pa.float64()),
            "i": pa.array([1, None, 3, 2**60 + 1, -4], pa.int64()),
            "s": pa.array(["UA", None, "AA", "UA", "B6"], pa.large_string()),
            "d": pa.array(["B6", "UA", None, "B6", "AA"]).dictionary_encode(),
            "n": pa.array([1, 2, 2, 1, 2], pa.int32()),  # a category given as numbers: frame path
            "t": pa.array(["1.5", "2", None, "-3", "4e2"]),  # numbers given as text: frame path
            "extra": pa.array([b"x"] * 5),
        }
    )


@pytest.mark.parametrize("strict", [True, False])
def test_arrow_encoder_gives_the_matrix_of_encode_frame(strict: bool) -> None:
    table = _typed_batch()
    encoder = FeatureEncoder(SIGNATURE, strict=strict)
    expected = encoder.encode_frame(table.to_pandas())
    np.testing.assert_array_equal(ArrowEncoder(encoder).encode(table), expected)
    for batch in table.to_batches(max_chunksize=2):
        np.testing.assert_array_equal(
            ArrowEncoder(encoder).encode(batch), encoder.encode_frame(batch.to_pandas())
        )


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("s", pa.array(["UA", "ZZ", "YY", "ZZ", None]), "column 's': 3 value(s) are not allowed categories"),
        ("d", pa.array(["UA", "QQ", None, None, None]).dictionary_encode(), "['QQ']"),
        ("n", pa.array([1, 7, 1, 1, 2]), "column 'n': 1 value(s) are not allowed categories"),
        ("i", pa.array([1.0, 2.5, None, 1.0, 2.0]), "column 'i' expects integers (int64), got fractions"),
        ("t", pa.array(["1", "two", None, "3", "4"]), "column 't' expects numbers"),
        ("f", pa.array([[1.0], [2.0], None, [3.0], []]), "column 'f' expects numbers"),
    ],
)
def test_arrow_encoder_raises_what_encode_frame_raises(column: str, values: pa.Array, message: str) -> None:
    table = _typed_batch()
    table = table.set_column(table.schema.get_field_index(column), column, values)
    encoder = FeatureEncoder(SIGNATURE, strict=True)
    with pytest.raises(InvalidInputError) as from_frame:
        encoder.encode_frame(table.to_pandas())
    with pytest.raises(InvalidInputError) as from_arrow:
        ArrowEncoder(encoder).encode(table)
    assert str(from_arrow.value) == str(from_frame.value)
    assert message in str(from_arrow.value)


def test_lenient_encoder_treats_unknown_categories_as_missing() -> None:
    table = pa.table(
        {"f": [1.0, 2.0], "i": [1, 2], "s": ["ZZ", ""], "d": ["QQ", "AA"], "n": [9, 1], "t": [1.0, 2.0]}
    )
    encoder = SIGNATURE.encoder(lenient=True)
    matrix = ArrowEncoder(encoder).encode(table)
    assert np.isnan(matrix[:, 2]).all() and np.isnan(matrix[0, 3:5]).all()
    np.testing.assert_array_equal(matrix, encoder.encode_frame(table.to_pandas()))


# ---- bad inputs: a clear error, and nothing left behind -------------------------------------------


@pytest.fixture
def source(inputs: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    inputs.to_parquet(path)
    return path


def _bad(model: LoadedModel, source: Path, output: Path, message: str, **kwargs: object) -> None:
    with pytest.raises(InvalidInputError) as raised:
        predict_file(model, source, output, **kwargs)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert not output.exists()
    if output.parent.is_dir():
        assert _leftovers(output.parent) == []


def test_missing_input_file(model: LoadedModel, tmp_path: Path) -> None:
    _bad(
        model,
        tmp_path / "nope.parquet",
        tmp_path / "out.parquet",
        f"{tmp_path / 'nope.parquet'} does not exist",
    )


def test_unsupported_extension(model: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text("[]")
    _bad(model, tmp_path / "in.json", tmp_path / "out.parquet", "expected a .parquet, .csv or .csv.gz file")


def test_a_file_that_is_not_parquet(model: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "in.parquet").write_text("not parquet")
    _bad(model, tmp_path / "in.parquet", tmp_path / "out.parquet", f"cannot read {tmp_path / 'in.parquet'}")


def test_input_lacking_a_model_column(model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path) -> None:
    inputs.drop(columns="c").to_parquet(tmp_path / "in.parquet")
    _bad(model, tmp_path / "in.parquet", tmp_path / "out.parquet", "lacks the model's input column(s) ['c']")


def test_wrong_type_in_a_column(model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path) -> None:
    inputs["x"] = inputs["x"].astype(str)
    inputs.loc[1500, "x"] = "fast"
    inputs.to_parquet(tmp_path / "in.parquet")
    _bad(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        "rows 1,401-1,600: column 'x' expects numbers",
        chunk_rows=200,
    )


def test_unknown_category_late_in_the_file_leaves_no_partial_output(
    model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path
) -> None:
    inputs.loc[1999, "c"] = "zebra"
    inputs.to_parquet(tmp_path / "in.parquet")
    output = tmp_path / "new" / "deeper" / "out.parquet"
    _bad(
        model,
        tmp_path / "in.parquet",
        output,
        "rows 1,901-2,000: column 'c': 1 value(s) are not allowed categories, e.g. ['zebra'] (3 known)",
        chunk_rows=100,
    )
    assert not (tmp_path / "new").exists()  # the directories made for the output are gone too


def test_output_directory_not_writable(model: LoadedModel, source: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    _bad(
        model, source, tmp_path / "afile" / "out.parquet", f"cannot write predictions to {tmp_path / 'afile'}"
    )


def test_output_is_a_directory_or_the_input(model: LoadedModel, source: Path, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(InvalidInputError, match="it is a directory"):
        predict_file(model, source, tmp_path / "adir")
    assert list((tmp_path / "adir").iterdir()) == []
    with pytest.raises(InvalidInputError, match="is the input file"):
        predict_file(model, source, source)
    assert pq.read_table(source).num_rows == 2000


@pytest.mark.parametrize("chunk_rows", [0, -5])
def test_chunk_rows_must_be_positive(
    model: LoadedModel, source: Path, tmp_path: Path, chunk_rows: int
) -> None:
    _bad(
        model,
        source,
        tmp_path / "out.parquet",
        f"chunk_rows must be a positive number of rows, got {chunk_rows}",
        chunk_rows=chunk_rows,
    )


def test_ray_engine_refuses_csv_and_needs_the_workspace(
    model: LoadedModel, inputs: pd.DataFrame, source: Path, tmp_path: Path
) -> None:
    inputs.to_csv(tmp_path / "in.csv", index=False)
    _bad(model, tmp_path / "in.csv", tmp_path / "out.parquet", "the ray engine reads Parquet", engine="ray")
    _bad(model, source, tmp_path / "out.parquet", "the ray engine needs the workspace root", engine="ray")


# ---- memory stays bounded by the chunk, not the file ----------------------------------------------

PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from mlprod.models import Registry
    from mlprod.serve.batch_predict import predict_file
    from mlprod.workspace import Workspace

    with Workspace.open(sys.argv[1]) as ws:
        model = Registry(ws).load("toy@champion")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    predict_file(model, Path(sys.argv[2]), Path(sys.argv[3]), chunk_rows=int(sys.argv[4]))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """
)


def test_memory_is_bounded_by_the_chunk_not_the_file(
    workspace: Workspace, registered: ModelVersion, tmp_path: Path
) -> None:
    rows, payload = 400_000, 1000  # ~400 MB once decoded; the file itself compresses to a few MB
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "x": rng.normal(size=rows),
            "c": rng.choice(["a", "b", "c"], rows),
            "payload": pa.array(["p" * payload] * rows),
        }
    )
    pq.write_table(table, tmp_path / "big.parquet")
    del table
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_SCRIPT,
            str(workspace.root),
            str(tmp_path / "big.parquet"),
            str(tmp_path / "o.parquet"),
            "2000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    growth = int(result.stdout.split()[-1])
    assert pq.ParquetFile(tmp_path / "o.parquet").metadata.num_rows == rows
    assert growth < 0.4 * rows * payload, f"peak RSS grew by {growth / 1e6:.0f} MB streaming a 400 MB input"


# ---- Ray Data engine (one local Ray for the module: it is slow to start) --------------------------


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import logging

    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_engine_gives_identical_predictions_in_order(
    ray_session: None, workspace: Workspace, model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path
) -> None:
    import ray

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(inputs, preserve_index=False), source, row_group_size=500)
    seen: list[int] = []
    result = predict_file(
        model,
        source,
        tmp_path / "out.parquet",
        chunk_rows=300,
        engine="ray",
        workspace=workspace.root,
        progress=lambda d, t: seen.append(d),
    )
    scored = pq.read_table(tmp_path / "out.parquet")
    assert scored.column_names == ["id", "x", "c", "note", "probability"]
    assert scored["id"].to_pylist() == list(range(2000))
    np.testing.assert_array_equal(scored["probability"].to_numpy(), model.predict_frame(inputs))
    assert (result.rows, result.engine) == (2000, "ray") and seen[-1] == 2000
    assert ray.is_initialized()  # a Ray it did not start is left running


def test_ray_engine_reports_a_worker_error_and_leaves_nothing(
    ray_session: None, workspace: Workspace, model: LoadedModel, inputs: pd.DataFrame, tmp_path: Path
) -> None:
    inputs.loc[1234, "c"] = "zebra"
    inputs.to_parquet(tmp_path / "in.parquet")
    _bad(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        "column 'c': 1 value(s) are not allowed categories, e.g. ['zebra']",
        engine="ray",
        workspace=workspace.root,
    )
