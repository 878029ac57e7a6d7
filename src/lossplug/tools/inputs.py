"""Random valid inputs for a loss, by input kind: the test matrix's and ``lossplug check``'s data.

A registry entry names its input kind (``LossSpec.inputs``) and each of its cases may name another
(``Case.inputs``); :func:`make` turns a kind, the case's parameters and a shape into
``(y_pred, y_true)`` NumPy arrays. ``from_logits``, ``log_input`` and ``ignore_index`` are read from
the parameters, so the inputs always fit the loss. The kinds:

- ``regression``: real ``y_pred`` and ``y_true`` of the same shape;
- ``vectors``: the same, read along the class axis (cosine similarity);
- ``binary`` / ``binary_soft``: probabilities (or logits) against 0/1 (or soft) targets;
- ``scores`` / ``scores_pm1``: real scores against 0/1 (or -1/+1) labels (hinge);
- ``counts``: positive rates (or log-rates with ``log_input``) against Poisson counts;
- ``onehot`` / ``soft`` / ``labels``: class probabilities (or logits) against one-hot, soft or
  integer targets;
- ``masks`` / ``label_map``: segmentation probabilities (or logits) against 0/1 masks or an
  integer label map;
- ``distributions`` / ``distributions_zeros``: distributions q against p (some p entries 0).

Shapes are ``y_pred``'s, with the class axis at ``axis`` (1, torch's layout, or -1). This module
imports no framework.
"""

from __future__ import annotations

import numpy as np

KINDS = (
    "regression", "vectors", "binary", "binary_soft", "scores", "scores_pm1", "counts", "onehot",
    "soft", "labels", "masks", "label_map", "distributions", "distributions_zeros",
)
#: the shape (torch's layout) a case gets when it names none
DEFAULT_SHAPES = {
    "regression": (3, 4), "vectors": (4, 3), "binary": (3, 4), "binary_soft": (3, 4),
    "scores": (3, 4), "scores_pm1": (3, 4), "counts": (3, 4), "onehot": (4, 3), "soft": (4, 3),
    "labels": (4, 3), "masks": (2, 1, 4, 4), "label_map": (2, 3, 3, 3), "distributions": (3, 4),
    "distributions_zeros": (3, 4),
}


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def one_hot(labels, num_classes, axis=1):
    return np.moveaxis(np.eye(num_classes)[labels], -1, axis)


def _channels_first(shape, axis):
    shape = tuple(shape)
    if axis in (1, None) or len(shape) < 2:
        return shape
    return (shape[0], shape[-1], *shape[1:-1])


def _to_layout(arrays, axis, ndim):
    """Move the class axis from dim 1 to the last one (``axis=-1``); label maps have none."""
    if axis in (1, None) or ndim < 3:
        return arrays
    return tuple(np.moveaxis(a, 1, -1) if a.ndim == ndim else a for a in arrays)


def make(kind: str, params: dict, shape=None, rng=None, axis: int = 1):
    """``(y_pred, y_true)`` of input ``kind`` for a loss with ``params``; ``shape`` is ``y_pred``'s."""
    if kind not in KINDS:
        raise ValueError(f"unknown input kind {kind!r}; the kinds are: {', '.join(KINDS)}")
    rng = np.random.default_rng(0) if rng is None else rng
    shape = DEFAULT_SHAPES[kind] if shape is None else tuple(shape)
    first = _channels_first(shape, axis)
    out = _MAKERS[kind](rng, first, params)
    return _to_layout(out, axis, len(first))


# --- the makers, in torch's layout (class axis 1) ------------------------------------------------


def _regression(rng, shape, params):
    return rng.normal(size=shape), rng.normal(size=shape)


def _binary(soft):
    def make(rng, shape, params):
        x = rng.normal(size=shape) * 2
        y = rng.uniform(size=shape) if soft else (rng.uniform(size=shape) < 0.5).astype(float)
        return (x if params.get("from_logits") else sigmoid(x)), y

    return make


def _scores(plus_minus):
    def make(rng, shape, params):
        x = rng.normal(size=shape) * 1.5
        y = (rng.uniform(size=shape) < 0.5).astype(float)
        return x, (2.0 * y - 1.0 if plus_minus else y)

    return make


def _counts(rng, shape, params):
    log_rate = 0.5 * rng.normal(size=shape)
    y = rng.poisson(2.0 * np.exp(log_rate)).astype(float)
    return (log_rate if params.get("log_input") else np.exp(log_rate)), y


def _classes(target):
    def make(rng, shape, params):
        n, c = shape[0], shape[1]
        ignore = params.get("ignore_index")
        x = rng.normal(size=shape) * 2
        pred = x if params.get("from_logits") else softmax(x)
        labels = rng.integers(0, c, size=(n,) + shape[2:])
        if target == "labels":
            if ignore is not None:
                labels.reshape(-1)[0] = ignore
            return pred, labels
        if target == "soft":
            return pred, softmax(rng.normal(size=shape))
        if ignore is not None and 0 <= ignore < c:
            labels.reshape(-1)[0] = ignore
        return pred, one_hot(labels, c)

    return make


def _masks(label_map):
    def make(rng, shape, params):
        n, c = shape[0], shape[1]
        ignore = params.get("ignore_index")
        x = rng.normal(size=shape) * 2
        if params.get("from_logits"):
            pred = x
        else:
            pred = softmax(x) if (label_map and c > 1) else sigmoid(x)
        if label_map:
            labels = rng.integers(0, max(c, 2), size=(n,) + shape[2:])
            if ignore is not None:
                labels.reshape(-1)[:3] = ignore
            return pred, labels
        return pred, (rng.uniform(size=shape) < 0.4).astype(float)

    return make


def _distributions(zeros):
    def make(rng, shape, params):
        x = rng.normal(size=shape)
        p = softmax(rng.normal(size=shape))
        if zeros:  # some target entries exactly 0: their terms are 0
            p[:, 0] = 0.0
            p /= p.sum(axis=1, keepdims=True)
        if params.get("from_logits"):
            return x, p
        q = softmax(x)
        return (np.log(q) if params.get("log_input") else q), p

    return make


_MAKERS = {
    "regression": _regression, "vectors": _regression,
    "binary": _binary(False), "binary_soft": _binary(True),
    "scores": _scores(False), "scores_pm1": _scores(True), "counts": _counts,
    "onehot": _classes("onehot"), "soft": _classes("soft"), "labels": _classes("labels"),
    "masks": _masks(False), "label_map": _masks(True),
    "distributions": _distributions(False), "distributions_zeros": _distributions(True),
}
