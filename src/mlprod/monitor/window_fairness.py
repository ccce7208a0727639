"""Group fairness per window: selection rate, TPR and FPR per group value, and their differences.

Each window keeps the label, the score and the group values of its labelled rows (so memory grows
with the labelled rows, unlike the sketches); ``reports`` then runs ``mlprod.evaluate``'s
``fairness_report`` (demographic parity and equalized-odds differences with bootstrap intervals)
per window and group column. A window with fewer than two groups of ``min_group_rows`` labelled
rows gets no report, and a note saying why.

Examples:
    >>> import pyarrow as pa
    >>> from mlprod.monitor.windows import Windowing
    >>> watch = WindowFairness(("sex",), Windowing.parse("rows:4"), min_group_rows=1)
    >>> watch.update(pa.table({"prediction": [0.9, 0.2, 0.8, 0.7], "label": [1.0, 0.0, 1.0, None],
    ...                        "sex": ["f", "f", "m", "m"]}), 0)
    >>> [r.metrics() for r in watch.reports()["sex"] if r]
    [{'dp_difference': 0.5, 'eo_difference': 0.0}]
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError
from mlprod.evaluate.fairness import FairnessReport, fairness_report
from mlprod.monitor.reference import LABEL, PREDICTION
from mlprod.monitor.windows import Windowing

MIN_GROUP_ROWS = 30


class WindowFairness:
    """Accumulates the labelled rows of every window for the group columns ``columns``."""

    def __init__(
        self,
        columns: tuple[str, ...],
        windowing: Windowing,
        *,
        threshold: float = 0.5,
        min_group_rows: int = MIN_GROUP_ROWS,
        seed: int = 0,
    ) -> None:
        self.columns = columns
        self.windowing = windowing
        self.threshold = threshold
        self.min_group_rows = min_group_rows
        self.seed = seed
        self.notes: dict[tuple[str, int], str] = {}  # (column, window index): why it has no report
        self._keys: set[int] = set()
        self._rows: dict[int, list[pa.Table]] = defaultdict(list)

    def update(self, table: pa.Table, first_row: int) -> None:
        """Add a batch (``prediction``, ``label``, the group columns); ``first_row``: its position."""
        keys = self.windowing.keys_of(table, first_row)
        self._keys.update(np.unique(keys).tolist())
        labelled = pc.invert(
            pc.or_(
                pc.is_null(table.column(LABEL), nan_is_null=True),
                pc.is_null(table.column(PREDICTION), nan_is_null=True),
            )
        )
        if not pc.any(labelled).as_py():
            return
        kept = table.select([PREDICTION, LABEL, *self.columns]).append_column("_key", pa.array(keys))
        kept = kept.filter(labelled)
        for key in np.unique(kept.column("_key").to_numpy()):
            self._rows[int(key)].append(kept.filter(pc.equal(kept.column("_key"), int(key))))

    def reports(self) -> dict[str, list[FairnessReport | None]]:
        """Per group column, one report per window (in window order); None where none could be made."""
        found: dict[str, list[FairnessReport | None]] = {c: [] for c in self.columns}
        for index, key in enumerate(sorted(self._keys)):
            rows = pa.concat_tables(self._rows[key]) if self._rows.get(key) else None
            for column in self.columns:
                found[column].append(self._report(rows, column, index))
        return found

    def _report(self, rows: pa.Table | None, column: str, index: int) -> FairnessReport | None:
        if rows is None:
            self.notes[(column, index)] = "no labelled rows"
            return None
        groups = pc.cast(rows.column(column), pa.string()).to_pylist()
        try:
            return fairness_report(
                rows.column(LABEL).to_numpy(), rows.column(PREDICTION).to_numpy(), groups, column=column,
                threshold=self.threshold, min_group_rows=self.min_group_rows, seed=self.seed,
            )  # fmt: skip
        except InvalidInputError as exc:  # fewer than two groups large enough: said, not raised
            self.notes[(column, index)] = str(exc)
            return None
