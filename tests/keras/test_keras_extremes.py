"""Extreme inputs give finite losses and finite gradients (from the backend's own autodiff)."""

from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import DTYPES, float_context, value_and_grad

import lossplug.keras as lk

pytestmark = pytest.mark.keras

BIG = 1e3
ONE_HOT = np.eye(3)[[0, 2, 1, 1]]
LABELS = np.array([0, 2, 1, 1])
# logits of +-1e3, confidently right for some samples and confidently wrong for others
LOGITS = np.array([[BIG, -BIG, -BIG], [BIG, -BIG, -BIG], [-BIG, BIG, BIG], [BIG, BIG, -BIG]])
# probabilities exactly 0 and 1 (rows sum to 1)
HARD = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])

CASES = {
    "bce-logits": (lambda d: lk.BCELoss(from_logits=True, dtype=d), ONE_HOT, LOGITS),
    "weighted-bce-logits": (
        lambda d: lk.WeightedBCELoss(pos_weight=3.0, neg_weight=0.5, from_logits=True, dtype=d),
        ONE_HOT, LOGITS,
    ),
    "cce-logits": (lambda d: lk.CategoricalCELoss(from_logits=True, dtype=d), ONE_HOT, LOGITS),
    "cce-logits-smoothing": (
        lambda d: lk.CategoricalCELoss(from_logits=True, label_smoothing=0.1, dtype=d), ONE_HOT, LOGITS
    ),
    "sparse-logits": (lambda d: lk.SparseCategoricalCELoss(from_logits=True, dtype=d), LABELS, LOGITS),
    "dice-logits": (lambda d: lk.DiceLoss(from_logits=True, dtype=d), ONE_HOT, LOGITS),
    "dice-label-map-logits": (lambda d: lk.DiceLoss(from_logits=True, dtype=d), LABELS, LOGITS),
    "kl-logits": (lambda d: lk.KLDivLoss(from_logits=True, dtype=d), HARD[[3, 0, 2, 1]], LOGITS),
    "bce-hard": (lambda d: lk.BCELoss(dtype=d), ONE_HOT, HARD),
    "weighted-bce-hard": (lambda d: lk.WeightedBCELoss(pos_weight=2.0, dtype=d), ONE_HOT, HARD),
    "cce-hard": (lambda d: lk.CategoricalCELoss(dtype=d), ONE_HOT, HARD),
    "sparse-hard": (lambda d: lk.SparseCategoricalCELoss(dtype=d), LABELS, HARD),
    "dice-hard": (lambda d: lk.DiceLoss(dtype=d), ONE_HOT, HARD),
    "kl-hard": (lambda d: lk.KLDivLoss(dtype=d), ONE_HOT, HARD),
    "dice-empty": (lambda d: lk.DiceLoss(dtype=d), np.zeros((4, 3)), np.zeros((4, 3))),
    "dice-empty-smooth-0": (lambda d: lk.DiceLoss(smooth=0.0, dtype=d), np.zeros((4, 3)), np.zeros((4, 3))),
    "dice-empty-plain-batch": (
        lambda d: lk.DiceLoss(smooth=0.0, squared=False, aggregation="batch", dtype=d),
        np.zeros((4, 3)), np.zeros((4, 3)),
    ),
    "dice-empty-logits": (
        lambda d: lk.DiceLoss(from_logits=True, smooth=0.0, dtype=d), np.zeros((4, 3)), np.full((4, 3), -BIG)
    ),
    "sparse-all-ignored": (
        lambda d: lk.SparseCategoricalCELoss(from_logits=True, ignore_index=-1, dtype=d),
        np.full(4, -1), LOGITS,
    ),
    "cce-all-ignored": (
        lambda d: lk.CategoricalCELoss(from_logits=True, ignore_index=0, class_weights=[1, 2, 3], dtype=d),
        np.eye(3)[[0, 0, 0, 0]], LOGITS,
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_finite_loss_and_gradient(case, dtype):
    make, y_true, y_pred = CASES[case]
    loss = make(dtype)
    with float_context(dtype):
        value, grad = value_and_grad(lambda p: loss(np.asarray(y_true, dtype), p), y_pred, dtype)
    assert np.isfinite(value) and value >= 0
    assert grad.shape == y_pred.shape and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_values_are_right(dtype):
    def value(loss, y_true, y_pred):
        with float_context(dtype):
            return float(value_and_grad(lambda p: loss(np.asarray(y_true, dtype), p), y_pred, dtype)[0])

    # BCE: a logit of -1e3 for a positive target costs 1e3, of +1e3 costs 0
    assert value(lk.BCELoss(from_logits=True, dtype=dtype), [[1.0, 1.0]], [[-BIG, BIG]]) == pytest.approx(500)
    # CE: the right class 2e3 above the others costs 0, 2e3 below costs 2e3, tied with one: log 2
    assert value(lk.SparseCategoricalCELoss(from_logits=True, dtype=dtype), LABELS, LOGITS) == pytest.approx(
        (0 + 2 * BIG + np.log(2) + np.log(2)) / 4, rel=1e-6
    )
    # probabilities exactly 0 where the target is 1: clipped to eps, -log(1e-7) per term
    expected = -np.log(np.float32(1e-7)) if dtype == "float32" else -np.log(1e-7)
    assert value(lk.BCELoss(dtype=dtype), [[1.0]], [[0.0]]) == pytest.approx(expected, rel=1e-5)
    # empty masks: Dice loss 0 with or without smoothing
    for smooth in (0.0, 1e-5):
        assert value(lk.DiceLoss(smooth=smooth, dtype=dtype), np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    # an all-ignored batch gives 0
    assert value(CASES["sparse-all-ignored"][0](dtype), np.full(4, -1), LOGITS) == 0.0
