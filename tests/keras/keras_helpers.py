"""Shared helpers of the Keras tests: backend facts, tolerances, gradients, random inputs.

Inputs are built in Keras's order ``(y_true, y_pred)`` with the class axis last, as the NumPy
reference ``lossplug.numpy.<name>(y_pred, y_true)`` also takes them (its class axis is -1 too).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

import lossplug.keras as lk
import lossplug.numpy as lnp
from lossplug._spec import REGISTRY

BACKEND = keras.backend.backend()
NAMES = list(REGISTRY)
CLASSES = {name: getattr(lk, spec.class_name) for name, spec in REGISTRY.items()}
DTYPES = ("float32", "float64")


def float_context(dtype: str):
    """JAX computes in float64 only with ``jax_enable_x64``; the other backends need nothing."""
    if dtype == "float64" and BACKEND == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def tolerance(dtype: str) -> dict:
    """``rtol``/``atol`` for a Keras value against the float64 NumPy reference.

    float64 is exact on TensorFlow. On JAX and torch Keras's own type promotion maps float64 to
    float32 inside ``keras.ops.mean`` (JAX) and ``divide_no_nan`` (torch, the final reduction),
    so a float64 loss there is only as precise as float32.
    """
    if dtype == "float64" and BACKEND == "tensorflow":
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-5, "atol": 2e-6}


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def call(loss, y_true, y_pred, sample_weight=None, dtype="float32") -> np.ndarray:
    """The Keras loss evaluated eagerly, as NumPy float64."""
    with float_context(dtype):
        return to_numpy(loss(y_true, y_pred, sample_weight=sample_weight)).astype(np.float64)


def bulk_call(losses, y_true, y_pred, dtype="float32") -> list[np.ndarray]:
    """Each of ``losses`` on the same inputs; on JAX all of them in one ``jax.jit``-compiled call.

    Eager JAX compiles every op anew for each new shape (about 1 s per loss and shape on a
    2-core machine), one compiled call a fraction of that. The values come from the same ops;
    the eager path of every loss is covered by the hand-worked, built-in and error tests.
    """
    if BACKEND != "jax":
        return [call(loss, y_true, y_pred, dtype=dtype) for loss in losses]
    import jax

    with float_context(dtype):
        out = jax.jit(lambda t, p: [loss(t, p) for loss in losses])(y_true, y_pred)
        return [to_numpy(v).astype(np.float64) for v in out]


def value_and_grad(fn, x: np.ndarray, dtype: str = "float32", compiled: bool = False):
    """``fn(x)`` and its gradient with respect to ``x``, from the backend's own autodiff.

    ``compiled``: under XLA, as a training step runs (``tf.function(jit_compile=True)``,
    ``jax.jit``); torch runs eagerly either way.
    """
    x = np.asarray(x, dtype=dtype)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(xt):
            with tf.GradientTape() as tape:
                tape.watch(xt)
                value = fn(xt)
            return value, tape.gradient(value, xt)

        if compiled:
            step = tf.function(step, jit_compile=True)
        value, grad = step(tf.constant(x))
        return float(value.numpy()), np.asarray(grad.numpy())
    if BACKEND == "jax":
        import jax

        step = jax.value_and_grad(lambda v: fn(v))
        value, grad = (jax.jit(step) if compiled else step)(x)
        return float(value), np.asarray(grad)
    import torch

    xt = torch.tensor(x, requires_grad=True)
    value = fn(xt)
    value.backward()
    return float(value.detach()), xt.grad.numpy().copy()


def reference(name: str, y_true, y_pred, **params):
    """The NumPy reference value, ``lossplug.numpy.<name>(y_pred, y_true, ...)``."""
    return np.asarray(getattr(lnp, name)(y_pred, y_true, **params), dtype=np.float64)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def make_inputs(name: str, params: dict, shape: tuple, rng: np.random.Generator):
    """Valid ``(y_true, y_pred)`` for loss ``name`` with ``params``; ``shape`` is y_pred's shape.

    Class losses, KL and Dice read the last axis of ``shape`` as the class axis.
    """
    from_logits = params.get("from_logits", False)
    ignore = params.get("ignore_index")
    num_classes = shape[-1]
    if name in ("mse", "mae", "huber"):
        return rng.normal(size=shape), rng.normal(size=shape)
    if name in ("bce", "weighted_bce"):
        y_true = rng.integers(0, 2, size=shape).astype(np.float64)
        if params.get("soft"):
            y_true = rng.uniform(size=shape)
        y_pred = rng.normal(scale=2.0, size=shape) if from_logits else rng.uniform(0.02, 0.98, size=shape)
        return y_true, y_pred
    logits = rng.normal(scale=2.0, size=shape)
    y_pred = logits if from_logits else _softmax(logits)
    if params.get("log_input"):
        y_pred = np.log(_softmax(logits))
    labels = rng.integers(0, num_classes, size=shape[:-1])
    if name == "sparse_categorical_ce":
        if ignore is not None:
            labels = np.where(rng.uniform(size=labels.shape) < 0.3, ignore, labels)
        return labels, y_pred
    if name == "categorical_ce":
        y_true = np.eye(num_classes)[labels]
        if params.get("soft"):
            y_true = _softmax(rng.normal(size=shape))
        return y_true, y_pred
    if name == "kl_div":
        y_true = _softmax(rng.normal(scale=2.0, size=shape))
        y_true[..., 0] = np.where(rng.uniform(size=shape[:-1]) < 0.3, 0.0, y_true[..., 0])
        return y_true / y_true.sum(-1, keepdims=True), y_pred
    # dice
    if params.get("label_map"):
        if ignore is not None:
            labels = np.where(rng.uniform(size=labels.shape) < 0.2, ignore, labels)
        return labels, y_pred
    if not from_logits:
        y_pred = rng.uniform(size=shape)
    return rng.integers(0, 2, size=shape).astype(np.float64), y_pred


# Parameter sets exercised for every loss; "soft" and "label_map" choose the inputs, not the loss.
PARAM_CASES = {
    "mse": [{}],
    "mae": [{}],
    "huber": [{}, {"delta": 0.3}, {"delta": 2.5}],
    "bce": [{}, {"from_logits": True}, {"label_smoothing": 0.2, "soft": True}, {"eps": 1e-3}],
    "weighted_bce": [
        {"pos_weight": 3.0, "neg_weight": 0.5},
        {"pos_weight": 0.0, "neg_weight": 2.0, "from_logits": True},
        {"pos_weight": 2.0, "label_smoothing": 0.1, "from_logits": True},
    ],
    "categorical_ce": [
        {}, {"from_logits": True}, {"label_smoothing": 0.1, "from_logits": True},
        {"class_weights": [1.0, 2.0, 0.5, 1.5]}, {"soft": True},
        {"ignore_index": 0, "from_logits": True},
        {"class_weights": [0.5, 1.0, 3.0, 1.0], "ignore_index": 2, "label_smoothing": 0.05},
    ],
    "sparse_categorical_ce": [
        {}, {"from_logits": True}, {"label_smoothing": 0.2, "from_logits": True},
        {"class_weights": [1.0, 2.0, 0.5, 1.5]}, {"ignore_index": -1, "from_logits": True},
        {"class_weights": [0.5, 1.0, 3.0, 1.0], "ignore_index": 255, "label_smoothing": 0.1},
    ],
    "dice": [
        {}, {"squared": False, "smooth": 1.0}, {"from_logits": True}, {"aggregation": "batch"},
        {"per_class": True, "class_weights": [1.0, 2.0, 0.0, 1.0]},
        {"per_class": True, "include_background": False},
        {"label_map": True, "from_logits": True},
        {"label_map": True, "ignore_index": 255, "from_logits": True, "activation": "softmax"},
        {"label_map": True, "from_logits": True, "activation": "sigmoid", "smooth": 0.0},
    ],
    "kl_div": [{}, {"from_logits": True}, {"log_input": True}, {"eps": 1e-4}],
}


def loss_params(case: dict) -> dict:
    """The loss's own parameters: a case less the keys that only choose the inputs."""
    return {k: v for k, v in case.items() if k not in ("soft", "label_map")}


