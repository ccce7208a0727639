"""The BentoML service of the benchmark: the LightGBM model from the BentoML model store, one API.

Run (by ``bench/serve/run.py``, in BentoML's own venv): ``BENTOML_HOME=DIR bentoml serve
bentoml_service:FlightsDelay --working-dir bench/serve/apps --port N``. ``POST /predict`` takes
``{"rows": [[number, ...]]}`` (the model's numeric inputs, categories already encoded) and answers the
list of probabilities; BentoML's own ``/readyz`` says when it is up. One worker, as every server in the
benchmark runs one process. This file never imports mlprod.
"""

from __future__ import annotations

import bentoml
import numpy as np


@bentoml.service(workers=1)
class FlightsDelay:
    model_ref = bentoml.models.BentoModel("flights_delay:latest")

    def __init__(self) -> None:
        self.booster = bentoml.lightgbm.load_model(self.model_ref)

    @bentoml.api
    def predict(self, rows: np.ndarray) -> np.ndarray:
        # one thread, as in the other LightGBM servers: a single row gains nothing from OpenMP
        return np.asarray(self.booster.predict(rows.astype(np.float64), num_threads=1))
