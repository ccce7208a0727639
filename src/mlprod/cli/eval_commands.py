"""``mlprod eval``: evaluation sets, reports, utility-ranked leaderboards and the promotion gate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from mlprod.cli.listing import Column, emit, print_table
from mlprod.cli.listing import FormatOpt as ListingFormatOpt
from mlprod.cli.state import err, open_workspace, out, status
from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc

if TYPE_CHECKING:
    from mlprod.evaluate import EvaluationReport, Leaderboard

app = typer.Typer(
    help="Evaluation: reports (quality, slices, robustness, fairness, serving cost, interpretability), "
    "leaderboards ranked by a profile's utility, and the champion/challenger gate.",
    no_args_is_help=True,
)

SetOpt = Annotated[str, typer.Option("--set", "-s", help="Evaluation set name ([evaluate.sets.NAME]).")]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", "-p", help="Profile name (default: [evaluate] profile).")
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")]
GATE_EXIT = {"pass": 0, "fail": 3, "inconclusive": 4}


SET_COLUMNS = (
    Column("set", "set"),
    Column("rows", "rows", wrap=True),
    Column("period", "period", priority=2),
    Column("slices", "slices", wrap=True, priority=1),
    Column("fairness", "fairness groups", wrap=True, priority=1),
    Column("description", "description", wrap=True, priority=3),
)


@app.command("sets")
def sets(output_format: ListingFormatOpt = "table") -> None:
    """The evaluation sets declared in mlprod.toml."""
    from mlprod.evaluate import evaluation_sets

    with open_workspace() as ws:
        declared = evaluation_sets(ws)
    listed = [
        {
            "set": s.name,
            "rows": s.describe(),
            "table": s.table,
            "ref": s.ref,
            "time": s.time,
            "start": s.start,
            "end": s.end,
            "period": s.period,
            "slices": list(s.slices),
            "fairness": list(s.fairness),
            "description": s.description,
        }
        for s in declared.values()
    ]
    columns = (
        SET_COLUMNS
        if output_format == "table"
        else (
            *SET_COLUMNS[:2],
            *(Column(k, k) for k in ("table", "ref", "time", "start", "end")),
            *SET_COLUMNS[2:],
        )
    )
    emit(
        listed,
        columns,
        output_format,
        title="evaluation sets",
        empty="no evaluation sets; add one with `mlprod eval add-set`",
    )


@app.command("add-set")
def add_set(
    name: Annotated[str, typer.Argument(help="Name of the set.")],
    table: Annotated[str, typer.Option(help="Versioned table to read.")],
    time: Annotated[str, typer.Option(help="Time column (or SQL expression) the range applies to.")],
    ref: Annotated[
        str, typer.Option(help="Branch, tag or commit of the table (the set is pinned to its commit now).")
    ] = "main",
    follow: Annotated[
        bool, typer.Option("--follow", help="Read the branch's head at every evaluation instead of pinning.")
    ] = False,
    start: Annotated[str | None, typer.Option(help="Inclusive start, e.g. 2013-07-01.")] = None,
    end: Annotated[str | None, typer.Option(help="Exclusive end, e.g. 2013-08-01.")] = None,
    period: Annotated[str, typer.Option(help="Time slices: day, week or month.")] = "week",
    slice_by: Annotated[
        list[str] | None, typer.Option("--slice", help="Column to slice by (repeat).")
    ] = None,
    fairness: Annotated[list[str] | None, typer.Option("--fairness", help="Group column (repeat).")] = None,
    description: Annotated[str, typer.Option(help="What the set stands for.")] = "",
) -> None:
    """Declare (or replace) an evaluation set in mlprod.toml."""
    from mlprod.evaluate import EvaluationSet, save_evaluation_set

    parse_optional_utc(start, "--start"), parse_optional_utc(end, "--end")  # refused now, not at `eval run`
    chosen = EvaluationSet(
        name, table=table, time=time, ref=ref, start=start, end=end, period=period,
        slices=tuple(slice_by or ()), fairness=tuple(fairness or ()), description=description,
    )  # fmt: skip
    with open_workspace() as ws:
        declared = save_evaluation_set(ws, chosen, follow=follow)
    out.print(f"evaluation set {name}: {declared.describe()}", markup=False)


@app.command("profiles")
def profiles(output_format: ListingFormatOpt = "table") -> None:
    """The leaderboard profiles: weights, directions and constraints (built-in and from mlprod.toml)."""
    from mlprod.evaluate import load_profiles

    with open_workspace() as ws:
        known = load_profiles(ws.config.evaluate.profiles)
    listed = [
        {
            "profile": p.name,
            "primary": p.primary,
            "weights": dict(p.weights),
            "directions": {m: p.direction(m) for m in p.weights},
            "constraints": [str(c) for c in p.constraints],
            "description": p.description,
            "weighted": ", ".join(f"{m} {w:g} ({p.direction(m)})" for m, w in p.weights.items()),
        }
        for p in known.values()
    ]
    columns = (
        Column("profile", "profile"),
        Column("primary", "primary"),
        *(
            (Column("weighted", "weights", wrap=True),)
            if output_format == "table"
            else (Column("weights", "weights"), Column("directions", "directions"))
        ),
        Column("constraints", "constraints", wrap=True, text="; ".join, priority=1),
        Column("description", "description", wrap=True, priority=2),
    )
    emit(listed, columns, output_format, title="profiles")


@app.command("run")
def run(
    ref: Annotated[str, typer.Argument(help="Model reference: name, name/VERSION or name@ALIAS.")],
    evaluation_set: SetOpt,
    seed: Annotated[int | None, typer.Option(help="Seed (default: [evaluate] seed).")] = None,
    no_cost: Annotated[bool, typer.Option("--no-cost", help="Skip measuring serving cost.")] = False,
    output_format: FormatOpt = "table",
) -> None:
    """Evaluate a model version on a set and store the report with the version."""
    from mlprod.evaluate import EvaluationOptions, evaluate_model

    _check_format(output_format, allowed=("table", "json"))
    with open_workspace() as ws:
        overrides: dict[str, object] = {"serving_cost": not no_cost}
        if seed is not None:
            overrides["seed"] = seed
        options = EvaluationOptions.from_workspace(ws, **overrides)
        with status(f"evaluating {ref} on {evaluation_set}") as step:
            report = evaluate_model(ws, ref, evaluation_set, options=options, step=step)
    _print_report(report, output_format)


@app.command("show")
def show(
    what: Annotated[str, typer.Argument(help="A report id, or a model reference (with --set).")],
    evaluation_set: Annotated[str | None, typer.Option("--set", "-s", help="Set of the report.")] = None,
    output_format: FormatOpt = "table",
) -> None:
    """A stored report: by id, or the newest of a model version on a set."""
    from mlprod.errors import NotFoundError
    from mlprod.evaluate import get_report, latest_report

    with open_workspace() as ws:
        if evaluation_set is not None:
            report = latest_report(ws, what, evaluation_set)
        else:
            try:
                report = get_report(ws, what)
            except NotFoundError as exc:
                raise NotFoundError(
                    f"{exc}; to show a model's newest report, name its set: mlprod eval show {what} --set SET"
                ) from exc
    _print_report(report, output_format)


@app.command("explain")
def explain(
    ref: Annotated[str, typer.Argument(help="Model reference: name, name/VERSION or name@ALIAS.")],
    evaluation_set: SetOpt,
    rows: Annotated[int, typer.Option(help="How many seeded random rows to explain.")] = 3,
    top: Annotated[int, typer.Option(help="Contributions shown per row (table format).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the row sample.")] = 0,
    output_format: FormatOpt = "table",
) -> None:
    """Per-prediction contributions (log-odds) of each input, for tree boosters and linear models."""
    from mlprod.evaluate import explain_rows

    _check_format(output_format, allowed=("table", "json"))
    with open_workspace() as ws, status(f"explaining {ref} on {evaluation_set}") as step:
        explanations = explain_rows(ws, ref, evaluation_set, rows=rows, seed=seed, step=step)
    if output_format == "json":
        out.print_json(json.dumps([e.to_dict() for e in explanations], default=str))
        return
    columns = (
        Column("input", "input"),
        Column("value", "value", wrap=True),
        Column("contribution", "contribution", text=lambda v: f"{v:+.4f}"),
    )
    for i, e in enumerate(explanations, 1):
        shown_rows = [
            {"input": name, "value": e.inputs.get(name), "contribution": value}
            for name, value in list(e.contributions.items())[:top]
        ]
        shown_rows.append({"input": "(base)", "value": None, "contribution": e.base})
        print_table(shown_rows, columns, title=f"row {i}: probability {e.probability:.4f}")


@app.command("leaderboard")
def leaderboard(
    evaluation_set: Annotated[str | None, typer.Option("--set", "-s", help="Evaluation set.")] = None,
    profile: ProfileOpt = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only these models (repeat; default: all).")
    ] = None,
    units_of: Annotated[
        str | None, typer.Option(help="Score in the AMRS units of this earlier leaderboard id.")
    ] = None,
    show_id: Annotated[str | None, typer.Option("--show", help="Show a recorded leaderboard by id.")] = None,
    no_record: Annotated[bool, typer.Option("--no-record", help="Rank without recording it.")] = False,
    reevaluate: Annotated[
        bool,
        typer.Option("--reevaluate", help="First evaluate the models left out on the set's current rows."),
    ] = False,
    output_format: FormatOpt = "table",
) -> None:
    """Rank the evaluated models by a profile's utility (recorded, with its pool snapshot)."""
    from mlprod.evaluate import build_leaderboard, get_leaderboard, reevaluate_left_out

    _check_format(output_format)
    with open_workspace() as ws:
        if show_id is not None:
            board = get_leaderboard(ws, show_id)
        elif evaluation_set is None:
            raise InvalidInputError(
                "name the evaluation set with --set (or show a recorded one with --show ID)"
            )
        else:
            if reevaluate:
                with err.status(f"evaluating the models left out of {evaluation_set}") as status:
                    reevaluate_left_out(ws, evaluation_set, model, step=status.update)
            board = build_leaderboard(
                ws, evaluation_set=evaluation_set, profile=profile, models=model, units_of=units_of,
                record=not no_record,
            )  # fmt: skip
    if output_format == "json":
        out.print_json(json.dumps(board.to_dict(), default=str))
    elif output_format == "csv":
        out.print(board.to_csv(), end="", markup=False, highlight=False)
    else:
        print_leaderboard(board)
        for line in left_out_notes(board, show_id is None):
            err.print(line, markup=False)


