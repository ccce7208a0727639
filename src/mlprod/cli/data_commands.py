"""``mlprod data``: dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlprod.cli.state import open_workspace, out
from mlprod.errors import InvalidInputError

if TYPE_CHECKING:
    import pyarrow as pa

app = typer.Typer(help="Versioned datasets: import, list, show.", no_args_is_help=True)


@app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    source: Annotated[Path, typer.Argument(help="A Parquet or CSV file.")],
    message: Annotated[str, typer.Option("--message", "-m", help="What this version is.")] = "",
) -> None:
    """Commit a Parquet or CSV file as the next version of a dataset."""
    from mlprod.data import DatasetStore

    table = read_table_file(source)
    with open_workspace() as ws:
        version = DatasetStore(ws).commit(name, table, message=message)
    out.print(f"{name} version {version.version}: {version.num_rows:,} rows ({version.artifact_sha256[:12]})")


@app.command("list")
def list_() -> None:
    """Every dataset version in the workspace."""
    from mlprod.data import DatasetStore

    with open_workspace() as ws:
        versions = DatasetStore(ws).versions()
    table = Table("dataset", "version", "rows", "columns", "created (UTC)", "message")
    for v in versions:
        table.add_row(
            v.dataset,
            str(v.version),
            f"{v.num_rows:,}",
            str(len(v.schema)),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.message,
        )
    out.print(table if versions else "no datasets yet (mlprod data import NAME FILE)")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    head: Annotated[int, typer.Option(help="Rows to print.")] = 5,
) -> None:
    """Schema and first rows of a dataset version."""
    from mlprod.data import DatasetStore

    with open_workspace() as ws:
        store = DatasetStore(ws)
        found = store.get(name, version)
        rows = store.read(name, found.version).slice(0, head).to_pylist()
    out.print(f"{name} version {found.version}: {found.num_rows:,} rows, sha256 {found.artifact_sha256}")
    schema = Table("column", "type")
    for column, kind in found.schema.items():
        schema.add_row(column, kind)
    out.print(schema)
    if rows:
        preview = Table(*rows[0].keys())
        for row in rows:
            preview.add_row(*(str(v) for v in row.values()))
        out.print(preview)


def read_table_file(path: Path) -> pa.Table:
    """Read a Parquet or CSV file into Arrow, with an error naming the file when it cannot."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist or is not a file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pq.read_table(path)
        if path.suffix.lower() in (".csv", ".gz"):
            return pacsv.read_csv(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    raise InvalidInputError(f"{path}: expected a .parquet or .csv file")
