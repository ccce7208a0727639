"""``mlprod data``: versioned tables — create, commit, log, branch, diff, merge, gc, fsck and more."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mlprod.cli.state import err, open_workspace, out
from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc

if TYPE_CHECKING:
    from mlprod.data import CommitResult

app = typer.Typer(
    help="Versioned tables: create, commit, log, show, checkout, branch, tag, diff, merge, expect, "
    "validate, skew, check, gc, fsck.",
    no_args_is_help=True,
)

TableArg = Annotated[str, typer.Argument(help="Table name.")]
RefOpt = Annotated[str, typer.Option("--ref", "-r", help="Branch, tag or commit id (prefix).")]
ModeOpt = Annotated[str, typer.Option("--mode", help="append, upsert, delete or replace.")]


@app.command("create")
def create(
    table: TableArg,
    key: Annotated[str, typer.Option("--key", "-k", help="Primary key column(s), comma-separated.")],
    source: Annotated[Path | None, typer.Option("--from", help="Initial rows: Parquet or CSV.")] = None,
    buckets: Annotated[int, typer.Option(help="Hash buckets (fixed for the table's life).")] = 128,
    label: Annotated[str | None, typer.Option(help="Label column, for the poisoning checks.")] = None,
    message: Annotated[str, typer.Option("--message", "-m")] = "",
) -> None:
    """Create a table keyed by one or more columns, optionally with its first rows."""
    from mlprod.data import TableStore

    keys = [k.strip() for k in key.split(",") if k.strip()]
    with open_workspace() as ws:
        tables = TableStore(ws)
        tables.create(table, key=keys, data=source, buckets=buckets, label=label, message=message)
        head = tables.resolve(table)
    out.print(
        f"table {table} created (key {', '.join(keys)}, {buckets} buckets): "
        f"{head.num_rows:,} rows at {head.short_id}"
    )


@app.command("commit")
def commit(
    table: TableArg,
    source: Annotated[Path, typer.Argument(help="Rows to commit: Parquet or CSV.")],
    mode: ModeOpt = "upsert",
    branch: Annotated[str, typer.Option("--branch", "-b")] = "main",
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    allow_type_change: Annotated[bool, typer.Option(help="Let a column change type.")] = False,
    allow_lossy_cast: Annotated[
        bool, typer.Option(help="Round or truncate values that do not fit a column's type exactly.")
    ] = False,
    allow_new_columns: Annotated[
        bool, typer.Option(help="Add columns the table does not have yet (schema evolution, for good).")
    ] = False,
    validation: Annotated[
        str | None, typer.Option(help="reject, quarantine or off (default: reject if expectations exist).")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Run the poisoning checks and report them.")] = False,
) -> None:
    """Commit a file's rows to a branch as append, upsert, delete (by key) or replace."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        result = TableStore(ws).commit(
            table,
            source,
            mode=mode,  # type: ignore[arg-type]
            branch=branch,
            message=message,
            allow_type_change=allow_type_change,
            allow_lossy_cast=allow_lossy_cast,
            allow_new_columns=allow_new_columns,
            validation=validation,  # type: ignore[arg-type]
            checks=check,
        )
    _print_commit(result)


