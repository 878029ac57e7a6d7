"""``model.fit`` with every loss: eagerly (value checks on), compiled (jit on TensorFlow/JAX)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import BACKEND, CLASSES, NAMES, NON_DEFAULT, call, reference, tiny_data, tiny_model

import lossplug.keras as lk

pytestmark = pytest.mark.keras

# Compiled training: XLA on TensorFlow and JAX; torch's graph-free loop (torch.compile is slow
# to start and is not what Keras uses by default).
COMPILED = {"jit_compile": True} if BACKEND in ("tensorflow", "jax") else {"jit_compile": False}


def _fit(model, loss, x, y, **compile_args):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, **compile_args)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    return history.history["loss"]


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("name", NAMES)
def test_fit_one_epoch(name, mode):
    params = NON_DEFAULT[name]
    x, y = tiny_data(name)
    compile_args = {"run_eagerly": True} if mode == "eager" else COMPILED
    losses = _fit(tiny_model(name, params), CLASSES[name](**params), x, y, **compile_args)
    assert len(losses) == 1 and np.isfinite(losses[0])


def _segmentation_model(num_classes):
    return keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(num_classes, 1)])


def _label_map(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 4, 4, 2)).astype("float32")
    labels = rng.integers(0, 3, size=(8, 4, 4))
    return x, labels


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize(
    "loss, keras_labels",
    [
        (lambda: lk.DiceLoss(from_logits=True), False),
        (lambda: lk.SparseCategoricalCELoss(from_logits=True), False),
        (lambda: lk.SparseCategoricalCELoss(from_logits=True), True),
    ],
    ids=["dice-label-map", "sparse-ce-(N,H,W)", "sparse-ce-(N,H,W,1)"],
)
def test_fit_on_integer_label_maps(loss, keras_labels, mode):
    x, labels = _label_map()
    y = labels[..., None] if keras_labels else labels
    compile_args = {"run_eagerly": True} if mode == "eager" else COMPILED
    model = _segmentation_model(3)
    losses = _fit(model, loss(), x, y.astype("int32"), **compile_args)
    assert np.isfinite(losses[0])
    # the trained model's loss on integer maps is the NumPy reference's on the same logits
    logits = np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)
    expected = reference(loss().spec.name, labels, logits, from_logits=True)
    np.testing.assert_allclose(call(loss(), y, logits), expected, rtol=1e-5)


def test_fit_rejects_a_shape_mismatch_when_compiled():
    # shape checks run while tracing, so they hold under jit too
    x, _ = tiny_data("mse")
    y = np.zeros((8, 4), "float32")  # the model gives (8, 3)
    model = tiny_model("mse", {})
    with pytest.raises(ValueError, match=r"y_pred has shape .*3.* y_true has shape .*4"):
        _fit(model, lk.MSELoss(), x, y, **COMPILED)


def test_fit_checks_labels_when_eager():
    x, labels = _label_map()
    labels[0, 0, 0] = 7
    model = _segmentation_model(3)
    loss = lk.SparseCategoricalCELoss(from_logits=True)
    if BACKEND == "jax":
        # Keras trains JAX models under jax.value_and_grad even with run_eagerly=True: the loss
        # sees tracers, so the value checks are skipped there (shape checks still run).
        _fit(model, loss, x, labels, run_eagerly=True)
        with pytest.raises(ValueError, match="label 7 is out of range"):
            loss(labels, np.zeros((8, 4, 4, 3), "float32"))  # a direct eager call checks
    else:
        with pytest.raises(ValueError, match="label 7 is out of range"):
            _fit(model, loss, x, labels, run_eagerly=True)
