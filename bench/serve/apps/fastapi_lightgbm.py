"""Bare FastAPI app around LightGBM's ``Booster.predict``: the model with no serving system around it.

Run (by ``bench/serve/run.py``, in mlprod's venv): ``BENCH_MODEL=model.txt BENCH_INPUTS=a,b,c
uvicorn fastapi_lightgbm:app --app-dir bench/serve/apps``. ``POST /predict`` takes one JSON object of
the model's numeric inputs (``{name: number or null}``, categories already encoded) and answers
``{"probability": p}``; ``GET /health`` answers once the model is loaded.
"""

from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np
from fastapi import FastAPI

booster = lgb.Booster(model_file=os.environ["BENCH_MODEL"])
inputs = os.environ["BENCH_INPUTS"].split(",")
app = FastAPI()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/predict")
async def predict(row: dict[str, float | None]) -> dict[str, float]:
    matrix = np.array([[np.nan if row.get(name) is None else row[name] for name in inputs]], dtype=np.float64)
    # one thread: for a single row, OpenMP's fan-out costs more than the trees
    return {"probability": float(booster.predict(matrix, num_threads=1)[0])}