@app.command("gate")
def gate_command(
    champion: Annotated[str, typer.Argument(help="Champion reference, e.g. flights-delay@champion.")],
    challenger: Annotated[str, typer.Argument(help="Challenger reference, e.g. flights-delay/7.")],
    evaluation_set: SetOpt,
    profile: ProfileOpt = None,
    max_slice_regression: Annotated[
        float, typer.Option(help="Largest allowed drop of the worst slice's metric.")
    ] = 0.02,
    min_improvement: Annotated[
        float, typer.Option(help="Utility margin the challenger must win by (a guard against noise).")
    ] = 0.0,
    units_of: Annotated[
        str | None,
        typer.Option(help="Utility in this leaderboard's units (default: every model evaluated on the set)."),
    ] = None,
) -> None:
    """Does the challenger beat the champion? Exit 0 pass, 3 fail, 4 inconclusive."""
    from mlprod.evaluate import gate_models, get_profile, load_profiles

    with open_workspace() as ws:
        chosen = get_profile(
            profile or ws.config.evaluate.profile, load_profiles(ws.config.evaluate.profiles)
        )
        verdict = gate_models(
            ws, champion, challenger, evaluation_set, chosen, max_slice_regression=max_slice_regression,
            min_improvement=min_improvement, units_of=units_of,
        )  # fmt: skip
    style = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[verdict.decision]
    out.print(f"[bold {style}]{verdict.decision.upper()}[/]: {verdict.challenger} vs {verdict.champion}")
    for reason in verdict.reasons:
        out.print(f"  - {reason}", markup=False)
    raise typer.Exit(GATE_EXIT[verdict.decision])