@app.command("list")
def list_() -> None:
    """Every table: key, rows on main, branches and tags."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        tables = TableStore(ws)
        infos = tables.tables()
        rows = [(info, tables.resolve(info.name), tables.refs(info.name)) for info in infos]
    view = Table("table", "key", "rows (main)", "head", "branches", "tags", "expectations")
    for info, head, refs in rows:
        view.add_row(
            info.name,
            ", ".join(info.key),
            f"{head.num_rows:,}",
            head.short_id,
            ", ".join(r.name for r in refs if r.kind == "branch"),
            ", ".join(r.name for r in refs if r.kind == "tag"),
            "yes" if info.expectations else "no",
        )
    out.print(view if infos else "no tables yet (mlprod data create NAME --key COLUMN --from FILE)")


@app.command("log")
def log(
    table: TableArg,
    ref: RefOpt = "main",
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Commits reachable from a branch, newest first, with what each changed."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        commits = TableStore(ws).log(table, ref, limit=limit)
    view = Table(
        "commit", "created (UTC)", "author", "operation", "+added", "-removed", "~changed", "rows", "message"
    )
    for c in commits:
        view.add_row(
            c.short_id + (" (merge)" if len(c.parents) > 1 else ""),
            f"{c.created_at:%Y-%m-%d %H:%M:%S}",
            c.author,
            c.operation,
            f"{c.changes.get('added', 0):,}",
            f"{c.changes.get('removed', 0):,}",
            f"{c.changes.get('changed', 0):,}",
            f"{c.num_rows:,}",
            c.message,
        )
    out.print(view)


@app.command("show")
def show(
    table: TableArg,
    ref: RefOpt = "main",
    head: Annotated[int, typer.Option(help="Rows to print.")] = 5,
) -> None:
    """Schema, key, head commit and first rows of a version."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        tables = TableStore(ws)
        info = tables.info(table)
        commit = tables.resolve(table, ref)
        manifest = tables.manifest(commit.id)
        rows = tables.checkout(table, commit.id).slice(0, head).to_pylist()
    out.print(
        f"{table} @ {ref} = commit {commit.id}: {commit.num_rows:,} rows, key {', '.join(info.key)}, "
        f"{info.buckets} buckets, {len(manifest.deltas)} pending change set(s)"
    )
    schema = Table("column", "type")
    for field in manifest.schema or []:
        schema.add_row(field.name + (" (key)" if field.name in info.key else ""), str(field.type))
    out.print(schema)
    if rows:
        out.print(_rows_table(rows))


@app.command("checkout")
def checkout(
    table: TableArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Write to this .parquet or .csv file.")],
    ref: RefOpt = "main",
    as_of: Annotated[
        str | None,
        typer.Option(
            help="The version current at this time (e.g. 2026-01-31T12:00, Z or an offset; UTC if none)."
        ),
    ] = None,
) -> None:
    """Write a version (branch, tag, commit, or as of a time) to a Parquet or CSV file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from mlprod.data import TableStore
    from mlprod.diskspace import full_error, is_disk_full

    if output.suffix.lower() not in (".parquet", ".csv"):
        raise InvalidInputError(f"{output}: the output must end in .parquet or .csv")
    when = parse_optional_utc(as_of, "--as-of")
    with open_workspace() as ws:
        tables = TableStore(ws)
        commit = tables.resolve(table, ref, as_of=when)
        rows = tables.checkout(table, commit.id)
    try:
        if output.suffix.lower() == ".csv":
            pacsv.write_csv(rows, output)
        else:
            pq.write_table(rows, output)
    except OSError as exc:
        output.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise full_error(f"writing {rows.num_rows:,} rows", output, after="no file was left") from exc
        raise
    out.print(f"{table} commit {commit.short_id}: {rows.num_rows:,} rows written to {output}")


@app.command("branch")
def branch(
    table: TableArg,
    name: Annotated[str | None, typer.Argument(help="New branch (omit to list branches and tags).")] = None,
    start: Annotated[str, typer.Option("--from", help="Where the branch starts.")] = "main",
    delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete the branch instead.")] = False,
) -> None:
    """Create (or list, or delete) branches of a table."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        tables = TableStore(ws)
        if name is None:
            refs = tables.refs(table)
        elif delete:
            tables.delete_branch(table, name)
            out.print(f"branch {name} of {table} deleted (its commits stay in the history)")
            return
        else:
            ref = tables.branch(table, name, start)
            out.print(f"branch {name} of {table} created at {ref.commit_id[:12]}")
            return
    view = Table("name", "kind", "commit", "updated (UTC)")
    for r in refs:
        view.add_row(r.name, r.kind, r.commit_id[:12], f"{r.updated_at:%Y-%m-%d %H:%M:%S}")
    out.print(view)


