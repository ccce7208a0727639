"""Versioned tables: keyed, bucketed, content-addressed Parquet with commits, branches, diff and merge."""

from mlprod.data.diff import TableDiff, diff_versions
from mlprod.data.gc import GcReport, collect_garbage
from mlprod.data.history import CommitInfo, Ref, TableInfo
from mlprod.data.ingest import read_table_file, to_arrow
from mlprod.data.merge import Conflict, MergeResult, merge_branches
from mlprod.data.tables import CommitResult, TableStore

__all__ = [
    "CommitInfo",
    "CommitResult",
    "Conflict",
    "GcReport",
    "MergeResult",
    "Ref",
    "TableDiff",
    "TableInfo",
    "TableStore",
    "collect_garbage",
    "diff_versions",
    "merge_branches",
    "read_table_file",
    "to_arrow",
]
