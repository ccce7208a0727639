"""The embedded default scenario: NYC flights 2013 going through production."""

from mlprod.demo.scenario import DemoSummary, run_demo

__all__ = ["DemoSummary", "run_demo"]
