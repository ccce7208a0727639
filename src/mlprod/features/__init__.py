"""Features: entities, views and windowed aggregations, point-in-time training frames, online store."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.features.definitions import (
        Aggregation,
        AggregationView,
        Entity,
        FeatureRef,
        FeatureSet,
        FeatureView,
        TableSource,
    )
    from mlprod.features.durations import format_duration, parse_duration
    from mlprod.features.offline import (
        FrameLineage,
        training_frame,
        training_frame_with_lineage,
        write_training_frame,
    )

__all__ = [
    "Aggregation",
    "AggregationView",
    "Entity",
    "FeatureRef",
    "FeatureSet",
    "FeatureView",
    "FrameLineage",
    "TableSource",
    "format_duration",
    "parse_duration",
    "training_frame",
    "training_frame_with_lineage",
    "write_training_frame",
]

__getattr__ = lazy_exports(__name__, __file__)
