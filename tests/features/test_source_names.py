"""Feature sources whose column names differ only by case or Unicode form are refused, not joined wrong.

DuckDB binds ``"rate"`` to ``Rate`` and renames a second ``rate`` read from a file to ``rate_1``, so such a
source would give one column's values for the other.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlprod.errors import InvalidInputError
from mlprod.features import Entity, FeatureView, training_frame

DRIVER = Entity("driver", ["driver_id"])
WHEN = pd.Timestamp("2026-01-01", tz="UTC")


def source(names: list[str]) -> pa.Table:
    values = [pa.array([0.1]), pa.array([0.9])]
    return pa.table({"driver_id": [1], "ts": pa.array([WHEN])} | dict(zip(names, values, strict=True)))


def entity_rows() -> pd.DataFrame:
    return pd.DataFrame({"driver_id": [1], "event_time": [WHEN + pd.Timedelta(hours=1)]})


@pytest.mark.parametrize("form", ["table", "frame", "parquet", "csv"])
def test_a_source_with_case_clashing_columns_is_refused(form: str, tmp_path: Path) -> None:
    rows = source(["Rate", "rate"])
    given: object = rows
    if form == "frame":
        given = rows.to_pandas()
    elif form == "parquet":
        given = tmp_path / "stats.parquet"
        pq.write_table(rows, given)
    elif form == "csv":
        given = tmp_path / "stats.csv"
        pacsv.write_csv(rows, given)
    stats = FeatureView("stats", DRIVER, given, ["rate"], timestamp="ts")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="columns 'Rate' and 'rate' differ only by case; SQL engines"):
        training_frame(entity_rows(), [stats])


def test_a_source_with_nfc_and_nfd_forms_of_one_name_is_refused() -> None:
    nfc, nfd = unicodedata.normalize("NFC", "tarif_é"), unicodedata.normalize("NFD", "tarif_é")
    stats = FeatureView("stats", DRIVER, source([nfc, nfd]), [nfc], timestamp="ts")
    with pytest.raises(InvalidInputError, match=r"differ only in Unicode normalization \(NFC vs NFD\)"):
        training_frame(entity_rows(), [stats])


def test_distinct_names_still_join_their_own_values() -> None:
    stats = FeatureView("stats", DRIVER, source(["Rate", "rate_2"]), ["Rate", "rate_2"], timestamp="ts")
    frame = training_frame(entity_rows(), [stats])
    assert (frame.column("Rate").to_pylist(), frame.column("rate_2").to_pylist()) == ([0.1], [0.9])
