"""``mlprod predict``: batch prediction of a file of inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlprod.cli.state import open_workspace, out
from mlprod.errors import InvalidInputError


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    ref: Annotated[str, typer.Argument(help="NAME, NAME/VERSION or NAME@ALIAS.")],
    source: Annotated[Path, typer.Argument(help="Parquet or CSV file of inputs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
) -> None:
    """Batch prediction: score every row of a file and write inputs plus a prediction column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlprod.data import read_table_file
    from mlprod.models import Registry

    table = read_table_file(source)
    with open_workspace() as ws:
        model = Registry(ws).load(ref)
    predictions = model.predict_frame(table.to_pandas())
    result = table.append_column(model.signature.output, pa.array(predictions, type=pa.float64()))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(result, output)
    except OSError as exc:
        raise InvalidInputError(f"cannot write predictions to {output}: {exc}") from exc
    out.print(f"wrote {len(predictions):,} predictions of {model.model}/{model.version} to {output}")
