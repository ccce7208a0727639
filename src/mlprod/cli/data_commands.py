"""``mlprod data``: versioned tables — create, commit, log, branch, diff, merge, gc, fsck and more."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlprod.cli.listing import Column, FormatOpt, emit, print_table
from mlprod.cli.state import err, open_workspace, out, read_fast
from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc

if TYPE_CHECKING:
    from mlprod.data import CommitResult
    from mlprod.data.history import CommitInfo, Ref

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


LIST_COLUMNS = (
    Column("table", "table"),
    Column("key", "key"),
    Column("rows", "rows (main)"),
    Column("head", "head", text=lambda v: v[:12]),
    Column("branches", "branches", wrap=True, priority=1),
    Column("tags", "tags", wrap=True, priority=1),
    Column("expectations", "expectations", priority=2),
)


@app.command("list")
def list_(output_format: FormatOpt = "table") -> None:
    """Every table: key, rows on main, branches and tags."""
    from mlprod.meta.fast_read import tables as fast_tables

    found = read_fast(fast_tables)
    if found is None:
        listed = _listed_tables()
    else:
        listed = [
            {
                "table": t.name,
                "key": list(t.key),
                "rows": t.head_rows,
                "head": t.head_id,
                "branches": [r.name for r in t.refs if r.kind == "branch"],
                "tags": [r.name for r in t.refs if r.kind == "tag"],
                "expectations": t.has_expectations,
            }
            for t in found
        ]
    emit(
        listed,
        LIST_COLUMNS,
        output_format,
        empty="no tables yet (mlprod data create NAME --key COLUMN --from FILE)",
    )


def _listed_tables() -> list[dict[str, Any]]:
    from mlprod.data import TableStore

    with open_workspace() as ws:
        tables = TableStore(ws)
        listed = []
        for info in tables.tables():
            head, refs = tables.resolve(info.name), tables.refs(info.name)
            listed.append(
                {
                    "table": info.name,
                    "key": list(info.key),
                    "rows": head.num_rows,
                    "head": head.id,
                    "branches": [r.name for r in refs if r.kind == "branch"],
                    "tags": [r.name for r in refs if r.kind == "tag"],
                    "expectations": bool(info.expectations),
                }
            )
    return listed


@app.command("log")
def log(
    table: TableArg,
    ref: RefOpt = "main",
    limit: Annotated[int, typer.Option(min=1)] = 50,
    output_format: FormatOpt = "table",
) -> None:
    """Commits reachable from a branch, newest first, with what each changed."""
    from mlprod.meta.fast_read import CommitRow, table_log

    commits: list[CommitRow] | list[CommitInfo] | None = read_fast(
        lambda connection: table_log(connection, table, ref, limit)
    )
    if commits is None:
        from mlprod.data import TableStore

        with open_workspace() as ws:
            commits = TableStore(ws).log(table, ref, limit=limit)
    listed = [
        {
            "commit": c.id,
            "parents": list(c.parents),
            "created_at": c.created_at,
            "author": c.author,
            "operation": c.operation,
            "added": c.changes.get("added", 0),
            "removed": c.changes.get("removed", 0),
            "changed": c.changes.get("changed", 0),
            "rows": c.num_rows,
            "message": c.message,
        }
        for c in commits
    ]
    emit(listed, LOG_COLUMNS, output_format)


LOG_COLUMNS = (
    Column("commit", "commit", text=lambda v: v[:12]),
    Column("parents", "parents", text=lambda v: "merge" if len(v) > 1 else "", priority=5),
    Column("created_at", "created (UTC)", priority=2),
    Column("author", "author", wrap=True, priority=4),
    Column("operation", "operation", priority=3),
    Column("added", "+added"),
    Column("removed", "-removed"),
    Column("changed", "~changed"),
    Column("rows", "rows", priority=1),
    Column("message", "message", wrap=True, priority=1),
)


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
    fields = [
        {"column": f.name + (" (key)" if f.name in info.key else ""), "type": str(f.type)}
        for f in manifest.schema or []
    ]
    print_table(fields, (Column("column", "column"), Column("type", "type", wrap=True)))
    if rows:
        _print_rows(rows, info.key)


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
    output_format: FormatOpt = "table",
) -> None:
    """Create (or list, or delete) branches of a table."""
    from mlprod.meta.fast_read import RefRow, table_refs

    refs: list[RefRow] | list[Ref] | None = None
    if name is None:
        refs = read_fast(lambda connection: table_refs(connection, table))
    if refs is None:
        refs = _branch(table, name, start, delete=delete)
        if refs is None:
            return
    columns = (
        Column("name", "name"),
        Column("kind", "kind"),
        Column("commit", "commit", text=lambda v: v[:12]),
        Column("updated_at", "updated (UTC)", priority=1),
    )
    listed = [
        {"name": r.name, "kind": r.kind, "commit": r.commit_id, "updated_at": r.updated_at} for r in refs
    ]
    emit(listed, columns, output_format)


def _branch(table: str, name: str | None, start: str, *, delete: bool) -> list[Ref] | None:
    """The refs of ``table`` when ``name`` is None; else create or delete branch ``name`` (None)."""
    from mlprod.data import TableStore

    with open_workspace() as ws:
        tables = TableStore(ws)
        if name is None:
            return tables.refs(table)
        if delete:
            tables.delete_branch(table, name)
            out.print(f"branch {name} of {table} deleted (its commits stay in the history)")
        else:
            ref = tables.branch(table, name, start)
            out.print(f"branch {name} of {table} created at {ref.commit_id[:12]}")
    return None


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
    rows: Annotated[
        int | None,
        typer.Option(
            help="Changed cells / added / removed rows to print (default: 10 in a table, all "
            "in JSON or CSV).",
            show_default=False,
        ),
    ] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Counts only.")] = False,
    output_format: FormatOpt = "table",
) -> None:
    """Rows added, removed and changed between two versions, with old and new values per cell.

    In JSON or CSV: one object per change with the keys change (added, removed or changed), key
    (the row's key columns), column, old and new (changed cells) and row (added or removed rows).
    """
    from mlprod.data import TableStore, diff_versions

    with open_workspace() as ws:
        result = diff_versions(TableStore(ws), table, old, new)
    if output_format != "table":
        emit(_diff_changes(result, rows, counts_only=summary), DIFF_COLUMNS, output_format)
        return
    rows = 10 if rows is None else rows
    counts = result.summary()
    out.print(
        f"{table}: {old} ({result.old[:12]}) → {new} ({result.new[:12]}): +{counts['added']:,} added, "
        f"-{counts['removed']:,} removed, ~{counts['changed']:,} changed "
        f"\\[{result.method}, {result.rows_read:,} rows read]"
    )
    cells: dict[str, int] = counts["cells"]
    if cells:
        per_column = [{"column": column, "cells": n} for column, n in cells.items()]
        print_table(per_column, (Column("column", "column"), Column("cells", "changed cells")))
    if summary:
        return
    for title, part in (
        ("changed cells", result.cells()),
        ("added", result.added),
        ("removed", result.removed),
    ):
        if part.num_rows:
            out.print(f"{title} (first {min(rows, part.num_rows)} of {part.num_rows:,}):")
            _print_rows(part.slice(0, rows).to_pylist(), result.key)


DIFF_COLUMNS = (
    Column("change", "change"),
    Column("key", "key"),
    Column("column", "column"),
    Column("old", "old"),
    Column("new", "new"),
    Column("row", "row"),
)


def _diff_changes(result: Any, limit: int | None, *, counts_only: bool) -> list[dict[str, Any]]:
    """A diff as one object per change (``--summary``: one per changed column, with its count)."""
    if counts_only:
        counts = result.summary()
        return [
            *(
                {"change": kind, "key": None, "column": None, "old": None, "new": None, "row": counts[kind]}
                for kind in ("added", "removed", "changed")
            ),
            *(
                {"change": "cells", "key": None, "column": c, "old": None, "new": None, "row": n}
                for c, n in counts["cells"].items()
            ),
        ]
    changes: list[dict[str, Any]] = []
    for cell in _head(result.cells(), limit):
        key = {k: cell[k] for k in result.key}
        changes.append(
            {
                "change": "changed",
                "key": key,
                "column": cell["column"],
                "old": cell["old"],
                "new": cell["new"],
                "row": None,
            }
        )
    for kind, part in (("added", result.added), ("removed", result.removed)):
        for row in _head(part, limit):
            changes.append(
                {
                    "change": kind,
                    "key": {k: row[k] for k in result.key},
                    "column": None,
                    "old": None,
                    "new": None,
                    "row": row,
                }
            )
    return changes


def _head(part: Any, limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (part if limit is None else part.slice(0, limit)).to_pylist()
    return rows


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
            conflicts = [
                {
                    "key": str(c.key),
                    "column": c.column,
                    "base": repr(c.base),
                    "ours": repr(c.ours),
                    "theirs": repr(c.theirs),
                }
                for c in exc.conflicts[:50]
            ]
            columns = [Column(k, k, wrap=k != "key") for k in ("key", "column", "base", "ours", "theirs")]
            print_table(conflicts, columns, title="conflicts (nothing committed)", console=err, hint=None)
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
    listed = [
        {
            "column": c.name,
            "type": c.type,
            "nullable": c.nullable,
            "range": "" if c.minimum is None else f"{c.minimum:.6g} to {c.maximum:.6g}",
            "categories": ""
            if c.categories is None
            else ", ".join(c.categories[:8])
            + (f" and {len(c.categories) - 8:,} more" if len(c.categories) > 8 else ""),
        }
        for c in expectations.columns
    ]
    columns = (
        Column("column", "column"),
        Column("type", "type"),
        Column("nullable", "nullable"),
        Column("range", "range", wrap=True),
        Column("categories", "categories", wrap=True, priority=1),
    )
    print_table(listed, columns, title=f"expectations of {table}", hint="mlprod.toml keeps them all")
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
    output_format: FormatOpt = "table",
) -> None:
    """Per-column skew between two versions: PSI, KS, null fractions; drifted columns flagged."""
    from mlprod.data import TableStore, skew_between

    with open_workspace() as ws:
        tables = TableStore(ws)
        report = skew_between(tables.checkout(table, reference), tables.checkout(table, current))
    listed = [
        {
            "column": c.name,
            "kind": c.kind,
            "psi": c.psi,
            "ks": c.ks,
            "null_fraction_reference": c.null_fraction_reference,
            "null_fraction_current": c.null_fraction_current,
            "drifted": c.drifted,
        }
        for c in report.columns
    ]
    emit(listed, SKEW_COLUMNS, output_format)
    if output_format == "table" and (report.only_in_reference or report.only_in_current):
        out.print(
            f"only in {reference}: {list(report.only_in_reference)}; "
            f"only in {current}: {list(report.only_in_current)}"
        )


def _fraction(value: float) -> str:
    return f"{value:.1%}"


SKEW_COLUMNS = (
    Column("column", "column"),
    Column("kind", "kind", priority=2),
    Column("psi", "PSI", text=lambda v: f"{v:.3f}"),
    Column("ks", "KS", text=lambda v: "" if v is None else f"{v:.3f}"),
    Column("null_fraction_reference", "nulls (ref)", text=_fraction, priority=1),
    Column("null_fraction_current", "nulls (cur)", text=_fraction, priority=1),
    Column("drifted", "drifted", style=lambda v: "bold red" if v else None),
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
        objects = [
            {"object": g.sha256, "bytes": g.size, "age": f"{g.age_seconds / 3600:.1f} h"}
            for g in report.objects[:show]
        ]
        columns = (
            Column("object", "object"),
            Column("bytes", "bytes", priority=1),
            Column("age", "age", priority=2),
        )
        print_table(objects, columns, title="unreferenced objects past the grace period", hint=None)
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
            damage = [
                {
                    "kind": d.kind,
                    "table": d.table,
                    "commit": (d.commit or "")[:12],
                    "object": (d.object or "")[:12],
                    "detail": d.detail,
                }
                for d in report.damage
            ]
            damage_columns = [
                Column(k, k, wrap=k == "detail") for k in ("kind", "table", "commit", "object", "detail")
            ]
            print_table(damage, damage_columns, title="damage", hint="--format json shows every column")
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


def _print_rows(rows: list[dict[str, Any]], key: tuple[str, ...] | list[str]) -> None:
    """Rows of a table, its key columns first; the columns that do not fit are named in a note."""
    names = [*(k for k in key if k in rows[0]), *(k for k in rows[0] if k not in key)]
    columns = [
        Column(n, n, text=str, wrap=isinstance(rows[0][n], str), priority=0 if n in key else 1 + i)
        for i, n in enumerate(names)
    ]
    print_table(rows, columns, hint="mlprod data checkout writes every column")
