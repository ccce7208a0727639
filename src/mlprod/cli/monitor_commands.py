"""``mlprod monitor``: what the served models have been doing."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mlprod.cli.state import open_workspace, out

app = typer.Typer(help="Monitoring of served models: prediction log summaries.", no_args_is_help=True)


@app.command("predictions")
def predictions(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """Per model version: predictions and requests logged, time span, mean score, latency."""
    from mlprod.monitor import summarize_predictions

    with open_workspace() as ws:
        summaries = summarize_predictions(ws.prediction_log_dir, model=model)
    table = Table("model", "version", "predictions", "requests", "UTC span", "mean", "p50 ms", "p99 ms")
    for s in summaries:
        table.add_row(
            s.model,
            str(s.version),
            f"{s.predictions:,}",
            f"{s.requests:,}",
            f"{s.first:%m-%d %H:%M} to {s.last:%m-%d %H:%M}",
            f"{s.mean_prediction:.4f}",
            f"{s.latency_p50_ms:.2f}",
            f"{s.latency_p99_ms:.2f}",
        )
    out.print(table if summaries else "no predictions logged yet")
