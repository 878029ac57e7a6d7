"""NumPy reference functions: the formulas on float64 arrays, in torch's ``(y_pred, y_true)`` order.

Every function takes keyword-only parameters after ``y_true`` and ``reduction="mean"``; a mean
result is a float64 scalar, ``"none"`` an array (see the reduction table in the docs).
"""

from __future__ import annotations

import inspect

import numpy as np

from lossplug._spec import spec
from lossplug.core import evaluate
from lossplug.frameworks.adapter import params_doc
from lossplug.frameworks.ops import get_backend

__all__ = [
    "mse", "mae", "huber", "bce", "weighted_bce", "categorical_ce", "sparse_categorical_ce",
    "dice", "kl_div",
]


def _arrays(y_pred, y_true):
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim or y_true.dtype.kind not in "iu":
        y_true = y_true.astype(np.float64)  # labels may arrive as floats; checked to be integral
    return y_pred, y_true


def _reference(name: str, doc: str):
    loss_spec = spec(name)

    def loss(y_pred, y_true, **params):
        validated = loss_spec.validate(params)
        y_pred, y_true = _arrays(y_pred, y_true)
        return evaluate(loss_spec, get_backend("numpy"), y_pred, y_true, validated, "numpy")

    positional = [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("y_pred", "y_true")
    ]
    keywords = [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
        for p in loss_spec.params
    ]
    loss.__signature__ = inspect.Signature(positional + keywords)
    loss.__name__ = loss.__qualname__ = name
    loss.__module__ = __name__
    loss.__doc__ = doc + "\n" + params_doc(loss_spec, f"lossplug.numpy.{name}(y_pred, y_true)")
    return loss


mse = _reference("mse", "Mean squared error: mean((y_pred - y_true)^2).")
mae = _reference("mae", "Mean absolute error: mean(|y_pred - y_true|).")
huber = _reference(
    "huber", "Huber loss: mean(0.5 q^2 + delta (|e| - q)), e = y_pred - y_true, q = min(|e|, delta)."
)
bce = _reference(
    "bce", "Binary cross-entropy: mean(-[y log p + (1 - y) log(1 - p)]), p clipped to [eps, 1 - eps]."
)
weighted_bce = _reference(
    "weighted_bce", "Weighted BCE: mean(-[w+ y log p + w- (1 - y) log(1 - p)])."
)
categorical_ce = _reference(
    "categorical_ce", "Categorical cross-entropy: mean over samples of -sum_c y_c log p_c."
)
sparse_categorical_ce = _reference(
    "sparse_categorical_ce", "Sparse categorical cross-entropy: mean over samples of -log p_label."
)
dice = _reference(
    "dice",
    "Dice loss: mean over samples of 1 - (2 sum(y_pred y) + s) / (sum(y_pred^2) + sum(y^2) + s).",
)
kl_div = _reference(
    "kl_div", "KL divergence KL(p || q): mean over samples of sum_c p_c log(p_c / q_c), p = y_true."
)
