"""What every drift runner shares (it runs in the peers' virtual environments too: standard library only).

Examples:
    >>> cpu_time() > 0
    True
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any


def cpu_time() -> float:
    """CPU seconds of this process (all its threads) and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def system_time() -> float:
    """The part of ``cpu_time`` spent in the kernel (page faults, reads, thread switches)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_stime + children.ru_stime


def runner_arguments(description: str | None) -> argparse.Namespace:
    """A runner's arguments: the reference and current Parquet files, the column kinds, the output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--current", type=Path, required=True)
    parser.add_argument("--columns", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


class Inputs:
    """The runner's column kinds and both frames, read with pandas (timed apart as ``read_seconds``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import pandas as pd  # the peer's own pandas

        self.columns: dict[str, list[str]] = json.loads(args.columns.read_text())
        started = time.perf_counter()
        self.reference = pd.read_parquet(args.reference)
        self.current = pd.read_parquet(args.current)
        self.read_seconds = time.perf_counter() - started


class TimedPart:
    """Marks the timed part for ``measured_process`` and measures its wall and CPU seconds."""

    def __enter__(self) -> TimedPart:
        print(json.dumps({"timed_started": time.time()}), flush=True)
        self._started, self._cpu_started, self._sys_started = time.perf_counter(), cpu_time(), system_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        self.cpu_seconds = cpu_time() - self._cpu_started
        self.sys_seconds = system_time() - self._sys_started


def report(
    args: argparse.Namespace, found: dict[str, Any], timed: TimedPart, inputs: Inputs, version: str
) -> None:
    """Write each column's verdict to ``--out``; print the figures as the last JSON line."""
    args.out.write_text(json.dumps({"columns": found}, indent=1))
    figures = {
        "seconds": timed.seconds,
        "cpu_seconds": timed.cpu_seconds,
        "sys_seconds": timed.sys_seconds,
        "read_seconds": inputs.read_seconds,
    }
    print(json.dumps({**figures, "version": version}))