def print_leaderboard(board: Leaderboard, *, labels: dict[str, str] | None = None) -> None:
    """The leaderboard as a table: rank, utility, each metric, Pareto front, constraint failures;
    the metrics of lowest weight give way first in a narrow terminal.

    ``labels`` shows models by another name than their reference (e.g. the demo's candidate names).
    """
    title = f"leaderboard {board.id[:12]} · profile {board.profile.name} · set {board.evaluation_set}"
    rows = []
    for e in board.entries:
        failures = "; ".join(e.failures) + ("; missing " + ", ".join(e.missing) if e.missing else "")
        rows.append(
            {
                "rank": e.rank,
                "model": labels.get(e.ref, e.ref) if labels else e.ref,
                "utility": e.utility,
                **{f"metric {c}": e.metrics.get(c) for c in board.columns},
                "pareto": e.pareto,
                "failures": failures,
            }
        )
    weights = board.profile.weights
    by_weight = sorted(board.columns, key=lambda c: -weights.get(c, 0.0))
    columns = (
        Column("rank", "rank", text=lambda r: str(r or "-")),
        Column("model", "model", wrap=True),
        Column("utility", "utility", text=_number),
        *(Column(f"metric {c}", c, text=_number, priority=2 + by_weight.index(c)) for c in board.columns),
        Column("pareto", "pareto", text=lambda p: "★" if p else "", priority=1),
        Column("failures", "constraint failures", wrap=True),
    )
    print_table(rows, columns, title=title)


