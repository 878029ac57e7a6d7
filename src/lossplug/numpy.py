"""NumPy reference functions: the formulas on float64 arrays, in torch's ``(y_pred, y_true)`` order.

Every function takes keyword-only parameters after ``y_true`` and ``reduction="mean"``; a mean
result is a float64 scalar, ``"none"`` an array (see the reduction table in the docs).
"""

from __future__ import annotations

import inspect

import numpy as np

from lossplug._spec import REGISTRY, spec
from lossplug.core import evaluate
from lossplug.frameworks.adapter import params_doc
from lossplug.frameworks.ops import get_backend


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


# One function per registry entry, bound here as module attributes (``lossplug.numpy.huber``).
_FUNCTIONS = {name: _reference(name, s.text or s.summary) for name, s in REGISTRY.items()}
globals().update(_FUNCTIONS)
__all__ = list(_FUNCTIONS)
