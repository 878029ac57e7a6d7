"""The formulas' XLA-friendly forms (Huber as one select, CE as lse - z, KL with one log of p / q)
and TensorFlow's log-softmax, eagerly and under XLA.

Values against ``keras.losses`` and hand-worked NumPy float64, gradients against their closed forms:
Huber's ``clip(e, -delta, delta) / n``, cross-entropy's ``(softmax(x) sum(y) - y) / N``, KL's
``-p / q / N``. Inputs sit on the edges those forms rewrite: ``|e| = delta`` exactly, errors whose
square overflows float32, logits of +-1e3, ``p = 0`` and subnormal ``p``, ``q`` at 0 and 1.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import DTYPES, float_context, tolerance, value_and_grad

import lossplug.keras as lk

pytestmark = pytest.mark.keras

COMPILED = [False, True]


def _run(loss, y_true, y_pred, dtype, compiled):
    y_true = np.asarray(y_true, dtype="int32" if np.asarray(y_true).dtype.kind == "i" else dtype)
    with float_context(dtype):
        return value_and_grad(lambda p: loss(y_true, p), y_pred, dtype, compiled=compiled)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber(delta, dtype, compiled):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(4, 6))
    # errors: exactly +-delta, 0, just inside and outside delta
    err = np.array([delta, -delta, 0.0, 0.999 * delta, -1.001 * delta, 2 * delta])
    err = np.stack([err, -err, 3 * rng.normal(size=6), rng.normal(size=6)])
    y_pred = (y_true + err).astype(dtype).astype(np.float64)
    e = y_pred - y_true.astype(dtype).astype(np.float64)  # the errors as the backend sees them
    value, grad = _run(lk.HuberLoss(delta=delta, dtype=dtype), y_true, y_pred, dtype, compiled)

    a = np.abs(e)
    hand = np.where(a <= delta, 0.5 * e**2, delta * a - 0.5 * delta**2).mean()
    np.testing.assert_allclose(value, hand, **tolerance(dtype))
    np.testing.assert_allclose(grad, np.clip(e, -delta, delta) / e.size, **tolerance(dtype))
    with float_context(dtype):
        theirs = keras.losses.Huber(delta=delta, dtype=dtype)(y_true.astype(dtype), y_pred.astype(dtype))
    np.testing.assert_allclose(value, float(keras.ops.convert_to_numpy(theirs)), **tolerance(dtype))


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_huber_huge_error(dtype, compiled):
    """An error of 1e20: its square (the branch not taken) overflows float32; value and gradient
    stay those of the linear branch."""
    value, grad = _run(lk.HuberLoss(delta=2.0, dtype=dtype), [[0.0, 0.0]], [[1e20, -1e20]], dtype, compiled)
    np.testing.assert_allclose(value, 2.0 * (1e20 - 1.0), rtol=1e-6)
    np.testing.assert_allclose(grad, [[1.0, -1.0]], rtol=1e-6)


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_ce_logits(dtype, compiled):
    rng = np.random.default_rng(1)
    logits = 2 * rng.normal(size=(6, 5))
    logits[0] = [1e3, -1e3, -1e3, 0.0, 1e3]  # ties at the max, and a label 2e3 below it
    labels = np.array([2, 0, 4, 1, 3, 3])
    loss = lk.SparseCategoricalCELoss(from_logits=True, dtype=dtype)
    value, grad = _run(loss, labels, logits, dtype, compiled)

    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    np.testing.assert_allclose(value, -log_p[np.arange(6), labels].mean(), **tolerance(dtype))
    hand_grad = (_softmax(logits) - np.eye(5)[labels]) / 6
    np.testing.assert_allclose(grad, hand_grad, **tolerance(dtype))
    builtin = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
    with float_context(dtype):
        theirs = float(keras.ops.convert_to_numpy(builtin(labels, logits.astype(dtype))))
    np.testing.assert_allclose(value, theirs, **tolerance(dtype))


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_ce_logits_weights_and_ignore(dtype, compiled):
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1e3, -1e3, 0.0], [0.0, 1.0, 2.0]])
    labels = np.array([0, 2, -1, 1])  # sample 2 is ignored
    weights = [2.0, 0.5, 3.0]
    loss = lk.SparseCategoricalCELoss(
        from_logits=True, class_weights=weights, ignore_index=-1, dtype=dtype
    )
    value, grad = _run(loss, labels, logits, dtype, compiled)

    kept = np.array([0, 1, 3])
    p = _softmax(logits)
    w = np.array(weights)[labels[kept]]
    hand = (w * -np.log(p[kept, labels[kept]])).sum() / w.sum()
    hand_grad = np.zeros_like(logits)
    hand_grad[kept] = w[:, None] * (p[kept] - np.eye(3)[labels[kept]]) / w.sum()
    np.testing.assert_allclose(value, hand, **tolerance(dtype))
    np.testing.assert_allclose(grad, hand_grad, **tolerance(dtype))


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_ce_logits_unnormalised_targets(dtype, compiled):
    """The gradient is ``softmax(x) sum(y) - y``: right for targets not summing to 1 (the fused
    ``softmax_cross_entropy_with_logits`` assumes they do)."""
    logits = np.array([[2.0, 0.0, -1.0], [1e3, -1e3, 0.0], [0.0, 1.0, 2.0]])
    y = np.array([[1.0, 1.0, 0.0], [0.2, 0.3, 0.0], [0.0, 0.0, 1.0]])
    value, grad = _run(lk.CategoricalCELoss(from_logits=True, dtype=dtype), y, logits, dtype, compiled)

    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    np.testing.assert_allclose(value, -(y * log_p).sum(-1).mean(), **tolerance(dtype))
    hand_grad = (_softmax(logits) * y.sum(-1, keepdims=True) - y) / 3
    np.testing.assert_allclose(grad, hand_grad, **tolerance(dtype))


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_probabilities(dtype, compiled):
    eps = 1e-7
    p = np.array([
        [0.5, 0.5, 0.0, 0.0],
        [1e-40, 1.0, 0.0, 0.0],  # a subnormal p (float32): its term is below any rounding
        [0.25, 0.25, 0.25, 0.25],
        [0.1, 0.2, 0.3, 0.4],
    ])
    q = np.array([
        [0.0, 1.0, 0.0, 0.0],  # q = 0 where p > 0: clipped to eps; q = 0 where p = 0: no term
        [0.9, 0.05, 0.05, 0.0],
        [0.25, 0.25, 0.25, 0.25],
        [0.4, 0.3, 0.2, 0.1],
    ])
    value, grad = _run(lk.KLDivLoss(dtype=dtype), p, q, dtype, compiled)

    qc = np.clip(q, eps, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / qc), 0.0)
    np.testing.assert_allclose(value, terms.sum(-1).mean(), **tolerance(dtype))
    inside = (q > eps) & (q < 1)  # where the clip passes the gradient through
    hand_grad = np.where(inside, -p / qc, 0.0) / 4
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[inside], hand_grad[inside], **tolerance(dtype))
    # where p is 0 the term and its gradient are exactly 0, whatever q is (q = 0 included)
    assert np.all(grad[p == 0] == 0)
    if np.all(p[p > 0] >= eps):
        builtin = keras.losses.KLDivergence(dtype=dtype)  # it clips p to [eps, 1] too; equal for p >= eps
        with float_context(dtype):
            theirs = float(keras.ops.convert_to_numpy(builtin(p.astype(dtype), q.astype(dtype))))
        np.testing.assert_allclose(value, theirs, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_probabilities_against_keras(dtype):
    rng = np.random.default_rng(2)
    p = _softmax(rng.normal(size=(8, 5)))
    q = _softmax(2 * rng.normal(size=(8, 5)))
    value, _ = _run(lk.KLDivLoss(dtype=dtype), p, q, dtype, False)
    with float_context(dtype):
        theirs = keras.losses.KLDivergence(dtype=dtype)(p.astype(dtype), q.astype(dtype))
        theirs = float(keras.ops.convert_to_numpy(theirs))
    np.testing.assert_allclose(value, theirs, **tolerance(dtype))
