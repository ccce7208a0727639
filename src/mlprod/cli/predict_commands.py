"""``mlprod predict``: batch prediction of a file of inputs, streamed in chunks, locally or on Ray."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from mlprod.cli.state import err, open_workspace, out
from mlprod.errors import InvalidInputError

ENGINES = ("local", "ray")
T = TypeVar("T")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    ref: Annotated[str | None, typer.Argument(help="Same as --model.", show_default=False)] = None,
    source: Annotated[Path | None, typer.Argument(help="Same as --input.", show_default=False)] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="NAME, NAME/VERSION or NAME@ALIAS.", show_default=False),
    ] = None,
    input_: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="Parquet or CSV file of inputs (.parquet, .pq, .csv, .csv.gz)."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Parquet file to write.")] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows per chunk: bounds memory.")] = 100_000,
    engine: Annotated[
        str, typer.Option("--engine", help="local, or ray (Ray Data; Parquet input).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster to use (default: start a local Ray).")
    ] = None,
    num_cpus: Annotated[
        int | None,
        typer.Option("--num-cpus", help="CPUs of the local Ray (default: all).", show_default=False),
    ] = None,
) -> None:
    """Score every row of a file and write its columns plus the prediction column to Parquet.

    Streams the input in chunks, so files larger than memory work; the output appears only when
    every row is scored.
    """
    from mlprod.models import Registry
    from mlprod.serve.batch_predict import predict_file

    ref = _one_of("--model", model, "MODEL", ref)
    source = _one_of("--input", input_, "FILE", source)
    if output is None:
        raise InvalidInputError("missing --output: the Parquet file to write the predictions to")
    if chunk_rows <= 0:
        raise InvalidInputError(f"--chunk-rows must be a positive number of rows, got {chunk_rows}")
    if engine not in ENGINES:
        raise InvalidInputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if num_cpus is not None and num_cpus <= 0:
        raise InvalidInputError(f"--num-cpus must be positive, got {num_cpus}")

    with open_workspace() as ws:
        loaded = Registry(ws).load(ref)
        with _progress_bar(f"{loaded.model}/{loaded.version}") as progress:
            result = predict_file(
                loaded,
                source,
                output,
                chunk_rows=chunk_rows,
                engine="ray" if engine == "ray" else "local",
                progress=progress,
                workspace=ws.root,
                ray_address=ray_address,
                ray_cpus=num_cpus,
            )
    out.print(
        f"wrote {result.rows:,} predictions of {result.model}/{result.version} to {result.output} "
        f"in {result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s, {result.engine} engine)"
    )


def _one_of(option: str, given: T | None, positional: str, legacy: T | None) -> T:
    """The option's value, or the positional argument's (the older form ``predict REF FILE``)."""
    if given is not None and legacy is not None and given != legacy:
        raise InvalidInputError(f"{option} {given} and the {positional} argument {legacy} disagree; give one")
    value = given if given is not None else legacy
    if value is None:
        raise InvalidInputError(f"missing {option} (or the {positional} argument)")
    return value


@contextmanager
def _progress_bar(what: str) -> Iterator[Callable[[int, int | None], None]]:
    """A Rich progress bar on stderr (rows done of total), gone when the job ends; nothing when stderr
    is not a terminal, so logs and pipes stay clean."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not err.is_terminal:
        yield lambda done, total: None
        return

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"scoring rows with {what}", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
