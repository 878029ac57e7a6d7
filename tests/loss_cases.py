"""Random inputs for every loss and a spread of parameters, as NumPy arrays in torch's layout.

Each ``Case`` names a registry loss, its parameters, and a ``make(rng)`` that returns
``(y_pred, y_true)`` with the class axis at dim 1 (``(N, C, ...)``), float64 predictions and
float64 targets or int64 label maps. Framework-free, so every test module can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: loss name -> torch class name in ``lossplug.torch``
CLASS_NAMES = {
    "mse": "MSELoss", "mae": "MAELoss", "huber": "HuberLoss", "bce": "BCELoss",
    "weighted_bce": "WeightedBCELoss", "categorical_ce": "CategoricalCELoss",
    "sparse_categorical_ce": "SparseCategoricalCELoss", "dice": "DiceLoss", "kl_div": "KLDivLoss",
}
CLASS_AXIS_LOSSES = {"categorical_ce", "sparse_categorical_ce", "dice", "kl_div"}


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def one_hot(labels, num_classes, axis=1):
    return np.moveaxis(np.eye(num_classes)[labels], -1, axis)


@dataclass(frozen=True)
class Case:
    name: str
    params: dict
    make: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    label: str = ""
    tags: frozenset = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.label}" if self.label else self.name

    def inputs(self, seed: int = 0):
        return self.make(np.random.default_rng(seed))


# --- input makers -------------------------------------------------------------------------------


def _regression(shape=(3, 4)):
    def make(rng):
        return rng.normal(size=shape), rng.normal(size=shape)

    return make


def _binary(shape=(3, 4), logits=False, soft=False):
    def make(rng):
        x = rng.normal(size=shape) * 2
        y = rng.uniform(size=shape) if soft else (rng.uniform(size=shape) < 0.5).astype(float)
        return (x if logits else sigmoid(x)), y

    return make


def _classes(shape=(4, 3), logits=False, target="onehot", ignore=None):
    """Class scores (N, C, ...) and targets: "onehot", "soft" or "labels"; ``ignore`` sets label 0 / one
    sample's label to the ignore value (labels) or marks one sample as class ``ignore`` (one-hot)."""

    def make(rng):
        n, c = shape[0], shape[1]
        x = rng.normal(size=shape) * 2
        pred = x if logits else softmax(x)
        labels = rng.integers(0, c, size=(n,) + shape[2:])
        if target == "labels":
            if ignore is not None:
                labels.reshape(-1)[0] = ignore
            return pred, labels
        if target == "soft":
            return pred, softmax(rng.normal(size=shape))
        if ignore is not None:
            labels.reshape(-1)[0] = ignore
        return pred, one_hot(labels, c)

    return make


def _masks(shape=(2, 1, 4, 4), logits=False, label_map=False, ignore=None):
    def make(rng):
        n, c = shape[0], shape[1]
        x = rng.normal(size=shape) * 2
        if logits:
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


def _distributions(shape=(3, 4), logits=False, log_input=False, zeros=False):
    def make(rng):
        x = rng.normal(size=shape)
        p = softmax(rng.normal(size=shape))
        if zeros:  # some target entries exactly 0: their terms are 0
            p[:, 0] = 0.0
            p /= p.sum(axis=1, keepdims=True)
        if logits:
            return x, p
        q = softmax(x)
        return (np.log(q) if log_input else q), p

    return make


# --- the catalogue (class weights exact in float32, the dtype of the torch buffer) -------------

