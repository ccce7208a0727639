"""The flights arriving month by month: validated, screened, reviewed, resumable after a crash."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from mlprod.data import TableStore
from mlprod.demo import arrivals
from mlprod.demo.flights import load_flights
from mlprod.workspace import Workspace


def test_months_arrive_and_a_run_stopped_before_the_review_is_completed(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    flights = load_flights(range(1, 8), sample=0.05)
    tables = TableStore(workspace)
    first = arrivals.commit_months(tables, flights, range(1, 7), report=lambda _: None)
    assert [m.month for m in first] == [1, 2, 3, 4, 5, 6]
    assert all(m.quarantined == 0 and m.flagged_checks == () for m in first)
    expectations = tables.expectations("flights")
    assert expectations is not None and expectations.column("month").maximum is None

    with monkeypatch.context() as patched:  # the process dies right after July's commit
        patched.setattr(arrivals, "_review", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            arrivals.commit_months(tables, flights, [7], report=lambda _: None)
    july = tables.log("flights", limit=1)[0]
    assert july.message == "flights of 2013-07"

    resumed = arrivals.commit_months(tables, flights, [7], report=lambda _: None)
    july_rows = flights.filter(pc.equal(flights.column("month"), 7)).num_rows
    assert resumed[0].resumed and resumed[0].quarantined == july_rows // 200  # the sentinel delays
    review = tables.log("flights", limit=1)[0]
    assert review.message == arrivals.review_message("flights of 2013-07")
    assert review.changes["removed"] == 31  # the 30 replayed copies and the flight they copy
    again = arrivals.commit_months(tables, flights, [7], report=lambda _: None)
    assert tables.log("flights", limit=1)[0].id == review.id and again[0].resumed
