"""focal, categorical_focal, log_cosh, poisson, cosine_similarity, hinge against the Keras built-ins.

Each on the current ``KERAS_BACKEND``, where the conventions match: ``BinaryFocalCrossentropy``
with ``apply_class_balancing=True`` (its ``alpha`` counts only then), ``CategoricalFocalCrossentropy``
(its scalar ``alpha`` scales every class), ``LogCosh``, ``Poisson``, ``CosineSimilarity`` (returns
-cos, so ours is 1 + its value), ``Hinge`` and ``SquaredHinge`` (0/1 labels become -1/+1).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import call, reference

import lossplug.keras as lk

pytestmark = pytest.mark.keras

RNG = np.random.default_rng(21)


def builtin(loss, y_true, y_pred):
    return float(keras.ops.convert_to_numpy(loss(y_true.astype("float32"), y_pred.astype("float32"))))


def _binary(logits):
    x = RNG.normal(size=(6, 5)) * 2
    y = (RNG.uniform(size=(6, 5)) < 0.4).astype("float32")
    return y, (x if logits else 1 / (1 + np.exp(-x)))


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.6, 1.5), (0.5, 0.0)])
def test_focal_is_binary_focal_crossentropy_with_class_balancing(from_logits, alpha, gamma):
    y, p = _binary(from_logits)
    expected = builtin(keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, alpha=alpha, gamma=gamma, from_logits=from_logits), y, p)
    ours = lk.FocalLoss(alpha=alpha, gamma=gamma, from_logits=from_logits)
    np.testing.assert_allclose(call(ours, y, p), expected, rtol=2e-5)
    np.testing.assert_allclose(reference("focal", y, p, alpha=alpha, gamma=gamma, from_logits=from_logits),
                               expected, rtol=2e-5)


def test_focal_without_alpha_is_binary_focal_crossentropy_without_balancing():
    y, p = _binary(True)
    expected = builtin(keras.losses.BinaryFocalCrossentropy(gamma=2.0, from_logits=True), y, p)
    np.testing.assert_allclose(call(lk.FocalLoss(from_logits=True), y, p), expected, rtol=2e-5)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (1.0, 0.5)])
def test_categorical_focal_is_categorical_focal_crossentropy(from_logits, alpha, gamma):
    x = RNG.normal(size=(7, 4)) * 2
    p = x if from_logits else np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    labels = RNG.integers(0, 4, size=7)
    y = np.eye(4, dtype="float32")[labels]
    expected = builtin(keras.losses.CategoricalFocalCrossentropy(
        alpha=alpha, gamma=gamma, from_logits=from_logits), y, p)
    ours = lk.CategoricalFocalLoss(alpha=alpha, gamma=gamma, from_logits=from_logits)
    np.testing.assert_allclose(call(ours, y, p), expected, rtol=2e-5)
    np.testing.assert_allclose(call(ours, labels, p), expected, rtol=2e-5)  # integer labels too


def test_log_cosh_and_poisson_are_keras_built_ins():
    y_pred, y_true = RNG.normal(size=(5, 4)) * 3, RNG.normal(size=(5, 4))
    np.testing.assert_allclose(call(lk.LogCoshLoss(), y_true, y_pred),
                               builtin(keras.losses.LogCosh(), y_true, y_pred), rtol=2e-5)
    rate = np.exp(RNG.normal(size=(5, 4)) * 0.5)
    counts = RNG.poisson(2.0, size=(5, 4)).astype("float32")
    np.testing.assert_allclose(call(lk.PoissonLoss(), counts, rate),
                               builtin(keras.losses.Poisson(), counts, rate), rtol=2e-5)
    np.testing.assert_allclose(call(lk.PoissonLoss(log_input=True), counts, np.log(rate)),
                               builtin(keras.losses.Poisson(), counts, rate), rtol=2e-5)


def test_log_cosh_of_large_errors_is_finite():
    y_pred = np.array([[1e3, -1e4]], dtype="float32")
    value = call(lk.LogCoshLoss(), np.zeros_like(y_pred), y_pred)
    assert np.isfinite(value) and value == pytest.approx((1e3 + 1e4) / 2 - np.log(2), rel=1e-6)


def test_cosine_similarity_is_one_plus_keras_minus_cosine():
    y_pred, y_true = RNG.normal(size=(6, 5)), RNG.normal(size=(6, 5))
    keras_value = builtin(keras.losses.CosineSimilarity(axis=-1), y_true, y_pred)
    norms = np.linalg.norm(y_pred, axis=-1) * np.linalg.norm(y_true, axis=-1)
    cos = np.mean(np.sum(y_pred * y_true, -1) / norms)
    assert keras_value == pytest.approx(-cos, rel=1e-5)  # -cos, as its docs say
    np.testing.assert_allclose(call(lk.CosineSimilarityLoss(), y_true, y_pred), 1.0 + keras_value, rtol=2e-5)
    none = call(lk.CosineSimilarityLoss(reduction="none"), y_true, y_pred)
    assert none.shape == (6,)


@pytest.mark.parametrize("plus_minus", [False, True])
def test_hinge_and_squared_hinge_are_keras_built_ins(plus_minus):
    y_pred = RNG.normal(size=(6, 5)) * 1.5
    y = (RNG.uniform(size=(6, 5)) < 0.5).astype("float32")
    if plus_minus:
        y = 2 * y - 1
    np.testing.assert_allclose(call(lk.HingeLoss(), y, y_pred),
                               builtin(keras.losses.Hinge(), y, y_pred), rtol=2e-5)
    np.testing.assert_allclose(call(lk.HingeLoss(squared=True), y, y_pred),
                               builtin(keras.losses.SquaredHinge(), y, y_pred), rtol=2e-5)


def test_focal_logits_of_1e3_have_finite_gradients():
    from keras_helpers import value_and_grad

    y = np.array([[0.0, 1.0, 1.0, 0.0]], dtype="float32")
    x = np.array([[1e3, -1e3, 1e3, -1e3]], dtype="float32")
    for loss in (lk.FocalLoss(from_logits=True, alpha=0.25), lk.FocalLoss(from_logits=True, gamma=0.5)):
        for compiled in (False, True):
            value, grad = value_and_grad(lambda v, loss=loss: loss(y, v), x, compiled=compiled)
            assert np.isfinite(value) and np.all(np.isfinite(grad))
    labels = np.array([1, 0])
    xc = np.array([[1e3, -1e3], [-1e3, 1e3]], dtype="float32")
    value, grad = value_and_grad(lambda v: lk.CategoricalFocalLoss(from_logits=True)(labels, v), xc)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


# --- value checks of poisson, hinge and cosine_similarity ----------------------------------------

_NAN, _INF = float("nan"), float("inf")
BAD_VALUES = [
    # (loss, y_true, y_pred, what the message must say)
    (lambda: lk.PoissonLoss(), [[1.0, -2.0]], [[1.0, 2.0]], r"y_true \(counts\) must lie in \[0, inf\)"),
    (lambda: lk.PoissonLoss(log_input=True), [[-1.0, 2.0]], [[0.5, -3.0]], r"y_true \(counts\)"),
    (lambda: lk.PoissonLoss(), [[1.0, 2.0]], [[0.5, -0.1]],
     r"y_pred \(rates, log_input=False\).*log_input=True"),
    (lambda: lk.HingeLoss(), [[0.0, 2.0]], [[0.5, 1.0]],
     r"all in \{0, 1\} or all in \{-1, 1\}; found values from 0 to 2"),
    (lambda: lk.HingeLoss(), [[-1.0, 0.0, 1.0]], [[0.5, 1.0, 0.0]], r"found -1 and 0 together"),
    (lambda: lk.HingeLoss(squared=True), [[0.5, 1.0]], [[0.5, 1.0]], r"not all integers"),
    (lambda: lk.CosineSimilarityLoss(), [[1.0, 0.0]], [[1.0, _INF]], r"y_pred must be finite"),
    (lambda: lk.CosineSimilarityLoss(), [[_NAN, 0.0]], [[1.0, 2.0]], r"y_true must be finite"),
]


@pytest.mark.parametrize("make, y_true, y_pred, message", BAD_VALUES,
                         ids=[str(i) for i in range(len(BAD_VALUES))])
def test_bad_values_are_named_errors(make, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        call(make(), np.asarray(y_true), np.asarray(y_pred))


@pytest.mark.parametrize("make, y_true, y_pred, message", BAD_VALUES[:6], ids=[str(i) for i in range(6)])
def test_bad_counts_and_labels_in_a_compiled_step_are_nan(make, y_true, y_pred, message):
    from keras_helpers import BACKEND, value_and_grad

    loss, y = make(), np.asarray(y_true, dtype="float32")
    if BACKEND == "torch":  # value_and_grad runs torch eagerly: the check raises there
        with pytest.raises(ValueError, match=message):
            value_and_grad(lambda v: loss(y, v), np.asarray(y_pred), compiled=True)
        return
    value, _ = value_and_grad(lambda v: loss(y, v), np.asarray(y_pred), compiled=True)
    assert np.isnan(value)
    good = np.abs(np.round(y)) if "Poisson" in type(loss).__name__ else (y > 0.5).astype("float32")
    x = np.abs(np.asarray(y_pred, dtype="float32"))
    value, _ = value_and_grad(lambda v: loss(good, v), x, compiled=True)
    assert np.isfinite(value) and value == pytest.approx(float(call(loss, good, x)), rel=1e-5)


@pytest.mark.parametrize("y, good", [
    ([[1.0, 1.0, 1.0]], True), ([[-1.0, -1.0, -1.0]], True), ([[0.0, 0.0, 0.0]], True),
    ([[-1.0, 1.0, 1.0]], True), ([[0.0, 1.0, 0.0]], True),
    ([[-2.0, 1.0, 1.0]], False), ([[-1.0, 0.5, 1.0]], False), ([[1.0, _NAN, 0.0]], False),
    ([[-1.0, 1.0, 0.0]], False),
])
def test_hinge_labels_in_a_compiled_step(y, good):
    """Under XLA the label check is a flag per label (not -1, 0 or 1; 0 where some label is -1):
    every convention that is allowed gives the built-in's number, every other label NaN."""
    from keras_helpers import BACKEND, value_and_grad

    loss, labels = lk.HingeLoss(), np.asarray(y, dtype="float32")
    x = np.array([[0.5, -1.0, 2.0]], dtype="float32")
    if not good and BACKEND == "torch":  # (torch runs the step eagerly: the check raises)
        with pytest.raises(ValueError, match="all in"):
            value_and_grad(lambda v: loss(labels, v), x, compiled=True)
        return
    value, _ = value_and_grad(lambda v: loss(labels, v), x, compiled=True)
    if good:
        assert value == pytest.approx(float(builtin(keras.losses.Hinge(), labels, x)), rel=1e-6)
    else:
        assert np.isnan(value)


def test_good_edge_values_pass_the_checks():
    assert np.isfinite(call(lk.PoissonLoss(), np.array([[0.0, 3.0]]), np.array([[0.0, 2.5]])))
    for y in ([[1.0, 1.0]], [[-1.0, -1.0]], [[0.0, 0.0]], [[-1.0, 1.0]]):
        np.testing.assert_allclose(call(lk.HingeLoss(), np.array(y), np.array([[0.5, -1.0]])),
                                   builtin(keras.losses.Hinge(), np.array(y), np.array([[0.5, -1.0]])),
                                   rtol=1e-6)
    assert call(lk.CosineSimilarityLoss(), np.zeros((1, 2)), np.zeros((1, 2))) == pytest.approx(1.0)
