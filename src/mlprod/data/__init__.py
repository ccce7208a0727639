"""Versioned tables: keyed, bucketed, content-addressed Parquet with commits, branches, diff and merge."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.data.diff import TableDiff, diff_versions
    from mlprod.data.fsck import Damage, FsckReport, fsck_tables
    from mlprod.data.gc import Garbage, GcReport, collect_garbage
    from mlprod.data.history import CommitInfo, Ref, TableInfo
    from mlprod.data.ingest import read_table_file, to_arrow
    from mlprod.data.merge import Conflict, MergeResult, merge_branches
    from mlprod.data.poisoning import Finding, PoisoningReport, check_poisoning
    from mlprod.data.skew import ColumnSkew, SkewReport
    from mlprod.data.skew import skew as skew_between
    from mlprod.data.tables import CommitResult, TableStore
    from mlprod.data.validation import ColumnExpectation, Expectations, ValidationReport, Violation
    from mlprod.data.validation import validate as validate_rows

__all__ = [
    "ColumnExpectation",
    "ColumnSkew",
    "CommitInfo",
    "CommitResult",
    "Conflict",
    "Damage",
    "Expectations",
    "Finding",
    "FsckReport",
    "Garbage",
    "GcReport",
    "MergeResult",
    "PoisoningReport",
    "Ref",
    "SkewReport",
    "TableDiff",
    "TableInfo",
    "TableStore",
    "ValidationReport",
    "Violation",
    "check_poisoning",
    "collect_garbage",
    "diff_versions",
    "fsck_tables",
    "merge_branches",
    "read_table_file",
    "skew_between",
    "to_arrow",
    "validate_rows",
]

__getattr__ = lazy_exports(__name__, __file__)