@app.command("tag")
def tag(
    table: TableArg, name: Annotated[str, typer.Argument(help="Tag name.")], ref: RefOpt = "main"
) -> None:
    """Name a version for good (a tag never moves)."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        created = TableStore(ws).tag(table, name, ref)
    out.print(f"tag {name} of {table} at {created.commit_id[:12]}")


@app.command("diff")
def diff(
    table: TableArg,
    old: Annotated[str, typer.Argument(help="Old version: branch, tag or commit.")],
    new: Annotated[str, typer.Argument(help="New version: branch, tag or commit.")] = "main",
    rows: Annotated[int, typer.Option(help="Changed cells / added / removed rows to print.")] = 10,
    summary: Annotated[bool, typer.Option("--summary", help="Counts only.")] = False,
) -> None:
    """Rows added, removed and changed between two versions, with old and new values per cell."""
    from mlprod.data import TableStore, diff_versions

    with open_workspace() as ws:
        result = diff_versions(TableStore(ws), table, old, new)
    counts = result.summary()
    out.print(
        f"{table}: {old} ({result.old[:12]}) → {new} ({result.new[:12]}): +{counts['added']:,} added, "
        f"-{counts['removed']:,} removed, ~{counts['changed']:,} changed "
        f"\\[{result.method}, {result.rows_read:,} rows read]"
    )
    cells: dict[str, int] = counts["cells"]
    if cells:
        per_column = Table("column", "changed cells")
        for column, n in cells.items():
            per_column.add_row(column, f"{n:,}")
        out.print(per_column)
    if summary:
        return
    for title, part in (
        ("changed cells", result.cells()),
        ("added", result.added),
        ("removed", result.removed),
    ):
        if part.num_rows:
            out.print(f"{title} (first {min(rows, part.num_rows)} of {part.num_rows:,}):")
            out.print(_rows_table(part.slice(0, rows).to_pylist()))


@app.command("merge")
def merge(
    table: TableArg,
    source: Annotated[str, typer.Argument(help="Branch, tag or commit to merge.")],
    into: Annotated[str, typer.Option(help="Branch that receives the merge.")] = "main",
    policy: Annotated[str | None, typer.Option(help="Settle conflicts: ours or theirs.")] = None,
    resolved: Annotated[
        Path | None, typer.Option(help="Parquet/CSV with the resolved rows of the conflicting keys.")
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    allow_new_columns: Annotated[
        bool, typer.Option(help="Add columns the table does not have yet (schema evolution, for good).")
    ] = False,
) -> None:
    """Three-way merge by key and cell; conflicts are listed and nothing is committed until resolved."""
    from mlprod.data import TableStore, merge_branches
    from mlprod.errors import MergeConflictError

    with open_workspace() as ws:
        try:
            result = merge_branches(
                TableStore(ws),
                table,
                source,
                into=into,
                policy=policy,  # type: ignore[arg-type]  # merge_branches checks the value
                resolved=resolved,
                message=message,
                allow_new_columns=allow_new_columns,
            )
        except MergeConflictError as exc:
            view = Table("key", "column", "base", "ours", "theirs", title="conflicts (nothing committed)")
            for c in exc.conflicts[:50]:
                view.add_row(str(c.key), c.column, repr(c.base), repr(c.ours), repr(c.theirs))
            err.print(view)
            raise
    c = result.commit
    if not c.committed:
        out.print(f"{into} already contains {source}: nothing to merge")
    elif result.fast_forward:
        out.print(f"{into} fast-forwarded to {c.short_id}")
    else:
        out.print(
            f"merged {source} into {into}: commit {c.short_id}, +{c.counts['added']:,} "
            f"-{c.counts['removed']:,} ~{c.counts['changed']:,} rows (base {result.base[:12]}, "
            f"{result.resolved_conflicts} conflicting key(s) resolved)"
        )


@app.command("expect")
def expect(
    table: TableArg,
    ref: RefOpt = "main",
    margin: Annotated[float, typer.Option(help="Widen numeric ranges by this share of their span.")] = 0.1,
    unbounded: Annotated[
        str, typer.Option(help="Comma-separated columns with no range/category check (e.g. month).")
    ] = "",
    clear: Annotated[bool, typer.Option("--clear", help="Remove the stored expectations.")] = False,
) -> None:
    """Infer expectations from a version (types, nulls, ranges, categories, row band) and store them."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        tables = TableStore(ws)
        if clear:
            tables.clear_expectations(table)
            out.print(f"{table}: expectations removed; commits are no longer validated")
            return
        free = [c.strip() for c in unbounded.split(",") if c.strip()]
        expectations = tables.infer_expectations(table, ref, unbounded=free, margin=margin)
    view = Table("column", "type", "nullable", "range", "categories", title=f"expectations of {table}")
    for c in expectations.columns:
        span = "" if c.minimum is None else f"{c.minimum:.4g} … {c.maximum:.4g}"
        cats = (
            ""
            if c.categories is None
            else ", ".join(c.categories[:8]) + (" …" if len(c.categories) > 8 else "")
        )
        view.add_row(c.name, c.type, "yes" if c.nullable else "no", span, cats)
    out.print(view)
    out.print(
        f"batches of {expectations.min_rows:,} to {expectations.max_rows:,} rows; "
        "commits now validate (reject)"
    )