CASES: list[Case] = [
    Case("mse", {}, _regression()),
    Case("mse", {}, _regression((2, 3, 2, 2)), "4d"),
    Case("mae", {}, _regression()),
    Case("huber", {}, _regression()),
    Case("huber", {"delta": 0.3}, _regression(), "delta0.3"),
    Case("huber", {"delta": 2.5}, _regression((2, 3, 2)), "delta2.5"),
    Case("bce", {}, _binary()),
    Case("bce", {}, _binary(soft=True), "soft"),
    Case("bce", {"from_logits": True}, _binary(logits=True), "logits"),
    Case("bce", {"label_smoothing": 0.1}, _binary(), "ls"),
    Case("bce", {"from_logits": True, "label_smoothing": 0.2}, _binary(logits=True), "logits-ls"),
    Case("weighted_bce", {"pos_weight": 2.0, "neg_weight": 0.5}, _binary(), "w2-0.5"),
    Case("weighted_bce", {"pos_weight": 3.0, "neg_weight": 0.0}, _binary(), "neg0"),
    Case("weighted_bce", {"pos_weight": 0.7, "neg_weight": 1.5, "from_logits": True},
         _binary(logits=True), "logits"),
    Case("weighted_bce", {"pos_weight": 2.0, "from_logits": True, "label_smoothing": 0.1},
         _binary(logits=True, soft=True), "logits-ls-soft"),
    Case("categorical_ce", {}, _classes()),
    Case("categorical_ce", {}, _classes(target="soft"), "soft"),
    Case("categorical_ce", {"from_logits": True}, _classes(logits=True), "logits"),
    Case("categorical_ce", {"from_logits": True}, _classes((2, 3, 2, 2), logits=True), "logits-spatial"),
    Case("categorical_ce", {"label_smoothing": 0.1}, _classes(), "ls"),
    Case("categorical_ce", {"class_weights": [0.5, 2.0, 1.0]}, _classes(), "cw"),
    Case("categorical_ce", {"ignore_index": 1, "from_logits": True}, _classes(logits=True, ignore=1),
         "ignore"),
    Case("categorical_ce", {"class_weights": [1.0, 3.0, 0.25], "ignore_index": 0, "label_smoothing": 0.2},
         _classes((3, 3, 2), ignore=0), "cw-ignore-ls"),
    Case("sparse_categorical_ce", {}, _classes(target="labels")),
    Case("sparse_categorical_ce", {"from_logits": True}, _classes(logits=True, target="labels"), "logits"),
    Case("sparse_categorical_ce", {"from_logits": True}, _classes((2, 4, 3, 2), logits=True, target="labels"),
         "logits-spatial"),
    Case("sparse_categorical_ce", {"label_smoothing": 0.15}, _classes(target="labels"), "ls"),
    Case("sparse_categorical_ce", {"class_weights": [0.5, 2.0, 1.0], "from_logits": True},
         _classes(logits=True, target="labels"), "cw"),
    Case("sparse_categorical_ce", {"ignore_index": -100}, _classes(target="labels", ignore=-100), "ignore"),
    Case("sparse_categorical_ce",
         {"class_weights": [1.0, 3.0, 0.25], "ignore_index": 7, "label_smoothing": 0.1, "from_logits": True},
         _classes((3, 3, 2), logits=True, target="labels", ignore=7), "cw-ignore-ls"),
    Case("dice", {}, _masks()),
    Case("dice", {"squared": False}, _masks(), "plain"),
    Case("dice", {"smooth": 1.0}, _masks(), "smooth1"),
    Case("dice", {"from_logits": True}, _masks(logits=True), "logits"),
    Case("dice", {"aggregation": "batch"}, _masks(), "batch"),
    Case("dice", {"from_logits": True}, _masks((2, 3, 3, 3), logits=True, label_map=True),
         "labelmap-softmax"),
    Case("dice", {"per_class": True, "class_weights": [0.25, 1.0, 2.0]}, _masks((2, 3, 3, 3), label_map=True),
         "perclass-cw"),
    Case("dice", {"include_background": False, "from_logits": True, "per_class": True},
         _masks((2, 3, 3, 3), logits=True, label_map=True), "nobg"),
    Case("dice", {"ignore_index": 255, "from_logits": True}, _masks((2, 3, 3, 3), logits=True, label_map=True,
                                                                     ignore=255), "ignore"),
    Case("dice", {"from_logits": True, "activation": "sigmoid", "aggregation": "batch", "per_class": True},
         _masks((2, 3, 3, 3), logits=True), "multilabel-batch"),
    Case("kl_div", {}, _distributions()),
    Case("kl_div", {}, _distributions(zeros=True), "zeros"),
    Case("kl_div", {"from_logits": True}, _distributions(logits=True), "logits"),
    Case("kl_div", {"log_input": True}, _distributions(log_input=True), "log_input"),
    Case("kl_div", {}, _distributions((2, 3, 2, 2)), "spatial"),
]

CASE_BY_ID: dict[str, Case] = {c.id: c for c in CASES}
assert len(CASE_BY_ID) == len(CASES), "case ids must be unique"

#: one plain case per loss, for the slower checks (compile, gradgradcheck)
FIRST_PER_LOSS: list[Case] = list({c.name: c for c in reversed(CASES)}.values())[::-1]


def numpy_params(case: Case) -> dict:
    """The case's parameters for ``lossplug.numpy``, whose class axis defaults to -1, not 1."""
    params = dict(case.params)
    if case.name in CLASS_AXIS_LOSSES:
        params.setdefault("axis", 1)
    return params


def to_torch(arrays, dtype, requires_grad=False):
    """``(y_pred, y_true)`` as torch tensors: floats in ``dtype``, integer label maps as int64."""
    import torch

    y_pred, y_true = arrays
    pred = torch.tensor(y_pred, dtype=dtype, requires_grad=requires_grad)
    true = torch.tensor(y_true) if y_true.dtype.kind in "iu" else torch.tensor(y_true, dtype=dtype)
    return pred, true


def torch_loss(case: Case, **overrides):
    """The ``lossplug.torch`` module for ``case`` (parameters overridden by ``overrides``)."""
    import lossplug.torch

    return getattr(lossplug.torch, CLASS_NAMES[case.name])(**{**case.params, **overrides})


def tolerances(dtype) -> dict:
    """``rtol``/``atol`` for ``numpy.testing.assert_allclose`` of a ``dtype`` result against float64."""
    if str(dtype).endswith("float64"):
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-5, "atol": 2e-6}
