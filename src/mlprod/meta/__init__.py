"""Metadata database: engine creation, schema and migrations."""

from mlprod.meta.database import connect, upgrade_to_head
from mlprod.meta.tables import metadata

__all__ = ["connect", "metadata", "upgrade_to_head"]
