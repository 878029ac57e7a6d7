"""``lossplug.port`` of Keras 3 losses, per backend: each source's value computed by keras.losses.

Run once per backend: ``KERAS_BACKEND=jax pytest -m keras -q tests/keras/test_keras_port.py``.
The Keras built-in is evaluated in float64 (``dtype="float64"``); the port is compared with it in
NumPy (class axis last), torch (the same data with the class axis moved to dim 1, torch's habit)
and Keras, extremes included (probabilities exactly 0 and 1, logits of +-1e3, all-ignored
batches, empty masks).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_helpers import call, float_context, tolerance

import lossplug
from lossplug.tools.port import recipe

pytestmark = pytest.mark.keras
L = keras.losses


def _torch_layout(a, ndim):
    return np.moveaxis(a, -1, 1) if a.ndim == ndim and ndim > 2 else a


def check(make, y_true, y_pred):
    """The ported loss gives the Keras built-in's value in NumPy, torch and Keras."""
    import torch

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred, dtype=np.float64)
    with float_context("float64"):
        source = make(dtype="float64")
        expected = call(source, y_true, y_pred, dtype="float64")
    tol = tolerance("float64")  # the float64 bound is 1e-6 relative; TensorFlow is closer
    tol = {"rtol": max(tol["rtol"], 1e-6), "atol": max(tol["atol"], 1e-12)}
    ours = lossplug.port(source, "numpy")(y_pred, y_true)
    np.testing.assert_allclose(ours, expected, **tol)
    t = lossplug.port(source, "torch")(torch.from_numpy(_torch_layout(y_pred, y_pred.ndim).copy()),
                                       torch.from_numpy(_torch_layout(y_true, y_pred.ndim).copy()))
    np.testing.assert_allclose(t.detach().numpy(), expected, **tol)
    # lossplug's Keras classes compute in float32: against the built-in in float32 (Keras's own
    # float32 clip is asymmetric, 1 - 1e-7 rounding to 1 - 2**-23)
    source32 = make()
    k = call(lossplug.port(source32, "keras"), y_true, y_pred.astype(np.float32))
    np.testing.assert_allclose(k, call(source32, y_true, y_pred.astype(np.float32)), **tolerance("float32"))


rng = np.random.default_rng(0)


def _probs(shape, normalised=False, extremes=True):
    p = rng.uniform(size=shape)
    if normalised:
        p = p / p.sum(axis=-1, keepdims=True)
    if extremes:
        p.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
    return p


def _binary(shape):
    y = (rng.uniform(size=shape) < 0.5).astype(float)
    y.reshape(-1)[:4] = [1.0, 0.0, 0.0, 1.0]  # p = 0 and 1 both wrong and right
    return y


def _logits(shape):
    x = rng.normal(size=shape) * 3
    x.reshape(-1)[:2] = [1e3, -1e3]
    return x


def _onehot(n, c, extra=()):
    labels = rng.integers(0, c, size=(n,) + extra)
    return np.eye(c)[labels], labels


@pytest.mark.parametrize("make", [
    L.MeanSquaredError, L.MeanAbsoluteError, lambda **k: L.Huber(delta=0.5, **k), L.LogCosh,
], ids=["mse", "mae", "huber0.5", "logcosh"])
def test_regression(make):
    check(make, rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5)) * 2)


def test_poisson_hinge():
    rate = rng.uniform(size=(5, 4)) * 3
    rate[0, 0] = 0.0
    check(L.Poisson, rng.poisson(2.0, size=(5, 4)).astype(float), rate)
    check(L.Hinge, _binary((5, 4)), rng.normal(size=(5, 4)))
    check(L.SquaredHinge, 2 * _binary((5, 4)) - 1, rng.normal(size=(5, 4)))


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.2}])
def test_binary_crossentropy(kwargs):
    y = _binary((5, 4))
    check(lambda **k: L.BinaryCrossentropy(**kwargs, **k), y, _probs((5, 4)))
    check(lambda **k: L.BinaryCrossentropy(from_logits=True, **kwargs, **k), y, _logits((5, 4)))


@pytest.mark.parametrize("kwargs", [
    {}, {"apply_class_balancing": True, "alpha": 0.3}, {"gamma": 0.0}, {"gamma": 3.0, "label_smoothing": 0.1},
])
def test_binary_focal(kwargs):
    y = _binary((5, 4))
    check(lambda **k: L.BinaryFocalCrossentropy(**kwargs, **k), y, _probs((5, 4)))
    check(lambda **k: L.BinaryFocalCrossentropy(from_logits=True, **kwargs, **k), y, _logits((5, 4)))


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.1}])
def test_categorical_crossentropy_renormalises(kwargs):
    y, _ = _onehot(6, 4)
    check(lambda **k: L.CategoricalCrossentropy(**kwargs, **k), y, _probs((6, 4)))  # sums != 1
    check(lambda **k: L.CategoricalCrossentropy(from_logits=True, **kwargs, **k), y, _logits((6, 4)))
    y4, _ = _onehot(2, 3, (3, 2))
    check(lambda **k: L.CategoricalCrossentropy(**kwargs, **k), y4, _probs((2, 3, 2, 3)))


