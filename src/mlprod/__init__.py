"""mlprod: everything around a trained model in production."""

__version__ = "0.1.0"
