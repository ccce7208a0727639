"""Bare FastAPI app around an onnxruntime session: the fastest peer, the reference for the 0.8x goal.

Run (by ``bench/serve/run.py``, in mlprod's venv): ``BENCH_MODEL=model.onnx BENCH_INPUTS=a,b,c
uvicorn fastapi_onnx:app --app-dir bench/serve/apps``. ``POST /predict`` takes one JSON object of the
model's numeric inputs (``{name: number or null}``, categories already encoded) and answers
``{"probability": p}``; ``GET /health`` answers once the session is built.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI

options = ort.SessionOptions()
options.intra_op_num_threads = 1  # one row: a thread pool only adds hand-offs
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
inputs = os.environ["BENCH_INPUTS"].split(",")
app = FastAPI()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/predict")
async def predict(row: dict[str, float | None]) -> dict[str, float]:
    matrix = np.array([[np.nan if row.get(name) is None else row[name] for name in inputs]], dtype=np.float32)
    probabilities = session.run(None, {input_name: matrix})[-1]  # outputs: label, probabilities
    return {"probability": float(probabilities[0][1])}