def test_sparse_categorical_crossentropy():
    _, labels = _onehot(6, 4)
    check(L.SparseCategoricalCrossentropy, labels, _probs((6, 4)))
    check(lambda **k: L.SparseCategoricalCrossentropy(from_logits=True, **k), labels, _logits((6, 4)))
    labels[:2] = 1
    check(lambda **k: L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1, **k), labels,
          _logits((6, 4)))
    check(lambda **k: L.SparseCategoricalCrossentropy(ignore_class=1, **k), np.ones(6, dtype=int),
          _probs((6, 4)))  # every target ignored: 0


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.5, "gamma": 1.0, "label_smoothing": 0.1}])
def test_categorical_focal(kwargs):
    y, _ = _onehot(6, 4)
    check(lambda **k: L.CategoricalFocalCrossentropy(**kwargs, **k), y, _probs((6, 4)))
    check(lambda **k: L.CategoricalFocalCrossentropy(from_logits=True, **kwargs, **k), y, _logits((6, 4)))


def test_kl_divergence_and_cosine():
    p = _probs((5, 4), normalised=True, extremes=False)
    p[0] = [1.0, 0.0, 0.0, 0.0]  # zero targets: Keras clips them to 1e-7 too
    check(L.KLDivergence, p, _probs((5, 4), normalised=True))
    check(L.CosineSimilarity, rng.normal(size=(5, 4)), rng.normal(size=(5, 4)))


@pytest.mark.parametrize("make", [L.Dice, L.Tversky, lambda **k: L.Tversky(alpha=0.7, beta=0.3, **k)],
                         ids=["dice", "tversky", "tversky0.7-0.3"])
def test_overlap(make):
    y = (rng.uniform(size=(2, 4, 4, 3)) < 0.4).astype(float)
    check(make, y, _probs((2, 4, 4, 3)))
    check(make, np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3)))  # empty masks: Keras gives 1


def test_keras_tversky_alpha_beta_are_swapped():
    r = recipe(L.Tversky(alpha=0.7, beta=0.3))
    assert (r.params["alpha"], r.params["beta"], r.params["numerics"]) == (0.3, 0.7, "keras")


@pytest.mark.parametrize("source, setting", [
    (lambda: L.Dice(axis=(1, 2)), "axis"),
    (lambda: L.MeanSquaredError(reduction="sum"), "reduction='sum'"),
    (lambda: L.BinaryCrossentropy(reduction=None), "reduction=None"),
])
def test_unreproducible_settings_are_named(source, setting):
    with pytest.raises(ValueError, match=setting.replace("(", r"\(")):
        lossplug.port(source(), "keras")


def test_cli_port_from_keras():
    from lossplug.tools.cli import main

    assert main(["port", "keras.losses.CategoricalFocalCrossentropy(gamma=1.5)", "--to", "numpy"]) == 0
    assert main(["port", "keras.losses.Tversky(alpha=0.7, beta=0.3)", "--to", "keras"]) == 0


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["cce", "scce", "binary_focal", "categorical_focal", "tversky", "bce"]),
    from_logits=st.booleans(), smoothing=st.sampled_from([0.0, 0.1]), gamma=st.sampled_from([0.0, 1.0, 2.5]),
    alpha=st.sampled_from([0.25, 0.6]), n=st.integers(1, 4), c=st.integers(2, 4), seed=st.integers(0, 2**16),
)
def test_drawn_settings_and_shapes(kind, from_logits, smoothing, gamma, alpha, n, c, seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, c)) * 3
    p = x if from_logits else r.uniform(size=(n, c))
    labels = r.integers(0, c, size=n)
    onehot, mask = np.eye(c)[labels], (r.uniform(size=(n, c)) < 0.5).astype(float)
    make, y = {
        "cce": (lambda **k: L.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=smoothing, **k), onehot),
        "scce": (lambda **k: L.SparseCategoricalCrossentropy(from_logits=from_logits, **k), labels),
        "binary_focal": (lambda **k: L.BinaryFocalCrossentropy(
            gamma=gamma, alpha=alpha, apply_class_balancing=alpha > 0.5, from_logits=from_logits,
            label_smoothing=smoothing, **k), mask),
        "categorical_focal": (lambda **k: L.CategoricalFocalCrossentropy(
            gamma=gamma, alpha=alpha, from_logits=from_logits, label_smoothing=smoothing, **k), onehot),
        "tversky": (lambda **k: L.Tversky(alpha=alpha, beta=1 - alpha / 2, **k), mask),
        "bce": (lambda **k: L.BinaryCrossentropy(
            from_logits=from_logits, label_smoothing=smoothing, **k), mask),
    }[kind]
    if kind == "tversky":
        p = r.uniform(size=(n, c))
    check(make, y, p)
