"""Save the benchmark's LightGBM text model into a BentoML model store, run inside BentoML's own venv.

Run (by ``bench/serve/run.py``): ``BENTOML_HOME=DIR bentoml-venv/bin/python bentoml_save.py MODEL.txt``.
Saves the booster as ``flights_delay`` with ``bentoml.lightgbm.save_model`` and prints the tag that
``bentoml_service.py`` loads. This file never imports mlprod.
"""

from __future__ import annotations

import sys


def main() -> None:
    import bentoml
    import lightgbm as lgb

    booster = lgb.Booster(model_file=sys.argv[1])
    print(bentoml.lightgbm.save_model("flights_delay", booster).tag)


if __name__ == "__main__":
    main()
