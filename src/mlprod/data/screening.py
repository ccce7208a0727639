"""What happens to a batch before it is committed: validation against the table's expectations
(reject, or quarantine the bad rows) and the poisoning checks against a sample of the current version.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from mlprod.data.history import TableInfo
from mlprod.data.manifest import Manifest
from mlprod.data.validation import Expectations, ValidationReport, split, validate
from mlprod.errors import InvalidInputError, ValidationFailedError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

Policy = Literal["reject", "quarantine", "off"]
POLICIES: tuple[str, ...] = ("reject", "quarantine", "off")
QUARANTINE_SUFFIX = ".quarantine"
REFERENCE_ROWS = 50_000
"""Rows of the current version the poisoning checks compare a batch with (whole buckets, by hash)."""


@dataclass(frozen=True)
class Screened:
    """The rows to commit, the rows set aside, and the validation report (None when not validated)."""

    batch: pa.Table
    rejected: pa.Table | None
    report: ValidationReport | None


def screen(info: TableInfo, batch: pa.Table, policy: Policy | None, *, arrival: bool) -> Screened:
    """Validate ``batch`` under ``policy`` (default: reject when the table has expectations).

    The row-count band applies to arrivals (append, replace) only: an upsert of corrections may be
    any size.
    """
    if policy is not None and policy not in POLICIES:
        raise InvalidInputError(f"validation must be one of {', '.join(POLICIES)}, got {policy!r}")
    if policy == "off" or info.expectations is None:
        if policy in ("reject", "quarantine"):
            raise InvalidInputError(
                f"table {info.name!r} has no expectations to validate against; infer them first "
                f"(mlprod data expect {info.name})"
            )
        return Screened(batch, None, None)
    report = validate(batch, Expectations.from_dict(info.expectations))
    if not arrival:
        report = dataclasses.replace(
            report, violations=tuple(v for v in report.violations if v.check != "row_count")
        )
    if report.ok:
        return Screened(batch, None, report)
    if policy in (None, "reject") or report.batch_level:
        why = "nothing was committed"
        if policy == "quarantine":
            why += " (the problem concerns the whole batch, so no rows can be set aside)"
        raise ValidationFailedError(
            f"table {info.name!r}: the batch breaks its expectations, {why}.\n{report.format()}", report
        )
    good, bad = split(batch, report)
    return Screened(good, bad, report)


def quarantine_rows(bad: pa.Table, commit_id: str) -> pa.Table:
    """Set-aside rows keyed by a fresh row id, with the commit they were held back from."""
    batch_id = uuid.uuid4().hex[:12]
    rows = bad.append_column("_row", pa.array([f"{batch_id}:{i}" for i in range(bad.num_rows)], pa.string()))
    rows = rows.append_column("_held_back_from", pa.array([commit_id] * bad.num_rows, pa.string()))
    now = datetime.now(UTC)
    return rows.append_column("_received_at", pa.array([now] * bad.num_rows, pa.timestamp("us", tz="UTC")))


def quarantine_table(table: str) -> str:
    return table + QUARANTINE_SUFFIX


def reference_buckets(manifest: Manifest, max_rows: int = REFERENCE_ROWS) -> list[int]:
    """Buckets holding about ``max_rows`` rows: a sample by key hash, unbiased by arrival order."""
    chosen: list[int] = []
    rows = 0
    for bucket, count in enumerate(manifest.bucket_rows):
        if rows >= max_rows:
            break
        if count:
            chosen.append(bucket)
            rows += count
    return chosen


def screened_features(info: TableInfo, schema: pa.Schema, expectations: Expectations | None) -> list[str]:
    """Columns the poisoning checks score: not the key or label, not times, and not the numeric
    columns left unbounded in the expectations (a month number moves on by design; it is no outlier).
    """
    features = []
    for field in schema:
        if field.name in info.key or field.name == info.label or pa.types.is_temporal(field.type):
            continue
        if expectations is not None and _numeric(field.type):
            known = {c.name: c for c in expectations.columns}.get(field.name)
            if known is not None and known.minimum is None:
                continue
        features.append(field.name)
    return features


def _numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))
