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


# --- torch and MONAI sources ported to Keras (class axis last): torch's batchmean, 0/0, one channel ---


def _class_last(a):
    return np.moveaxis(a, 1, -1) if a.ndim > 2 else a


def _compiled(loss, y_true, y_pred):
    """The Keras loss inside the backend's graph (jax.jit, tf.function; torch: eager)."""
    from keras_helpers import BACKEND, to_numpy

    t, p = keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred)
    if BACKEND == "jax":
        import jax

        return to_numpy(jax.jit(lambda a, b: loss(a, b))(t, p)).astype(np.float64)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return to_numpy(tf.function(lambda a, b: loss(a, b))(t, p)).astype(np.float64)
    return call(loss, y_true, y_pred)


def check_torch_source(source, y_pred, y_true, labels_channel=False, **options):
    """A torch.nn / MONAI loss's own float64 value (torch layout) against its Keras port in float32 on
    the same data with the class axis last (MONAI's (N, 1, ...) label channel as the label map)."""
    import torch

    as_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    expected = source.double()(as_torch(y_pred), as_torch(y_true)).detach().numpy()
    if labels_channel:
        y_true = y_true[:, 0]
    yt = _class_last(y_true) if y_true.ndim == y_pred.ndim else y_true
    yt = yt.astype(np.float32) if yt.dtype.kind == "f" else yt
    yp = _class_last(y_pred).astype(np.float32)
    ours = lossplug.port(source, "keras", **options)
    for got in (call(ours, yt, yp), _compiled(ours, yt, yp)):
        np.testing.assert_allclose(got, expected, **tolerance("float32"))
    return expected


@pytest.mark.parametrize("shape", [(3, 4, 2, 5), (2, 3, 4), (5,), (4, 3)])
@pytest.mark.parametrize("reduction", ["batchmean", "sum"])
def test_torch_kl_div_batchmean_on_any_rank(shape, reduction):
    import torch

    axis = 1 if len(shape) > 1 else 0
    log_q = np.asarray(torch.log_softmax(torch.from_numpy(rng.normal(size=shape) * 2), axis))
    p = np.asarray(torch.softmax(torch.from_numpy(rng.normal(size=shape) * 2), axis))
    p.reshape(-1)[:2] = 0.0
    check_torch_source(torch.nn.KLDivLoss(reduction=reduction), log_q, p)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 2)])
def test_torch_cross_entropy_all_ignored_and_zero_weight(reduction, shape):
    import torch

    x = rng.normal(size=shape) * 3
    labels = np.full((shape[0],) + shape[2:], -100)
    expected = check_torch_source(torch.nn.CrossEntropyLoss(reduction=reduction), x, labels)
    if reduction == "mean":
        assert np.isnan(expected)  # torch's 0/0, reproduced (not vacuous)
    weight = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    zero_total = rng.integers(0, 2, size=labels.shape)
    check_torch_source(torch.nn.NLLLoss(weight=weight, reduction=reduction),
                       np.asarray(torch.log_softmax(torch.from_numpy(x), 1)), zero_total)
    labels.reshape(-1)[0] = 2  # one counted target: a finite mean
    check_torch_source(torch.nn.CrossEntropyLoss(weight=weight, reduction=reduction), x, labels)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
def test_keras_sparse_ce_all_ignored_is_zero(reduction):
    """Keras's own number for an all-ignored batch is 0 on every backend, and so is the port's."""
    labels = np.full((2, 3, 2), 1)
    make = lambda **k: L.SparseCategoricalCrossentropy(  # noqa: E731
        from_logits=True, ignore_class=1, reduction=reduction, **k)
    check(make, labels, _logits((2, 3, 2, 4)))
    assert not np.any(call(make(), labels, _logits((2, 3, 2, 4)).astype(np.float32)))


@pytest.mark.filterwarnings("ignore:single channel prediction")
@pytest.mark.parametrize("kwargs", [
    {"softmax": True}, {"softmax": True, "include_background": False},
    {"sigmoid": True, "include_background": False},
    {"softmax": True, "to_onehot_y": True, "include_background": False},
])
@pytest.mark.parametrize("cls", ["DiceLoss", "TverskyLoss", "GeneralizedDiceLoss", "DiceCELoss"])
def test_monai_one_channel_to_keras(cls, kwargs):
    from monai import losses as ml

    # softmax=True is ignored: y_pred is taken as it is, here values in (0, 1] (raw logits can make
    # the denominators nearly cancel, where float32 keeps few digits of MONAI's float64 number)
    x = rng.uniform(0.05, 1.0, size=(2, 1, 5, 4)) if kwargs.get("softmax") else rng.normal(size=(2, 1, 5, 4))
    y = (rng.uniform(size=(2, 1, 5, 4)) < 0.4).astype(np.float64)
    check_torch_source(getattr(ml, cls)(**kwargs), x, y, labels_channel=kwargs.get("to_onehot_y", False))


@pytest.mark.parametrize("onehot_y", [False, True])
def test_monai_dice_ce_sigmoid_several_channels_to_keras(onehot_y):
    from monai import losses as ml

    x = rng.normal(size=(2, 3, 5, 4)) * 2
    if onehot_y:
        y = rng.integers(0, 3, size=(2, 1, 5, 4))
    else:
        y = (rng.uniform(size=(2, 3, 5, 4)) < 0.4).astype(np.float64)
    check_torch_source(ml.DiceCELoss(sigmoid=True, to_onehot_y=onehot_y), x, y, labels_channel=onehot_y)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), spatial=st.sampled_from([(), (3,), (2, 2)]),
       one_d=st.booleans(), seed=st.integers(0, 2**16))
def test_torch_kl_div_drawn_shapes_to_keras(n, c, spatial, one_d, seed):
    import torch

    r = np.random.default_rng(seed)
    shape = (c,) if one_d else (n, c) + spatial
    axis = 0 if one_d else 1
    log_q = np.asarray(torch.log_softmax(torch.from_numpy(r.normal(size=shape) * 2), axis))
    p = np.asarray(torch.softmax(torch.from_numpy(r.normal(size=shape) * 2), axis))
    check_torch_source(torch.nn.KLDivLoss(reduction="batchmean"), log_q, p)
