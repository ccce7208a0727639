"""A small real LightGBM model on a synthetic matrix, as the model-agnostic evaluation code sees it."""

from __future__ import annotations

from collections.abc import Callable

import lightgbm as lgb
import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def fit_booster(matrix: np.ndarray, y: np.ndarray, *, categorical: int, rounds: int = 60) -> Predict:
    """Probabilities from a seeded, single-threaded booster; column ``categorical`` is a category."""
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0}
    data = lgb.Dataset(matrix, y, categorical_feature=[categorical])
    booster = lgb.train(params, data, num_boost_round=rounds)
    return lambda m: np.asarray(booster.predict(m))
