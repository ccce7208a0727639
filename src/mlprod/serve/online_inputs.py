"""Entity-key requests: a model's feature-store inputs filled from the online store.

A model trained on a feature set (its lineage names the set) takes some inputs straight from the
set's features. A request may omit those and give the entity keys instead (``origin``, ``tailnum``
…); the server looks the features up in the online store, as of the request's ``as_of`` time or now.
A value the request does give wins over the store. An entity the store does not know (or whose value
is older than its view's TTL) gets nulls, the answer lists the views that missed, and the model
predicts with missing values, as it was trained to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlprod.errors import InvalidInputError
from mlprod.features import FeatureSet
from mlprod.features.online import FeatureLookup
from mlprod.features.online_store import OnlineStore, SqliteOnlineStore
from mlprod.models import ModelVersion


class OnlineInputs:
    """Fills the inputs of one model version that come from its feature set."""

    def __init__(self, lookup: FeatureLookup, inputs: Sequence[str]) -> None:
        self.lookup = lookup
        self.inputs = [name for name in inputs if name in set(lookup.feature_names)]
        self.entity_keys = lookup.entity_keys
        self.local = isinstance(lookup.store, SqliteOnlineStore)  # a read takes microseconds
        self._input_set = frozenset(self.inputs)
        self._key_set = frozenset(self.entity_keys)
        self._all_features = self.inputs == lookup.feature_names  # the looked-up values, as they come

    @classmethod
    def for_version(
        cls, version: ModelVersion, feature_set: FeatureSet, store: OnlineStore
    ) -> OnlineInputs | None:
        """None when none of the version's inputs is a plain feature of the set."""
        expressions = version.lineage.get("features", {})
        names = set(feature_set.feature_names)
        direct = [
            name
            for name in version.signature.input_names
            if expressions.get(name, name) == name and name in names
        ]
        if not direct:
            return None
        return cls(FeatureLookup(store, feature_set), direct)

    def fill(
        self, rows: Sequence[Mapping[str, Any]], *, at: datetime | None = None
    ) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Each row with its missing feature inputs looked up; and per row, the views that missed."""
        filled = []
        misses: list[list[str]] = []
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInputError(f"row {r}: expected an object of fields, got {row!r}")
            if row.keys() >= self._input_set:
                filled.append(dict(row))
                misses.append([])
                continue
            if not row.keys() >= self._key_set:
                absent = [key for key in self.entity_keys if key not in row]
                raise InvalidInputError(
                    f"row {r}: give the feature inputs {self.inputs} or the entity key(s) {absent} "
                    f"to look them up (keys: {self.entity_keys})"
                )
            vector = self.lookup.get(row, at=at)
            # the vector's dict is new for this call: it becomes the row when it holds exactly the inputs
            values = vector.values
            complete = values if self._all_features else {name: values[name] for name in self.inputs}
            complete.update(row)
            filled.append(complete)
            misses.append(list(vector.missing))
        return filled, misses
