"""Save the benchmark's LightGBM text model as an MLflow model, run inside MLflow's own venv.

Run (by ``bench/serve/run.py``): ``mlflow-venv/bin/python mlflow_save.py MODEL.txt OUT_DIR a,b,c``.
``mlflow.lightgbm.save_model`` writes ``OUT_DIR`` with a signature of the numeric inputs (double
columns, the way ``mlflow.models.infer_signature`` records a float frame), so ``mlflow models serve``
enforces the input schema as it does for a logged model. This file never imports mlprod.
"""

from __future__ import annotations

import sys
import warnings


def main() -> None:
    model_file, out_dir, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    warnings.filterwarnings("ignore")
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    booster = lgb.Booster(model_file=model_file)
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name, required=False) for name in names]),
        outputs=Schema([ColSpec("double")]),
    )
    mlflow.lightgbm.save_model(booster, out_dir, signature=signature)
    print(out_dir)


if __name__ == "__main__":
    main()
