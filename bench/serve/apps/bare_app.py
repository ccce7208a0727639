"""The bare FastAPI app both bare peers share: one JSON row in, one probability out, nothing else.

``BENCH_INPUTS`` names the model's numeric inputs in order; ``score`` turns the one-row matrix into
the probability. ``POST /predict`` takes ``{name: number or null}`` (categories already encoded) and
answers ``{"probability": p}``; ``GET /health`` answers once the model is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from fastapi import FastAPI


def bare_app(score: Callable[[np.ndarray], float], dtype: type[np.floating]) -> FastAPI:
    inputs = os.environ["BENCH_INPUTS"].split(",")
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/predict")
    async def predict(row: dict[str, float | None]) -> dict[str, float]:
        matrix = np.array([[np.nan if row.get(name) is None else row[name] for name in inputs]], dtype=dtype)
        return {"probability": score(matrix)}

    return app
