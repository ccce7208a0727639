"""Arrays on ordinary memory pages while a join in memory runs, not on transparent huge pages.

numpy asks the kernel to back every array of 4 MB or more with 2 MB huge pages. A join in memory makes
and drops about a gigabyte of such arrays per source pass, and the kernel zeroes each fresh huge page
whole: on a 2-core machine, a quarter of the join's CPU time went to that, and system time halved
without it. The switch is numpy's own, process-wide, and is put back afterwards; numpy versions
without it are left as they are.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_inside = [0, True]  # joins running, and the switch as it was before the first


def _switch() -> Callable[[bool], bool] | None:
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2, numpy 1
        try:
            switch: Callable[[bool], bool] = importlib.import_module(module)._set_madvise_hugepage
            return switch
        except (ImportError, AttributeError):
            continue
    return None


@contextmanager
def small_pages() -> Iterator[None]:
    """New numpy arrays are not advised onto huge pages inside the block (in every thread, until the
    last block running in any thread ends)."""
    switch = _switch()
    if switch is None:
        yield
        return
    with _lock:
        if _inside[0] == 0:
            _inside[1] = switch(False)
        _inside[0] += 1
    try:
        yield
    finally:
        with _lock:
            _inside[0] -= 1
            if _inside[0] == 0:
                switch(bool(_inside[1]))
