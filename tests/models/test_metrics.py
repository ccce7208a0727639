import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.models.metrics import binary_classification_metrics


def test_metrics_on_a_hand_computed_example() -> None:
    y = [0, 0, 1, 1]
    p = [0.1, 0.6, 0.4, 0.9]
    m = binary_classification_metrics(y, p)
    assert m["auc"] == pytest.approx(0.75)  # 3 of the 4 positive/negative pairs are ordered right
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))
    assert m["positive_rate"] == 0.5 and m["rows"] == 4


def test_one_class_only_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="needs both classes"):
        binary_classification_metrics([1, 1], [0.2, 0.3])


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="differ in shape"):
        binary_classification_metrics([0, 1], [0.2])