def left_out_notes(board: Leaderboard, fresh: bool = True) -> list[str]:
    """The lines printed after a leaderboard: warnings, the rows ranked, each model left out with why
    and the command that evaluates it, and (for a board just built) the flag that does it for all."""
    lines = list(board.warnings)
    if board.rows:
        lines.append(f"ranked on the rows {board.evaluation_set} selects at {board.rows}")
    for x in board.excluded:
        lines.append(f"left out: {x}")
        if x.command:
            lines.append(f"  evaluate it: {x.command}")
    if fresh and board.excluded:
        again = f"mlprod eval leaderboard --set {board.evaluation_set} --profile {board.profile.name}"
        lines.append(f"evaluate every model left out and rank again: {again} --reevaluate")
    return lines


def _print_report(report: EvaluationReport, output_format: str) -> None:
    _check_format(output_format, allowed=("table", "json"))
    if output_format == "json":
        out.print_json(json.dumps(report.to_dict(), default=str))
        return
    title = (
        f"{report.ref} on {report.evaluation_set.name} (commit {report.dataset_commit[:12]}, "
        f"{report.rows:,} rows, seed {report.seed}) · report {report.id[:12]}"
    )
    metrics = [{"metric": name, "value": value} for name, value in report.metrics.items()]
    print_table(metrics, (Column("metric", "metric"), Column("value", "value", text=_number)), title=title)
    slices = report.slices
    if slices.worst is not None:
        out.print(f"worst slice: {slices.worst_name()} {slices.metric} {slices.worst.metric:.4f} "
                  f"({slices.worst.rows:,} rows)")  # fmt: skip
    for shift in report.robustness.shifts:
        out.print(
            f"shift {shift.name}: {shift.metric} {shift.value:.4f} (drop {shift.drop:+.4f})", markup=False
        )
    for fairness in report.fairness:
        dp, eo = fairness.demographic_parity_difference, fairness.equalized_odds_difference
        out.print(
            f"fairness by {fairness.column}: DP difference {dp.value:.4f} [{dp.low:.4f}, {dp.high:.4f}], "
            f"EO difference {eo.value:.4f} [{eo.low:.4f}, {eo.high:.4f}]"
        )
    candidates = report.importance.drop_candidates
    out.print(f"features indistinguishable from zero (drop candidates): {', '.join(candidates) or 'none'}")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _check_format(output_format: str, allowed: tuple[str, ...] = ("table", "json", "csv")) -> None:
    if output_format not in allowed:
        raise InvalidInputError(f"--format {output_format!r}: expected one of {', '.join(allowed)}")