@app.command("validate")
def validate(table: TableArg, source: Annotated[Path, typer.Argument(help="Parquet or CSV file.")]) -> None:
    """Check a file against the table's expectations without committing it (exit 2 on violations)."""
    from mlprod.data import TableStore, read_table_file, validate_rows

    batch = read_table_file(source)
    with open_workspace() as ws:
        expectations = TableStore(ws).expectations(table)
    if expectations is None:
        raise InvalidInputError(f"table {table!r} has no expectations; run: mlprod data expect {table}")
    report = validate_rows(batch, expectations)
    out.print(report.format())
    if not report.ok:
        raise typer.Exit(2)


@app.command("skew")
def skew(
    table: TableArg,
    reference: Annotated[str, typer.Argument(help="Reference version (e.g. the training data's tag).")],
    current: Annotated[str, typer.Argument(help="Version to compare (e.g. serving data).")] = "main",
) -> None:
    """Per-column skew between two versions: PSI, KS, null fractions; drifted columns flagged."""
    from mlprod.data import TableStore, skew_between

    with open_workspace() as ws:
        tables = TableStore(ws)
        report = skew_between(tables.checkout(table, reference), tables.checkout(table, current))
    view = Table("column", "kind", "PSI", "KS", "nulls (ref → cur)", "drifted")
    for c in report.columns:
        view.add_row(
            c.name,
            c.kind,
            f"{c.psi:.3f}",
            "" if c.ks is None else f"{c.ks:.3f}",
            f"{c.null_fraction_reference:.1%} → {c.null_fraction_current:.1%}",
            "[bold red]yes[/]" if c.drifted else "no",
        )
    out.print(view)
    if report.only_in_reference or report.only_in_current:
        out.print(
            f"only in {reference}: {list(report.only_in_reference)}; "
            f"only in {current}: {list(report.only_in_current)}"
        )


@app.command("check")
def check(
    table: TableArg,
    source: Annotated[Path, typer.Argument(help="Parquet or CSV file of incoming rows.")],
    ref: RefOpt = "main",
) -> None:
    """Poisoning checks of a file against a version (as ``commit --check`` runs them), committing nothing.

    Duplicate floods, outliers, label shift and label issues (the last two need the table's label).
    """
    from mlprod.data import TableStore, read_table_file

    batch = read_table_file(source)
    with open_workspace() as ws:
        report = TableStore(ws).check_batch(table, batch, ref)
    out.print(report.format())


