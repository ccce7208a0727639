"""Batch prediction of a file of any size: stream chunks, encode from Arrow, predict, append to Parquet.

Memory stays bounded by the chunk size, not the file: a reader thread reads and encodes one chunk
(Parquet row batches, or CSV blocks) while the model predicts the previous one, and each scored chunk
is appended to a ``ParquetWriter``. The output is written to a temporary file beside the target and
renamed at the end, so a failed or interrupted job leaves nothing behind.

Encoding goes from Arrow to the model's float64 matrix without pandas for the common column types
(numbers, strings, dictionary strings), with the same result and errors as
``FeatureEncoder.encode_frame``; any other type goes through ``encode_frame`` itself.

``engine="ray"`` runs the same job on Ray Data: workers read the Parquet input, each loads the model
once from the workspace and scores its blocks; the driver streams the scored blocks, in input order,
into the same single output file as the local engine (so the output path may be local to the driver).

Examples:
    >>> import tempfile, pandas as pd
    >>> from mlprod.models import EstimatorSpec, train_classifier
    >>> from mlprod.models.flavors import flavor_for
    >>> frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0] * 10, "c": ["a", "b"] * 20, "y": [0, 0, 1, 1] * 10})
    >>> trained = train_classifier(frame, label="y", numeric=["x"], categorical=["c"],
    ...                            estimator=EstimatorSpec("linear"))
    >>> flavor = flavor_for(trained.model)
    >>> model = LoadedModel("m", 1, flavor.load(flavor.serialize(trained.model)), trained.signature,
    ...                     format=flavor.name)
    >>> ArrowEncoder(model.encoder).encode(pa.table({"x": [1.5, None], "c": ["b", None]})).tolist()
    [[1.5, 1.0], [nan, nan]]
    >>> tmp = Path(tempfile.mkdtemp())
    >>> frame[["x", "c"]].to_parquet(tmp / "in.parquet")
    >>> predict_file(model, tmp / "in.parquet", tmp / "out.parquet", chunk_rows=16).rows
    40
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod import errors
from mlprod.errors import InvalidInputError, MlprodError
from mlprod.models import FeatureEncoder, InputField, LoadedModel, Signature

if TYPE_CHECKING:
    import pyarrow.parquet as pq

Engine = Literal["local", "ray"]
Progress = Callable[[int, int | None], None]
"""Called after each chunk with (rows done, total rows or None when unknown, as for CSV)."""

_QUEUE_CHUNKS = 2  # chunks read ahead of the model: memory is about (this + 2) chunks
_CSV_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class BatchResult:
    """What a batch prediction job did."""

    rows: int
    seconds: float
    output: Path
    model: str
    version: int
    engine: Engine

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


class ArrowEncoder:
    """Encodes Arrow batches to the matrix ``FeatureEncoder.encode_frame`` gives for the same rows.

    Integer and floating columns are cast directly; string and dictionary-of-string categories are
    looked up with ``pyarrow.compute.index_in``. Other types fall back to ``encode_frame`` on that
    one column, so results and error messages match the frame path exactly.
    """

    def __init__(self, encoder: FeatureEncoder) -> None:
        self.encoder = encoder
        self.signature = encoder.signature
        self._value_sets = {
            f.name: pa.array(f.categories, type=pa.string())
            for f in self.signature.inputs
            if f.kind == "category"
        }

    def encode(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        names = set(batch.schema.names)
        missing = [name for name in self.signature.input_names if name not in names]
        if missing:
            raise InvalidInputError(f"missing column(s) {missing} (expected {self.signature.input_names})")
        matrix = np.empty((batch.num_rows, len(self.signature.inputs)), dtype=np.float64)
        for j, spec in enumerate(self.signature.inputs):
            column = batch.column(spec.name)
            values = self._category(spec, column) if spec.kind == "category" else self._number(spec, column)
            matrix[:, j] = self._fallback(spec, column) if values is None else values
        return matrix

    def _number(self, spec: InputField, column: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            return None
        values = _to_float64(column)
        if pa.types.is_floating(column.type) and spec.integral and np.any(values[~np.isnan(values)] % 1):
            raise InvalidInputError(f"column {spec.name!r} expects integers ({spec.dtype}), got fractions")
        return values

    def _category(self, spec: InputField, column: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
        kind = column.type
        if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
            column = pc.cast(
                column, pa.large_string() if pa.types.is_large_string(kind.value_type) else pa.string()
            )
        elif not _is_text(kind):
            return None
        value_set = self._value_sets[spec.name].cast(column.type)
        codes = pc.index_in(column, value_set=value_set)
        if self.encoder.strict:
            unknown = pc.and_(pc.is_null(codes), pc.is_valid(column))
            count = pc.sum(unknown).as_py() or 0
            if count:
                examples = sorted(str(v) for v in pc.unique(pc.filter(column, unknown)).to_pylist())[:5]
                raise InvalidInputError(
                    f"column {spec.name!r}: {count} value(s) are not allowed categories, "
                    f"e.g. {examples} ({len(spec.categories)} known)"
                )
        return _to_float64(codes)

    def _fallback(self, spec: InputField, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        one = Signature(inputs=(spec,), unknown_categories=self.signature.unknown_categories)
        frame = pa.table({spec.name: column}).to_pandas()
        result: np.ndarray = FeatureEncoder(one, strict=self.encoder.strict).encode_frame(frame)[:, 0]
        return result


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _to_float64(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    cast = pc.fill_null(pc.cast(column, pa.float64(), safe=False), np.nan)
    return np.asarray(cast.to_numpy(), dtype=np.float64)


def predict_file(
    model: LoadedModel,
    source: Path,
    output: Path,
    *,
    chunk_rows: int = 100_000,
    engine: Engine = "local",
    progress: Progress | None = None,
    workspace: Path | None = None,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
) -> BatchResult:
    """Score every row of ``source`` (Parquet or CSV) into ``output`` (Parquet): inputs + a prediction.

    The prediction column is named by the model's signature (``probability``) and replaces an input
    column of that name. Memory is bounded by ``chunk_rows``. ``engine="ray"`` (Parquet input only)
    needs ``workspace``, the root each Ray worker loads the model from; it connects to
    ``ray_address`` (or an already initialised Ray), else starts a local Ray with ``ray_cpus`` CPUs
    and shuts it down at the end.
    """
    source, output = Path(source), Path(output)
    if chunk_rows <= 0:
        raise InvalidInputError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
    if engine not in ("local", "ray"):
        raise InvalidInputError(f"unknown engine {engine!r}: expected 'local' or 'ray'")
    kind = _input_kind(source)
    if engine == "ray" and kind != "parquet":
        raise InvalidInputError(f"{source}: the ray engine reads Parquet; convert it or use the local engine")
    if engine == "ray" and workspace is None:
        raise InvalidInputError("the ray engine needs the workspace root, to load the model in each worker")
    if output.resolve() == source.resolve():
        raise InvalidInputError(f"output {output} is the input file; write the predictions elsewhere")
    if output.is_dir():
        raise InvalidInputError(f"cannot write predictions to {output}: it is a directory")

    started = time.perf_counter()
    reader = _open_input(source, kind, model.signature)
    try:
        _check_columns(reader.schema, model.signature, source)
        with _AtomicParquet(output, _output_schema(reader.schema, model.signature.output)) as sink:
            if engine == "local":
                rows = _run_local(model, reader, sink, chunk_rows, progress)
            else:
                assert workspace is not None
                rows = _run_ray(
                    model,
                    source,
                    sink,
                    chunk_rows,
                    progress,
                    reader.total,
                    Path(workspace),
                    ray_address,
                    ray_cpus,
                )
    finally:
        reader.close()
    return BatchResult(rows, time.perf_counter() - started, output, model.model, model.version, engine)


# ---- input ----------------------------------------------------------------------------------------


def _input_kind(source: Path) -> Literal["parquet", "csv"]:
    if not source.is_file():
        raise InvalidInputError(f"{source} does not exist or is not a file")
    suffixes = [s.lower() for s in source.suffixes]
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        return "parquet"
    if ".csv" in suffixes:
        return "csv"
    raise InvalidInputError(f"{source}: expected a .parquet, .csv or .csv.gz file")


class _Input:
    """An open input: its schema, total rows when known, and a stream of record batches."""

    def __init__(
        self,
        schema: pa.Schema,
        total: int | None,
        batches: Callable[[int], Iterator[pa.RecordBatch]],
        close: Callable[[], None],
        source: Path,
    ) -> None:
        self.schema, self.total, self._batches, self.close, self.source = (
            schema,
            total,
            batches,
            close,
            source,
        )

    def batches(self, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from _rechunk(self._batches(chunk_rows), chunk_rows)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInputError(f"cannot read {self.source}: {exc}") from exc


def _open_input(source: Path, kind: Literal["parquet", "csv"], signature: Signature) -> _Input:
    try:
        if kind == "parquet":
            return _open_parquet(source)
        return _open_csv(source, signature)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"cannot read {source}: {exc}") from exc


def _open_parquet(source: Path) -> _Input:
    import pyarrow.parquet as pq

    file: pq.ParquetFile = pq.ParquetFile(source)
    return _Input(
        file.schema_arrow,
        file.metadata.num_rows,
        lambda rows: iter(file.iter_batches(batch_size=rows)),
        file.close,
        source,
    )


def _open_csv(source: Path, signature: Signature) -> _Input:
    """Column types are inferred from the first block, as ``pyarrow.csv`` does; model categories are
    read as strings and fractional numbers as float64, so a later block cannot change their type.
    An empty cell is missing, as in pandas, also in text columns."""
    import pyarrow.csv as pacsv

    types: dict[str, pa.DataType] = {}
    for spec in signature.inputs:
        if spec.kind == "category":
            types[spec.name] = pa.string()
        elif not spec.integral:
            types[spec.name] = pa.float64()
    stream = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
    return _Input(stream.schema, None, lambda rows: iter(stream), stream.close, source)


def _rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``rows`` rows (the last one shorter), whatever the reader's block sizes."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows:
                yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
                pending, count = [], 0
    if count:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _check_columns(schema: pa.Schema, signature: Signature, source: Path) -> None:
    names = schema.names
    missing = [name for name in signature.input_names if name not in names]
    if missing:
        raise InvalidInputError(
            f"{source} lacks the model's input column(s) {missing}; "
            f"the model expects {signature.input_names}, the file has {names}"
        )
    twice = sorted({name for name in signature.input_names if names.count(name) > 1})
    if twice:
        raise InvalidInputError(f"{source} has more than one column named {twice}")


# ---- output ---------------------------------------------------------------------------------------


def _output_schema(schema: pa.Schema, output: str) -> pa.Schema:
    if output in schema.names:
        schema = schema.remove(schema.get_field_index(output))
    return schema.append(pa.field(output, pa.float64()))


def _scored(batch: pa.RecordBatch | pa.Table, predictions: np.ndarray, schema: pa.Schema) -> pa.Table:
    """The input columns plus the prediction column, laid out as ``schema``."""
    name = schema.names[-1]
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    if name in table.schema.names:
        table = table.drop_columns([name])
    table = table.append_column(name, pa.array(predictions, type=pa.float64()))
    return table if table.schema.equals(schema) else table.select(schema.names).cast(schema)


class _AtomicParquet:
    """A ``ParquetWriter`` on a temporary file beside ``path``, renamed to it only on success.

    On failure the temporary file, and any directory created for the output, are removed.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self._tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
        self._created = next(
            (p for p in reversed((path.parent, *path.parent.parents)) if not p.exists()), None
        )
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> _AtomicParquet:
        import pyarrow.parquet as pq

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        except (OSError, pa.ArrowException) as exc:
            self._discard()
            raise InvalidInputError(f"cannot write predictions to {self.path}: {exc}") from exc
        return self

    def write(self, table: pa.Table) -> None:
        assert self._writer is not None
        try:
            self._writer.write_table(table)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidInputError(f"cannot write predictions to {self.path}: {exc}") from exc

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None:
            self._discard()
            return
        assert self._writer is not None
        try:
            self._writer.close()
            os.replace(self._tmp, self.path)
        except (OSError, pa.ArrowException) as error:
            self._discard()
            raise InvalidInputError(f"cannot write predictions to {self.path}: {error}") from error

    def _discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self._writer.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)
        if self._created is not None:
            import shutil

            shutil.rmtree(self._created, ignore_errors=True)


