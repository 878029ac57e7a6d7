"""Keras routes: the terms of a formula in ``lossplug.formulas``, written the way XLA compiles well.

``LossClass.terms`` takes a route where one exists for the loss and its parameters, else the shared
formula. A route returns the same ``(loss, weight)`` as the formula, up to float rounding, with the
same gradient (``tests/keras/test_keras_routes.py`` checks values and gradients against hand-worked
NumPy and ``keras.losses``; the value tests check every parameter case against ``lossplug.numpy``).
Why each one (forward + backward under XLA on CPU, 4M elements, ``python -m benchmarks.keras_cases``,
times relative to the Keras built-in):

- **huber**: the formula's ``0.5 q^2 + delta (|e| - q)``, ``q = min(|e|, delta)``, leaves XLA CPU
  two elementwise producers (``|e|`` and ``q``) that it writes out in full before the reduction
  fusion reads them back: 2.6x on JAX, this route 1.0x. ``where(|e| <= delta, e^2 / 2,
  delta |e| - delta^2 / 2)`` (Keras's own form) is one elementwise fusion. Same value on both
  sides of delta, and the same gradient (both sides give ``delta sign(e)`` at ``|e| = delta``).
- **sparse_categorical_ce** (logits, no label smoothing): ``log sum exp(z) - z_label`` with
  ``z = x - max(x)``; the formula's ``-log_softmax(x)[label]`` materialises the whole log-softmax
  forward and backward: 1.2x on TensorFlow (against its fused op); this route 0.9x, 0.7x on JAX.
- **kl_div** (probabilities, float32/float64): ``p log(p / q)`` takes one log per element where
  the formula's ``p (log p - log q)`` takes two: 1.3x on TensorFlow, this route 1.0x. ``q`` is
  clipped to ``[eps, 1]``, so ``p / q >= p``; the terms with ``p`` below the smallest normal float
  are 0 (as the formula's ``p = 0`` terms), so ``p / q`` is never subnormal: XLA CPU flushes
  subnormals to 0, which made ``log(p / q)`` -inf and the loss NaN. A term dropped that way is
  below 1e-36 (float32): under the rounding of any sum it joins.
"""

from __future__ import annotations

import keras
import numpy as np


def huber(xp, y_pred, y_true, *, delta):
    err = y_pred - y_true
    abs_err = xp.abs(err)
    return xp.where(abs_err <= delta, 0.5 * xp.square(err), delta * abs_err - 0.5 * delta * delta), None


def sparse_categorical_ce(
    xp, y_pred, labels, *, from_logits, label_smoothing, class_weights, ignore_index, axis, eps
):
    if not from_logits or label_smoothing:
        return None  # the formula's own route: gather-then-log, or the smoothing term
    ops = xp.ops
    labels = xp.cast_int(labels)
    keep = None
    if ignore_index is not None:
        keep = labels != ignore_index
        labels = xp.where(keep, labels, 0 * labels)
    z = y_pred - ops.stop_gradient(ops.max(y_pred, axis=axis, keepdims=True))
    picked = xp.squeeze(xp.take_along_axis(z, xp.expand_dims(labels, axis), axis), axis)
    loss = xp.log(xp.sum(xp.exp(z), axis=axis)) - picked
    weight = None
    if class_weights is not None:
        weight = xp.take(xp.constant(class_weights, y_pred), labels)
        loss = loss * weight
    if keep is not None:
        keep = xp.cast_like(keep, loss)
        loss = loss * keep
        weight = keep if weight is None else weight * keep
    return loss, weight


def kl_div(xp, y_pred, y_true, *, from_logits, log_input, axis, eps):
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if from_logits or log_input or dtype not in ("float32", "float64"):
        return None  # log q given, or a log-softmax; float16's smallest normal is too large a floor
    positive = y_true >= float(np.finfo(dtype).tiny)
    q = xp.clip(y_pred, eps, 1.0)
    if keras.backend.backend() == "tensorflow":
        # A select as the last op before the sum makes XLA hand the reduction to a YNNPACK fusion,
        # 1.0-1.1x the built-in's time against 1.0x with a multiply there; so both sides of the ratio
        # are masked: where p <= 0 it is 1 and the term p * 0 = 0 (NaN for a NaN or -inf target).
        ratio = xp.where(positive, y_true, 1.0) / xp.where(positive, q, 1.0)
        return xp.sum(y_true * xp.log(ratio), axis=axis), None
    ratio = xp.where(positive, y_true, 1.0) / q  # on JAX the masked-ratio form is 1.2x the built-in
    terms = xp.where(positive, y_true * xp.log(ratio), 0.0)
    return xp.sum(terms, axis=axis), None


ROUTES = {"huber": huber, "sparse_categorical_ce": sparse_categorical_ce, "kl_div": kl_div}
"""Loss name -> route ``(xp, y_pred, y_true, **formula params)``; ``None`` means: run the formula."""
