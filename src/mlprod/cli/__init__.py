"""The ``mlprod`` command line: thin commands over the Python API, rendered with Rich."""

from mlprod.cli.main import app, main

__all__ = ["app", "main"]