@app.command("gc")
def gc(
    grace: Annotated[
        float, typer.Option(help="Keep unreferenced objects younger than this (seconds).")
    ] = 3600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; delete nothing.")] = False,
    show: Annotated[int, typer.Option(help="Objects to list in a dry run.", min=0)] = 50,
    yes_delete_unknown: Annotated[
        bool,
        typer.Option(
            "--yes-delete-unknown",
            help="Delete even when that is more objects than the metadata database knows (refused "
            "otherwise: the database may not be the one the tables were written with).",
        ),
    ] = False,
) -> None:
    """Remove table files that no commit refers to (left by interrupted writers).

    Safe while commits run; refuses to delete anything if a commit's manifest cannot be read, or if it
    would delete more objects than the metadata database knows (unless --yes-delete-unknown).
    """
    from mlprod.data import TableStore, collect_garbage

    with open_workspace() as ws:
        report = collect_garbage(
            TableStore(ws), grace_seconds=grace, dry_run=dry_run, yes_delete_unknown=yes_delete_unknown
        )
    if dry_run and report.objects:
        view = Table("object", "bytes", "age", title="unreferenced objects past the grace period")
        for g in report.objects[:show]:
            view.add_row(g.sha256, f"{g.size:,}", f"{g.age_seconds / 3600:.1f} h")
        out.print(view)
        if len(report.objects) > show:
            out.print(f"… and {len(report.objects) - show:,} more")
    if dry_run:
        out.print(
            f"would remove {report.removed:,} object(s) ({report.removed_bytes / 1e6:.1f} MB), "
            f"kept {report.kept:,}; nothing was deleted"
        )
        if report.exceeds_known and not yes_delete_unknown:
            out.print(
                f"warning: that is more than the {report.known:,} object(s) the metadata database knows; "
                "gc will refuse to delete them without --yes-delete-unknown"
            )
        return
    out.print(
        f"removed {report.removed:,} object(s) ({report.removed_bytes / 1e6:.1f} MB), kept {report.kept:,}, "
        f"cleared {report.temporaries} temporary file(s)"
    )


@app.command("fsck")
def fsck(
    table: Annotated[str | None, typer.Argument(help="Table to check (default: every table).")] = None,
    output_format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Check every ref, commit, manifest (hash and parse) and object (exists and sha256); read-only.

    Exits 2 when anything is damaged, listing each problem.
    """
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from mlprod.data import TableStore, fsck_tables

    if output_format not in ("text", "json"):
        raise InvalidInputError(f"--format must be text or json, got {output_format!r}")
    with open_workspace() as ws:
        tables = TableStore(ws)
        if err.is_terminal and output_format == "text":
            columns = ("checking objects", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("fsck", total=None)
                report = fsck_tables(
                    tables, table, progress=lambda done, total: bar.update(task, completed=done, total=total)
                )
        else:
            report = fsck_tables(tables, table)
    if output_format == "json":
        out.print_json(json.dumps(report.to_dict()))
    else:
        if report.damage:
            view = Table("kind", "table", "commit", "object", "detail", title="damage")
            for d in report.damage:
                view.add_row(d.kind, d.table, (d.commit or "")[:12], (d.object or "")[:12], d.detail)
            out.print(view)
        verdict = "ok" if report.ok else f"{len(report.damage)} problem(s) found"
        out.print(
            f"checked {report.tables} table(s), {report.refs} ref(s), {report.commits} commit(s), "
            f"{report.objects:,} object(s) ({report.bytes / 1e6:.1f} MB): {verdict}"
        )
    if not report.ok:
        raise typer.Exit(2)


def _print_commit(result: CommitResult) -> None:
    c = result.counts
    if not result.committed:
        out.print(f"{result.table}: nothing to commit, {result.branch} stays at {result.short_id}")
    else:
        out.print(
            f"{result.table} {result.branch} → {result.short_id}: +{c['added']:,} -{c['removed']:,} "
            f"~{c['changed']:,} rows, {result.num_rows:,} in total"
            + (f", {result.rewritten_buckets} bucket(s) rewritten" if result.rewritten_buckets else "")
        )
    if result.added_columns:
        out.print(f"added column(s): {', '.join(result.added_columns)}")
    if result.retyped_columns:
        out.print(f"changed type of column(s): {', '.join(result.retyped_columns)}")
    for line in _notes(result.notes):
        out.print(line)


def _notes(notes: dict[str, Any]) -> list[str]:
    lines = []
    if "quarantined" in notes:
        q = notes["quarantined"]
        lines.append(f"quarantined {q['rows']:,} row(s) into table {q['table']} (commit {q['commit'][:12]})")
    if "validation" in notes:
        lines.append(notes["validation"].format())
    if "rounded_columns" in notes:
        lines.append(f"rounded values to fit column(s): {', '.join(notes['rounded_columns'])}")
    if "poisoning" in notes:
        lines.append(notes["poisoning"].format())
    return lines


def _rows_table(rows: list[dict[str, Any]]) -> Table:
    view = Table(*rows[0].keys())
    for row in rows:
        view.add_row(*(str(v) for v in row.values()))
    return view
