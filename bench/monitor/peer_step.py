"""What every drift runner shares (it runs in the peers' virtual environments too: standard library only).

Examples:
    >>> cpu_time() > 0
    True
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path


def cpu_time() -> float:
    """CPU seconds of this process (all its threads) and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def runner_arguments(description: str | None) -> argparse.Namespace:
    """A runner's arguments: the reference and current Parquet files, the column kinds, the output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--current", type=Path, required=True)
    parser.add_argument("--columns", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()
