"""The embedded default scenario: NYC flights 2013 going through production."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.demo.scenario import DemoSummary, run_demo

__all__ = ["DemoSummary", "run_demo"]

__getattr__ = lazy_exports(__name__, __file__)
