"""A uniform sample of a stream of rows in bounded memory (bottom-k: the rows with the smallest random keys).

Every row draws a random key; the sample is the ``size`` rows with the smallest keys seen so far,
which is a uniform sample without replacement of everything added. Rows come back in the order they
arrived, so a time-ordered stream gives a time-ordered sample.

Examples:
    >>> import pyarrow as pa
    >>> sample = BottomKSample(3, seed=0)
    >>> for start in range(0, 10, 4):
    ...     sample.add(pa.table({"x": list(range(start, min(start + 4, 10)))}))
    >>> rows = sample.table().column("x").to_pylist()
    >>> len(rows), rows == sorted(rows)
    (3, True)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_KEY = "__sample_key"
_ORDER = "__sample_order"


class BottomKSample:
    """Keeps a uniform sample of at most ``size`` rows of the tables added."""

    def __init__(self, size: int, *, seed: int = 0) -> None:
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._seen = 0
        self._kept: pa.Table | None = None

    def add(self, table: pa.Table) -> None:
        keys = self._rng.random(table.num_rows)
        order = np.arange(self._seen, self._seen + table.num_rows, dtype=np.int64)
        self._seen += table.num_rows
        keyed = table.append_column(_KEY, pa.array(keys)).append_column(_ORDER, pa.array(order))
        kept = keyed if self._kept is None else pa.concat_tables([self._kept, keyed])
        if kept.num_rows > self.size:
            smallest = np.argpartition(kept.column(_KEY).to_numpy(), self.size - 1)[: self.size]
            kept = kept.take(pa.array(np.sort(smallest)))
        self._kept = kept

    def table(self) -> pa.Table:
        """The sample, in arrival order, with the columns of the tables added."""
        if self._kept is None:
            return pa.table({})
        ordered = self._kept.sort_by(_ORDER)
        return ordered.drop_columns([_KEY, _ORDER])
