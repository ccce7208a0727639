"""Safe model formats: how a model becomes bytes and comes back, never through pickle.

Only formats whose loading cannot run code are accepted. Today: LightGBM's native text model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlprod.errors import ModelFormatError

if TYPE_CHECKING:
    import lightgbm as lgb

LIGHTGBM_TEXT = "lightgbm-text"
SAFE_FORMATS = (LIGHTGBM_TEXT,)


def serialize(model: Any) -> tuple[str, bytes]:
    """Return ``(format, bytes)`` for ``model`` in a safe format, or raise ``ModelFormatError``."""
    if type(model).__module__.split(".")[0] == "lightgbm":
        import lightgbm as lgb  # imported on use: it pulls in scikit-learn and SciPy (~1.5 s)

        booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
        if isinstance(booster, lgb.Booster):
            return LIGHTGBM_TEXT, booster.model_to_string().encode("utf-8")
    raise ModelFormatError(
        f"cannot store a {type(model).__module__}.{type(model).__qualname__} safely: "
        f"supported formats are {', '.join(SAFE_FORMATS)} (a lightgbm.Booster or LGBMModel). "
        "mlprod never stores or loads pickles."
    )


def deserialize(format_name: str, data: bytes) -> lgb.Booster:
    """Rebuild a model from bytes written by ``serialize``."""
    if format_name != LIGHTGBM_TEXT:
        raise ModelFormatError(
            f"unknown model format {format_name!r}; this mlprod reads {', '.join(SAFE_FORMATS)}"
        )
    import lightgbm as lgb

    try:
        return lgb.Booster(model_str=data.decode("utf-8"))
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"cannot load LightGBM text model: {exc}") from exc
