"""``mlprod demo``: NYC flights 2013 through production, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlprod.cli.eval_commands import print_leaderboard
from mlprod.cli.listing import Column, print_table
from mlprod.cli.monitor_commands import print_windows
from mlprod.cli.state import err, out, state

if TYPE_CHECKING:
    from mlprod.demo import DemoSummary
    from mlprod.demo.arrivals import MonthArrival


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    requests: Annotated[int, typer.Option(min=1, help="HTTP prediction requests to send.")] = 1000,
    rounds: Annotated[int, typer.Option(min=1, help="Boosting rounds of each model.")] = 200,
    sample: Annotated[
        float,
        typer.Option(min=0.001, max=1.0, help="Use this seeded fraction of the flights (for quick runs)."),
    ] = 1.0,
) -> None:
    """Ingest January-June 2013 flights, train four candidates (logistic regression, small and large
    LightGBM, XGBoost) as recorded runs, evaluate them on July, print the leaderboards under the
    accuracy-first and edge profiles, let the gate pick the champion, serve it over HTTP, predict
    July flights, log every prediction; then monitor the champion week by week over August-December
    (drift alarms, accuracy estimated without labels and realized) and write an HTML report.

    Uses the current workspace (--workspace, $MLPROD_HOME, or one found upward), else its own under
    ~/.cache/mlprod/demo. Safe to interrupt and rerun.
    """
    from mlprod.demo import run_demo
    from mlprod.demo.flights import MODEL
    from mlprod.demo.monitoring import LABELS_TABLE, SINCE, UNTIL
    from mlprod.workspace import default_demo_home, locate, open_or_init

    home = state.workspace or locate() or default_demo_home()
    err.print(f"workspace: {home}")
    with open_or_init(Path(home)) as ws:
        summary = run_demo(ws, requests=requests, rounds=rounds, sample=sample, console=err)
    rows = [{"step": step, "result": result} for step, result in summary_lines(summary)]
    columns = (Column("step", "step", wrap=True), Column("result", "result", wrap=True))
    print_table(rows, columns, title="mlprod demo: NYC flights 2013", show_header=False)
    for board in summary.selection.leaderboards.values():
        labels = {r.ref: f"{label} (v{r.version})" for label, r in summary.selection.reports.items()}
        print_leaderboard(board, labels=labels)
    out.print(f"Monitoring {MODEL}/{summary.champion.version} by week (reference: July)")
    print_windows(summary.monitoring.result)
    out.print(
        f"Explore it: export MLPROD_HOME={summary.workspace}; mlprod data log flights; "
        "mlprod data diff flights jan-jun; mlprod models history flights-delay; "
        "mlprod eval leaderboard --set july --profile regulated; "
        f"mlprod monitor report --model {MODEL}/{summary.champion.version} "
        f"--since {SINCE:%Y-%m-%d} --until {UNTIL:%Y-%m-%d} --labels {LABELS_TABLE} --label-column late"
    )


def summary_lines(s: DemoSummary) -> list[tuple[str, str]]:
    """The demo's outcome, one (step, result) pair per line of its summary table."""
    from mlprod.demo.monitoring import LABELS_TABLE

    table = _Pairs()
    for m in [*s.months, *s.monitoring.months]:
        table.add_row(
            f"flights 2013-{m.month:02d} committed",
            f"{m.rows:,} rows, {m.quarantined:,} quarantined, " + _screening(m),
        )
    table.add_row(
        "training data (Jan-Jun)",
        f"{s.rows_ingested:,} rows, table 'flights' @jan-jun = {s.training_commit[:12]}",
    )
    table.add_row(
        "June corrections merged",
        f"{s.merge.corrected_rows:,} rows corrected on a branch, merged as {s.merge.commit_id[:12]}; "
        f"diff jan-jun → main: +{s.merge.diff_added:,} added, ~{s.merge.diff_changed:,} changed "
        f"({s.merge.diff_method})",
    )
    b = s.baseline
    table.add_row(
        f"schedule-only baseline: {b.estimator}",
        f"flights-delay-schedule/{b.version} ({b.features} features): validation AUC {b.validation_auc:.4f}, "
        f"July AUC {b.july_auc:.4f}",
    )
    table.add_row("feature set flight-context", f"version {s.feature_set_version[:12]}, joined point-in-time")
    for c in s.candidates:
        table.add_row(
            f"candidate {c.label}" + (" (@champion)" if c is s.champion else ""),
            f"flights-delay/{c.version} ({c.estimator}, {c.features} features, run {c.run_id[:8]}): "
            f"validation AUC {c.validation_auc:.4f}, July AUC {c.july_auc:.4f}",
        )
    for label, verdict in s.selection.verdicts:
        table.add_row(
            f"gate: {label} vs {s.selection.label_of(verdict.champion)}",
            f"{verdict.decision}: {verdict.summary}",
        )
    o = s.online
    table.add_row(
        "online store (SQLite)",
        f"{o.keys_materialized:,} keys materialized as of {o.at:%Y-%m-%d %H:%M}Z; {o.compared} lookups "
        f"vs offline join: {o.mismatches} mismatches; "
        f"lookup p50 {o.lookup_p50_us:.0f} µs, p99 {o.lookup_p99_us:.0f} µs",
    )
    table.add_row("ONNX export of champion", f"parity max |difference| {s.onnx_parity:.1e}")
    table.add_row("AUC on July (champion)", f"{s.auc:.4f} ({s.test_rows:,} flights)")
    r = s.rollout
    table.add_row("HTTP requests", f"{r.requests:,} ({r.failed} failed); routing revision {r.plan_revision}")
    for route in r.routes:
        what = "mirrored" if route.route == "shadow" else "answered"
        table.add_row(
            f"route {route.route} (v{route.version})",
            f"{route.requests:,} {what}; latency p50 {route.latency_p50_ms:.2f} ms, "
            f"p99 {route.latency_p99_ms:.2f} ms",
        )
    table.add_row("predictions logged", f"{r.logged:,} (shadow copies included)")
    table.add_row("served vs in-process", f"max |difference| {r.max_served_difference:.2e}")
    watch = s.monitoring
    table.add_row(
        "monitoring (Aug-Dec, weekly)",
        f"reference: July, {watch.reference_rows:,} flights; {watch.replayed:,} predictions replayed into "
        f"the log, {watch.labelled:,} labels arrived ({LABELS_TABLE})",
    )
    partial = watch.partial_windows
    table.add_row(
        "alerts (monitor check)",
        f"{len(watch.result.windows) - partial} whole weeks, {partial} partial (no alerts); "
        f"{watch.alerts} alerts, {watch.new_alerts} new",
    )
    mae = watch.accuracy_mae
    table.add_row(
        "estimated vs realized accuracy",
        "no labelled week" if mae is None else f"mean |difference| {mae:.3f} over the labelled weeks",
    )
    table.add_row("monitoring report", str(watch.report))
    table.add_row("workspace", str(s.workspace))
    table.add_row("total time", f"{s.seconds:.1f} s")
    return table


def _screening(m: MonthArrival) -> str:
    if m.resumed:
        return "committed by an earlier run"
    if m.month == 1:
        return "the reference for later months"
    flagged = ", ".join(m.flagged_checks) or "none"
    deleted = f" ({m.deleted_after_review:,} rows deleted after review)" if m.deleted_after_review else ""
    return f"poisoning checks flagged: {flagged}{deleted}"


class _Pairs(list[tuple[str, str]]):
    """The summary's (step, result) pairs, collected in order."""

    def add_row(self, step: str, result: str) -> None:
        self.append((step, result))