def param_id(case: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in case.items()) or "defaults"


def cases():
    """``(name, case)`` pairs of ``PARAM_CASES`` for ``pytest.mark.parametrize``."""
    return [(name, case) for name in NAMES for case in PARAM_CASES[name]]


def case_ids():
    return [f"{name}[{param_id(case)}]" for name, case in cases()]


# Non-default hyperparameters for every loss, and the model head and data that fit them.
NON_DEFAULT = {
    "mse": {"reduction": "sum"},
    "mae": {"name": "my_mae"},
    "huber": {"delta": 0.3},
    "bce": {"from_logits": True, "label_smoothing": 0.1, "eps": 1e-5},
    "weighted_bce": {"pos_weight": 3.0, "neg_weight": 0.5, "from_logits": True},
    "categorical_ce": {"from_logits": True, "class_weights": [1.0, 2.0, 0.5], "label_smoothing": 0.05},
    "sparse_categorical_ce": {"from_logits": True, "class_weights": [0.5, 1.0, 2.0], "ignore_index": -1},
    "dice": {"smooth": 0.5, "squared": False, "per_class": True, "class_weights": [1.0, 2.0, 3.0]},
    "kl_div": {"from_logits": True, "axis": -1},
}


def tiny_data(name: str, n: int = 8, seed: int = 0):
    """``(x, y)`` for a 4-feature model whose head has 3 outputs; y fits loss ``name``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    labels = rng.integers(0, 3, size=n)
    if name in ("mse", "mae", "huber"):
        y = rng.normal(size=(n, 3))
    elif name in ("bce", "weighted_bce"):
        y = rng.integers(0, 2, size=(n, 3))
    elif name == "sparse_categorical_ce":
        y = np.where(np.arange(n) == 0, -1, labels)  # one ignored target
    elif name == "kl_div":
        y = rng.dirichlet(np.ones(3), size=n)
    else:  # categorical_ce, dice: one-hot
        y = np.eye(3)[labels]
    return x, y.astype("float32")


def tiny_model(name: str, params: dict):
    activation = None
    if name == "dice" or (name in ("bce", "weighted_bce") and not params.get("from_logits")):
        activation = "sigmoid"
    if name in ("categorical_ce", "sparse_categorical_ce", "kl_div") and not params.get("from_logits"):
        activation = "softmax"
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation=activation, kernel_initializer="ones")]
    )
