"""Metadata database: engine creation, schema and migrations."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.meta.database import connect, upgrade_to_head
    from mlprod.meta.tables import metadata

__all__ = ["connect", "metadata", "upgrade_to_head"]

__getattr__ = lazy_exports(__name__, __file__)