# ---- local engine ---------------------------------------------------------------------------------


def _run_local(
    model: LoadedModel, reader: _Input, sink: _AtomicParquet, chunk_rows: int, progress: Progress | None
) -> int:
    encoder = ArrowEncoder(model.encoder)

    def encoded() -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        start = 0
        for batch in reader.batches(chunk_rows):
            try:
                matrix = encoder.encode(batch)
            except InvalidInputError as exc:
                rows = f"rows {start + 1:,}-{start + batch.num_rows:,}"
                raise InvalidInputError(f"{reader.source}, {rows}: {exc}") from exc
            yield batch, matrix
            start += batch.num_rows

    done = 0
    stream = _read_ahead(encoded(), _QUEUE_CHUNKS)
    try:
        for batch, matrix in stream:
            sink.write(_scored(batch, model.predict_matrix(matrix), sink.schema))
            done += batch.num_rows
            if progress is not None:
                progress(done, reader.total)
    finally:
        stream.close()  # stops the reader thread before the input is closed
    return done


_DONE = object()


def _read_ahead(items: Iterator[Any], depth: int) -> Generator[Any, None, None]:
    """Yield ``items`` computed by a background thread, at most ``depth`` ahead of the consumer.

    An error in the thread is raised here; when the consumer stops early the thread stops too.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, who raises it
            put((None, exc))

    thread = threading.Thread(target=work, name="mlprod-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


# ---- Ray engine -----------------------------------------------------------------------------------


class _RayScorer:
    """Ray Data callable class: loads the model once per worker, from the workspace, not a pickle."""

    def __init__(self, workspace: str, ref: str, format: str, output: str) -> None:
        from mlprod.models import Registry
        from mlprod.workspace import Workspace

        with Workspace.open(workspace) as ws:
            self.model = Registry(ws).load(ref, format=format)
        self.encoder = ArrowEncoder(self.model.encoder)
        self.output = output

    def __call__(self, batch: pa.Table) -> pa.Table:
        predictions = self.model.predict_matrix(self.encoder.encode(batch))
        if self.output in batch.schema.names:
            batch = batch.drop_columns([self.output])
        return batch.append_column(self.output, pa.array(predictions, type=pa.float64()))


def _run_ray(
    model: LoadedModel,
    source: Path,
    sink: _AtomicParquet,
    chunk_rows: int,
    progress: Progress | None,
    total: int | None,
    workspace: Path,
    address: str | None,
    cpus: int | None,
) -> int:
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            num_cpus=None if address else (cpus or os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    context = ray.data.DataContext.get_current()
    saved = (context.enable_progress_bars, context.execution_options.preserve_order)
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    try:
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True
        data_logger.setLevel(logging.WARNING)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)  # type: ignore[no-untyped-call]
        dataset = ray.data.read_parquet(str(source.resolve())).map_batches(
            _RayScorer,
            fn_constructor_kwargs={
                "workspace": str(workspace.resolve()),
                "ref": f"{model.model}/{model.version}",  # the version resolved once, even if the alias moves
                "format": model.format,
                "output": model.signature.output,
            },
            batch_size=chunk_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
        )
        done = 0
        try:
            batch: pa.Table
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                sink.write(_scored(batch, batch.column(model.signature.output).to_numpy(), sink.schema))
                done += batch.num_rows
                if progress is not None:
                    progress(done, total)
        except MlprodError:
            raise
        except Exception as exc:
            error = _worker_error(exc, source)
            if error is None:
                raise
            raise error from exc
        return done
    finally:
        context.enable_progress_bars, context.execution_options.preserve_order = saved
        data_logger.setLevel(saved_level)
        if started:
            ray.shutdown()


def _worker_error(exc: BaseException, source: Path) -> MlprodError | None:
    """The mlprod error a Ray worker raised, as one clean error; None when it was something else.

    Ray passes a worker's exception back as text inside its own wrappers, so it is found by name.
    """
    found = _WORKER_ERROR.findall(str(exc))
    if not found:
        return None
    name, message = found[-1]
    if issubclass(getattr(errors, name, MlprodError), InvalidInputError):
        return InvalidInputError(f"{source}: {message}")
    return MlprodError(f"a Ray worker failed on {source}: {message}")


_WORKER_ERROR = re.compile(r"^\s*mlprod\.errors\.(\w+): (.*)$", re.MULTILINE)


__all__ = ["ArrowEncoder", "BatchResult", "Engine", "Progress", "predict_file"]
