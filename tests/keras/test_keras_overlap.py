"""Tversky, Jaccard, generalized Dice and Lovász in Keras: against Keras's own ``Tversky`` and
``Dice``, against the NumPy reference (eager and under XLA), gradients, fit and save/load.

Keras 3.15's ``Tversky(alpha, beta)`` weighs sum((1 - y_pred) y), which it calls false positives,
by ``alpha``: its ``(alpha, beta)`` is lossplug's ``(beta, alpha)``. With ``axis=None`` it sums over
the whole batch (lossplug's ``aggregation="batch"``), with ``axis=(1, 2, 3)`` per sample; it has no
smoothing but adds ``keras.backend.epsilon()`` (1e-7) to the denominator, so lossplug with
``smooth=0`` agrees to about 1e-7 relative. ``Dice`` is 2I/(sum(y_pred) + sum(y) + 1e-7): lossplug's
Dice with ``squared=False, smooth=0``, and Tversky with alpha = beta = 0.5.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import BACKEND, bulk_call, call, reference, tolerance, value_and_grad

import lossplug.keras as lk

pytestmark = pytest.mark.keras

COMPILED = {"jit_compile": True} if BACKEND in ("tensorflow", "jax") else {"jit_compile": False}
KERAS_EPS = {"rtol": 1e-5, "atol": 1e-6}  # Keras's 1e-7 in the denominator, in float32


def _masks(seed=0, shape=(3, 5, 4, 1)):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=shape) < 0.4).astype("float32"), rng.uniform(size=shape).astype("float32")


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (0.3, 0.7), (0.9, 0.2)])
def test_tversky_against_keras_over_the_batch(alpha, beta):
    y, p = _masks()
    expected = call(keras.losses.Tversky(alpha=alpha, beta=beta), y, p)
    got = call(lk.TverskyLoss(alpha=beta, beta=alpha, smooth=0.0, aggregation="batch"), y, p)
    np.testing.assert_allclose(got, expected, **KERAS_EPS)


def test_tversky_against_keras_per_sample():
    y, p = _masks(1)
    keras_loss = keras.losses.Tversky(alpha=0.7, beta=0.3, axis=(1, 2, 3), reduction=None)
    expected = call(keras_loss, y, p)
    got = call(lk.TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0, reduction="none"), y, p)
    np.testing.assert_allclose(got, expected, **KERAS_EPS)
    expected = call(keras.losses.Tversky(alpha=0.7, beta=0.3, axis=(1, 2, 3)), y, p)
    got = call(lk.TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0), y, p)
    np.testing.assert_allclose(got, expected, **KERAS_EPS)


def test_keras_dice_is_half_half_tversky_and_plain_dice():
    y, p = _masks(2)
    expected = call(keras.losses.Dice(), y, p)
    for loss in (lk.TverskyLoss(smooth=0.0, aggregation="batch"),
                 lk.DiceLoss(squared=False, smooth=0.0, aggregation="batch")):
        np.testing.assert_allclose(call(loss, y, p), expected, **KERAS_EPS)
    expected = call(keras.losses.Dice(axis=(1, 2, 3)), y, p)
    np.testing.assert_allclose(call(lk.TverskyLoss(smooth=0.0), y, p), expected, **KERAS_EPS)


CASES = [
    ("tversky", {"alpha": 0.3, "beta": 0.7}, "labels"),
    ("tversky", {"alpha": 0.2, "beta": 0.8, "gamma": 0.75, "per_class": True}, "labels"),
    ("tversky", {"per_class": True, "class_weights": [1.0, 2.0, 0.5], "include_background": False}, "onehot"),
    ("jaccard", {}, "labels"),
    ("jaccard", {"per_class": True, "aggregation": "batch", "ignore_index": 255}, "labels"),
    ("generalized_dice", {}, "labels"),
    ("generalized_dice", {"weight_type": "simple", "aggregation": "batch"}, "labels"),
    ("generalized_dice", {"include_background": False, "ignore_index": 255}, "labels"),
    ("lovasz", {}, "labels"),
    ("lovasz", {"aggregation": "batch", "ignore_index": 255}, "labels"),
    ("lovasz", {}, "binary"),
    ("lovasz", {"aggregation": "batch"}, "binary"),
]


def _inputs(kind, params, seed=0, shape=(2, 5, 4, 3)):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 2
    if kind == "binary":
        return (rng.uniform(size=shape[:-1] + (1,)) < 0.4).astype(float), x[..., :1]
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    if params.get("ignore_index") is not None:
        labels = np.where(rng.uniform(size=labels.shape) < 0.2, params["ignore_index"], labels)
    if kind == "onehot":
        return np.eye(shape[-1])[labels], x
    return labels, x


def _id(case):
    name, params, kind = case
    return f"{name}-{kind}-" + ",".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_numpy(case, dtype):
    name, params, kind = case
    params = {**params, "from_logits": True}
    y, x = _inputs(kind, params)
    expected = reference(name, y, x, **params)
    cls = getattr(lk, {"tversky": "TverskyLoss", "jaccard": "JaccardLoss",
                       "generalized_dice": "GeneralizedDiceLoss", "lovasz": "LovaszLoss"}[name])
    losses = [cls(**params, dtype=dtype), cls(**params, reduction="none", dtype=dtype)]
    got_mean, got_none = bulk_call(losses, y, x.astype(dtype), dtype=dtype)
    np.testing.assert_allclose(got_mean, expected, **tolerance(dtype))
    per_sample = reference(name, y, x, **params, reduction="none")
    np.testing.assert_allclose(got_none, np.reshape(per_sample, (-1,)), **tolerance(dtype))


@pytest.mark.parametrize("name,cls", [("tversky", lk.TverskyLoss), ("jaccard", lk.JaccardLoss),
                                      ("generalized_dice", lk.GeneralizedDiceLoss),
                                      ("lovasz", lk.LovaszLoss)])
def test_gradient_eager_and_compiled_agree_with_torch(name, cls):
    torch = pytest.importorskip("torch")
    import lossplug.torch as lt

    y, x = _inputs("labels", {})
    loss = cls(from_logits=True)
    value, grad = value_and_grad(lambda v: loss(y, v), x)
    value_c, grad_c = value_and_grad(lambda v: loss(y, v), x, compiled=True)
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    expected = getattr(lt, cls.__name__)(from_logits=True)(xt, torch.tensor(y))
    expected.backward()
    reference_grad = np.moveaxis(xt.grad.numpy(), 1, -1)
    for v, g in ((value, grad), (value_c, grad_c)):
        np.testing.assert_allclose(v, expected.item(), rtol=2e-5)
        np.testing.assert_allclose(g, reference_grad, rtol=2e-4, atol=1e-6)


def _segmentation_model(num_classes):
    return keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(num_classes, 1)])


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("cls", [lk.TverskyLoss, lk.JaccardLoss, lk.GeneralizedDiceLoss, lk.LovaszLoss])
def test_fit_on_label_maps_saves_and_loads(cls, mode, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 4, 2)).astype("float32")
    y = rng.integers(0, 3, size=(8, 4, 4))
    loss = cls(from_logits=True, ignore_index=255)
    model = _segmentation_model(3)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss,
                  **({"run_eagerly": True} if mode == "eager" else COMPILED))
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects
    assert type(restored.loss) is cls and restored.loss.params() == loss.params()
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)
