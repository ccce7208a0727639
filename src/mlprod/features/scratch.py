"""Arrays a worker reuses from one source block to the next, instead of taking fresh memory each time.

A block's temporaries are a few arrays of a million words. Allocated anew, each comes back from the
C allocator as fresh pages: glibc gives a large array its own mapping, or trims its arena once the
block's arrays are freed, and the kernel then faults in and zeroes every page of the next block's
arrays again. On a 2-core machine that was a quarter of a million page faults per join, and the
system time they took was a fifth of its CPU time. A ``Scratch`` keeps one array per name and hands
out its first ``count`` elements: a block may use what the last one left, never what it returns.

Examples:
    >>> import numpy as np
    >>> scratch = Scratch()
    >>> first = scratch.array("units", 4, np.int64)
    >>> scratch.array("units", 3, np.int64).base is first.base
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


class Scratch:
    """Named arrays, each reused for as long as it is long enough and of the same type."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, count: int, dtype: type[np.generic]) -> np.ndarray:
        """The first ``count`` elements of the array called ``name`` (contents left from its last
        use), made or grown to fit: to a power of two, as blocks of slightly different sizes come."""
        held = self._arrays.get(name)
        if held is None or held.dtype != dtype or len(held) < count:
            held = self._arrays[name] = np.empty(1 << max(count - 1, 0).bit_length(), dtype=dtype)
        return held[:count]


def array_of(scratch: Scratch | None, name: str, count: int, dtype: type[np.generic]) -> np.ndarray:
    """``scratch``'s array called ``name``, or a new one without a scratch."""
    return np.empty(count, dtype=dtype) if scratch is None else scratch.array(name, count, dtype)
