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
from lossplug.tools import inputs

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


def input_kind(name: str, case: dict) -> str:
    return case.get("inputs") or REGISTRY[name].inputs


def make_inputs(name: str, params: dict, shape: tuple, rng: np.random.Generator):
    """Valid ``(y_true, y_pred)`` for loss ``name`` with ``params``; ``shape`` is y_pred's shape.

    The class axis is the last one; ``params["inputs"]`` may name the input kind
    (``lossplug.tools.inputs``), else the registry entry's own.
    """
    y_pred, y_true = inputs.make(input_kind(name, params), loss_params(params), shape, rng, axis=-1)
    return y_true, y_pred


def case_classes(case: dict, default: int = 4) -> int:
    """The class count a case needs: its class_weights' (or per-class alpha's) length, else ``default``."""
    for key in ("class_weights", "alpha"):
        if isinstance(case.get(key), (list, tuple)):
            return len(case[key])
    return default


def is_elementwise(name: str) -> bool:
    return REGISTRY[name].kind == "elementwise"


def _keras_case(loss_case) -> dict:
    out = dict(loss_case.params)
    if loss_case.inputs is not None:
        out["inputs"] = loss_case.inputs
    return out


# Parameter sets exercised for every loss: the registry entry's cases (LossSpec.cases); the key
# "inputs" chooses the inputs, not the loss.
PARAM_CASES = {name: [_keras_case(c) for c in s.cases] for name, s in REGISTRY.items()}


def loss_params(case: dict) -> dict:
    """The loss's own parameters: a case less the keys that only choose the inputs."""
    return {k: v for k, v in case.items() if k != "inputs"}


def param_id(case: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in case.items()) or "defaults"


def cases():
    """``(name, case)`` pairs of ``PARAM_CASES`` for ``pytest.mark.parametrize``."""
    return [(name, case) for name in NAMES for case in PARAM_CASES[name]]


def case_ids():
    return [f"{name}[{param_id(case)}]" for name, case in cases()]


def _non_default(name: str):
    """The registry case with the most parameters that fits a 3-class head, plus a name."""
    fits = [c for c in REGISTRY[name].cases if case_classes(dict(c.params), 3) == 3]
    best = max(fits, key=lambda c: len(c.params), default=None)
    params = {"name": f"my_{name}"}
    if best is None or not best.params:
        return {**params, "reduction": "sum"}, REGISTRY[name].inputs
    return {**params, **best.params}, best.inputs or REGISTRY[name].inputs


# Non-default hyperparameters for every loss (and the input kind of its data), from the registry.
NON_DEFAULT = {name: _non_default(name)[0] for name in REGISTRY}
_NON_DEFAULT_INPUTS = {name: _non_default(name)[1] for name in REGISTRY}


def tiny_data(name: str, n: int = 8, seed: int = 0):
    """``(x, y)`` for a 4-feature model whose head has 3 outputs; y fits ``NON_DEFAULT[name]``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    params = {k: v for k, v in NON_DEFAULT[name].items() if k not in ("name", "reduction")}
    _, y = inputs.make(_NON_DEFAULT_INPUTS[name], params, (n, 3), rng, axis=-1)
    return x, y.astype("float32")


_HEADS = {  # input kind -> the head's activation on probabilities (None: logits, scores, values)
    "binary": "sigmoid", "binary_soft": "sigmoid", "masks": "sigmoid", "label_map": "softmax",
    "onehot": "softmax", "soft": "softmax", "labels": "softmax", "distributions": "softmax",
    "distributions_zeros": "softmax", "counts": "softplus",
}


def tiny_model(name: str, params: dict):
    kind = REGISTRY[name].inputs
    activation = None if params.get("from_logits") else _HEADS.get(kind)
    if params.get("log_input"):
        activation = "log_softmax" if kind.startswith("distributions") else None
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation=activation, kernel_initializer="ones")]
    )
