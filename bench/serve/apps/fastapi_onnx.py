"""Bare FastAPI app around an onnxruntime session: the fastest peer, the reference for the 0.8x goal.

Run (by ``bench/serve/run.py``, in mlprod's venv): ``BENCH_MODEL=model.onnx BENCH_INPUTS=a,b,c
uvicorn fastapi_onnx:app --app-dir bench/serve/apps``; the routes are ``bare_app``'s.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from bare_app import bare_app

options = ort.SessionOptions()
options.intra_op_num_threads = 1  # one row: a thread pool only adds hand-offs
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name


def score(matrix: np.ndarray) -> float:
    probabilities = session.run(None, {input_name: matrix})[-1]  # outputs: label, probabilities
    return float(probabilities[0][1])


app = bare_app(score, np.float32)
