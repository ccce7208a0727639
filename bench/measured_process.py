"""One measured benchmark step in its own process: the child's own timing, its peak RSS, and limits.

The child prints a JSON line ``{<started_key>: epoch}`` just before its timed part and, as its last
JSON line, ``{"seconds": …, …}`` after it. The step runs in a new session (so a kill takes its
children too), is killed past ``timeout`` seconds or ``memory_limit_gb`` of RSS, and its peak RSS
is the ``ru_maxrss`` of ``wait4``, so peaks of different steps never mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Outcome:
    """``status`` is ``ok``, ``timeout``, ``RSS>…GB``, ``failed (exit …)`` or ``killed (SIG…)``, with
    ``after Ns`` when the timed part had started; ``ran_for`` is then how long it had run (a lower
    bound of its time); ``result`` is the child's last JSON line."""

    status: str
    seconds: float | None
    peak_bytes: int
    ran_for: float | None
    result: dict[str, Any] = field(default_factory=dict)


def rss_bytes(pid: int) -> int:
    """Current resident set size of a process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def first_to_be_killed() -> None:
    """In the child before exec: should memory run out anyway, the kernel kills this process first."""
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def default_memory_limit() -> float:
    """80 % of the machine's memory in GB (rounded down), so one run cannot bring the machine down."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return float(int(pages * 0.8 / 1e9))


def run_measured(
    cmd: list[str],
    *,
    started_key: str,
    timeout: float,
    memory_limit_gb: float,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run ``cmd`` as one measured step; its stderr goes to ``log``."""
    with open(log, "w") as err, tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=err, env=None if env is None else dict(env), start_new_session=True,
            preexec_fn=first_to_be_killed,
        )  # fmt: skip
        started = time.monotonic()
        stopped = ""
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if not stopped:
                if time.monotonic() - started > timeout:
                    stopped = "timeout"
                elif rss_bytes(process.pid) > memory_limit_gb * 1e9:
                    stopped = f"RSS>{memory_limit_gb:g}GB"
                if stopped:
                    os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.05)
        ended = time.time()
        code = os.waitstatus_to_exitcode(status)
        process.returncode = code  # already reaped by wait4
        out.seek(0)
        lines = [json.loads(line) for line in out.read().splitlines() if line.startswith("{")]
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    began = [line[started_key] for line in lines if started_key in line]
    ran_for = ended - began[0] if began else None
    if code < 0 and not stopped:
        stopped = f"killed ({signal.Signals(-code).name})"
    if not stopped and (code != 0 or not lines or "seconds" not in lines[-1]):
        tail = log.read_text().strip().splitlines()[-3:]
        print(f"  failed: {' | '.join(tail)}", file=sys.stderr)
        stopped = f"failed (exit {code})"
    if stopped:
        return Outcome(
            stopped + (f" after {ran_for:.0f}s" if ran_for is not None else ""), None, peak, ran_for
        )
    return Outcome("ok", lines[-1]["seconds"], peak, ran_for, lines[-1])
