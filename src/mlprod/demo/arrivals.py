"""The flights arriving month by month into the versioned table ``flights``.

January creates the table and its expectations (inferred from January, with ``year``/``month``/
``day`` left unbounded because every month brings new values there). Each later month is validated
(bad rows quarantined, never silently dropped), screened by the poisoning checks, and committed.
While July arrives on ``main``, the airlines' corrections of June arrival delays land on a branch
``corrections`` cut from the training tag, and are merged back by key and cell.
Every step checks what is already stored, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.data import CommitInfo, TableStore, diff_versions, merge_branches
from mlprod.data.screening import quarantine_table
from mlprod.demo.flights import DATASET, TRAINING_TAG

CORRECTIONS = "corrections"
UNBOUNDED = ("year", "month", "day")
GLITCH_MONTH = 7
SENTINEL_DELAY = 9999.0
KEY = ("flight_id",)


@dataclass(frozen=True)
class MonthArrival:
    """What the commit of one month did."""

    month: int
    commit_id: str
    rows: int
    quarantined: int
    flagged_checks: tuple[str, ...]
    deleted_after_review: int = 0
    resumed: bool = False


@dataclass(frozen=True)
class MergeSummary:
    corrected_rows: int
    commit_id: str
    diff_added: int
    diff_changed: int
    diff_method: str


def month_message(month: int) -> str:
    return f"flights of 2013-{month:02d}"


def commit_months(
    tables: TableStore, flights: pa.Table, months: range | list[int], report: Callable[[str], None]
) -> list[MonthArrival]:
    """Commit each month not committed yet (validated, screened); return what each commit did."""
    if DATASET not in {t.name for t in tables.tables()}:
        tables.create(DATASET, key=KEY, buckets=32, description="NYC flights 2013, as they arrive")
    done = {c.message: c for c in tables.log(DATASET)}
    arrivals = []
    for month in months:
        message = month_message(month)
        if message in done:
            arrivals.append(_resumed(tables, month, done[message]))
            if month == GLITCH_MONTH and review_message(message) not in done:  # stopped before the review
                _review(tables, message, _rescreened(tables, month, done[message]))
            continue
        rows = flights.filter(pc.equal(flights.column("month"), month))
        if month == GLITCH_MONTH:
            rows = with_feed_glitch(rows, next_id=int(pc.max(flights.column("flight_id")).as_py()) + 1)
        if tables.expectations(DATASET) is None and arrivals:
            _expect(tables, arrivals[0].commit_id)  # an earlier run stopped before inferring them
        first = tables.expectations(DATASET) is None
        result = tables.commit(
            DATASET,
            rows,
            mode="append",
            message=message,
            validation="off" if first else "quarantine",
            checks=not first,
        )
        if first:
            _expect(tables, result.commit_id)
        quarantined = result.notes.get("quarantined", {}).get("rows", 0)
        poisoning = result.notes.get("poisoning")
        flagged = tuple(f.check for f in poisoning.flagged) if poisoning is not None else ()
        removed = _review(tables, message, result.notes["suspicious_keys"]) if flagged else 0
        arrivals.append(
            MonthArrival(month, result.commit_id, result.counts["added"], quarantined, flagged, removed)
        )
        checks = (
            "not run (the first month is the reference)" if first else ", ".join(flagged) or "nothing flagged"
        )
        report(
            f"  {message}: +{result.counts['added']:,} rows, {quarantined:,} quarantined, "
            f"poisoning checks: {checks}"
            + (f" → {removed:,} flagged rows reviewed and deleted" if removed else "")
        )
    return arrivals


def with_feed_glitch(rows: pa.Table, *, next_id: int, seed: int = 7) -> pa.Table:
    """The month as a faulty feed delivers it: 0.5 % of departure delays are the sentinel 9999, and
    one flight is replayed under fresh ids (1 % of the month, at least 30 copies)."""
    rng = np.random.default_rng(seed)
    delays = rows.column("dep_delay").to_numpy(zero_copy_only=False).copy()
    delays[rng.choice(rows.num_rows, size=max(1, rows.num_rows // 200), replace=False)] = SENTINEL_DELAY
    rows = rows.set_column(rows.schema.get_field_index("dep_delay"), "dep_delay", pa.array(delays))
    copies = max(30, rows.num_rows // 100)
    replayed = pa.concat_tables([rows.slice(0, 1)] * copies)
    ids = pa.array(np.arange(next_id, next_id + copies), pa.int64())
    replayed = replayed.set_column(replayed.schema.get_field_index("flight_id"), "flight_id", ids)
    return pa.concat_tables([rows, replayed])


def tag_training(tables: TableStore) -> str:
    """Tag the current head as the training data (once)."""
    if TRAINING_TAG not in {r.name for r in tables.refs(DATASET)}:
        tables.tag(DATASET, TRAINING_TAG)
    return tables.resolve(DATASET, TRAINING_TAG).id


def merge_corrections(tables: TableStore, *, seed: int = 13) -> MergeSummary:
    """Correct 1 % of June's arrival delays on a branch cut from the training tag, merge it into main."""
    refs = {r.name: r for r in tables.refs(DATASET)}
    if CORRECTIONS not in refs:
        tables.branch(DATASET, CORRECTIONS, TRAINING_TAG)
        refs = {r.name: r for r in tables.refs(DATASET)}
    if refs[CORRECTIONS].commit_id == refs[TRAINING_TAG].commit_id:
        june = tables.checkout(DATASET, TRAINING_TAG)
        june = june.filter(pc.and_(pc.equal(june.column("month"), 6), pc.is_valid(june.column("arr_delay"))))
        picked = np.random.default_rng(seed).choice(
            june.num_rows, size=max(1, june.num_rows // 100), replace=False
        )
        corrected = june.take(pa.array(np.sort(picked)))
        delay = pc.add(corrected.column("arr_delay"), 7.0)
        corrected = corrected.set_column(corrected.schema.get_field_index("arr_delay"), "arr_delay", delay)
        tables.commit(
            DATASET, corrected, branch=CORRECTIONS, message="airline corrections of June arrival delays"
        )
    corrected_rows = tables.resolve(DATASET, CORRECTIONS).changes.get("changed", 0)
    merged = merge_branches(tables, DATASET, CORRECTIONS, message="merge June corrections")
    diff = diff_versions(tables, DATASET, TRAINING_TAG, "main")
    summary = diff.summary()
    return MergeSummary(
        corrected_rows, merged.commit.commit_id, int(summary["added"]), int(summary["changed"]), diff.method
    )


def review_message(message: str) -> str:
    return f"remove rows flagged in {message} after review"


def _review(tables: TableStore, message: str, suspicious: pa.Table) -> int:
    """Delete the rows the poisoning checks flagged (here the review accepts every flag)."""
    if suspicious.num_rows:
        tables.commit(DATASET, suspicious, mode="delete", message=review_message(message))
    return int(suspicious.num_rows)


def _rescreened(tables: TableStore, month: int, commit: CommitInfo) -> pa.Table:
    """The keys the checks flag in a month committed by a run that stopped before reviewing them."""
    rows = tables.checkout(DATASET, commit.id)
    rows = rows.filter(pc.equal(rows.column("month"), month))
    report = tables.check_batch(DATASET, rows, commit.parents[0])
    return rows.select(list(KEY)).take(pa.array(report.suspicious_rows))


def _resumed(tables: TableStore, month: int, commit: CommitInfo) -> MonthArrival:
    """A month committed by an earlier run, with the rows it quarantined then."""
    side = quarantine_table(DATASET)
    held = 0
    if side in {t.name for t in tables.tables()}:
        marker = f"held back from {commit.id[:12]}"
        held = sum(c.changes.get("added", 0) for c in tables.log(side) if c.message == marker)
    return MonthArrival(month, commit.id, commit.changes.get("added", 0), held, (), resumed=True)


def _expect(tables: TableStore, commit_id: str) -> None:
    tables.infer_expectations(DATASET, commit_id, unbounded=UNBOUNDED)
