"""Bare FastAPI app around LightGBM's ``Booster.predict``: the model with no serving system around it.

Run (by ``bench/serve/run.py``, in mlprod's venv): ``BENCH_MODEL=model.txt BENCH_INPUTS=a,b,c
uvicorn fastapi_lightgbm:app --app-dir bench/serve/apps``; the routes are ``bare_app``'s.
"""

from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np
from bare_app import bare_app

booster = lgb.Booster(model_file=os.environ["BENCH_MODEL"])


def score(matrix: np.ndarray) -> float:
    # one thread: for a single row, OpenMP's fan-out costs more than the trees
    return float(booster.predict(matrix, num_threads=1)[0])


app = bare_app(score, np.float64)
