"""Property tests (hypothesis): bounds every loss must respect, zero at a perfect prediction, and
lossplug.torch agreeing with the NumPy reference on random shapes, values and parameters.

Inputs are drawn in torch's layout ``(N, C, *spatial)``; the NumPy functions get ``axis=1``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from loss_cases import CLASS_AXIS_LOSSES, CLASS_NAMES, softmax

import lossplug.numpy
import lossplug.torch

# the losses whose inputs the strategy below draws; the newer ones have their property tests in
# test_focal_margin.py, test_values_overlap.py and test_values_lovasz.py
NAMES = ["mse", "mae", "huber", "bce", "weighted_bce", "categorical_ce", "sparse_categorical_ce", "dice",
         "kl_div"]
EPS = 1e-7
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def shapes(draw, min_classes=1):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(min_classes, 4))
    spatial = draw(st.lists(st.integers(1, 3), max_size=2))
    return (n, c, *spatial)


def normalized(draw, shape, zeros=False):
    """Distributions along axis 1, some entries exactly 0 if ``zeros``."""
    raw = draw(arrays(np.float64, shape, elements=floats(0.0 if zeros else 0.01, 1.0)))
    total = raw.sum(axis=1, keepdims=True)
    raw = np.where(total > 0, raw, 1.0)
    return raw / raw.sum(axis=1, keepdims=True)


@st.composite
def problems(draw, names=tuple(NAMES)):
    """``(name, params, y_pred, y_true)``: a loss, valid parameters and valid inputs."""
    name = draw(st.sampled_from(names))
    shape = draw(shapes(min_classes=2 if name in ("categorical_ce", "sparse_categorical_ce") else 1))
    n, c = shape[:2]
    params = {}
    logits = False
    if name in ("bce", "weighted_bce", "categorical_ce", "sparse_categorical_ce", "dice"):
        logits = params["from_logits"] = draw(st.booleans())
    if name == "kl_div":
        mode = draw(st.sampled_from(["probabilities", "from_logits", "log_input"]))
        params = {"from_logits": mode == "from_logits", "log_input": mode == "log_input"}
    pred = draw(arrays(np.float64, shape, elements=floats(-30.0, 30.0) if logits else floats(0.0, 1.0)))

    if name in ("mse", "mae", "huber"):
        pred = draw(arrays(np.float64, shape, elements=floats(-10.0, 10.0)))
        if name == "huber":
            params["delta"] = draw(floats(0.05, 5.0))
        return name, params, pred, draw(arrays(np.float64, shape, elements=floats(-10.0, 10.0)))

    if name in ("bce", "weighted_bce"):
        params["label_smoothing"] = draw(st.sampled_from([0.0, 0.1]))
        if name == "weighted_bce":
            params["pos_weight"], params["neg_weight"] = draw(floats(0.0, 4.0)), draw(floats(0.0, 4.0))
        return name, params, pred, draw(arrays(np.float64, shape, elements=floats(0.0, 1.0)))

    if name in ("categorical_ce", "sparse_categorical_ce"):
        params["label_smoothing"] = draw(st.sampled_from([0.0, 0.2]))
        if draw(st.booleans()):
            params["class_weights"] = draw(st.lists(floats(0.1, 3.0), min_size=c, max_size=c))
        labels = draw(arrays(np.int64, (n, *shape[2:]), elements=st.integers(0, c - 1)))
        if draw(st.booleans()):
            params["ignore_index"] = ignore = draw(st.integers(0, c - 1))
            if name == "sparse_categorical_ce" and draw(st.booleans()):
                params["ignore_index"] = -100
                labels = np.where(labels == ignore, -100, labels)
        if name == "sparse_categorical_ce":
            return name, params, pred, labels
        if draw(st.booleans()) and "ignore_index" not in params:
            return name, params, pred, normalized(draw, shape)
        return name, params, pred, np.moveaxis(np.eye(c)[labels], -1, 1)

    if name == "dice":
        params["smooth"] = draw(st.sampled_from([0.0, 1e-5, 1.0]))
        params["squared"] = draw(st.booleans())
        params["aggregation"] = draw(st.sampled_from(["sample", "batch"]))
        if c > 1:
            params["per_class"] = draw(st.booleans())
            params["include_background"] = draw(st.booleans())
        if params.get("per_class") and draw(st.booleans()):
            params["class_weights"] = draw(st.lists(floats(0.1, 3.0), min_size=c, max_size=c))
        if draw(st.booleans()):  # integer label map
            labels = draw(arrays(np.int64, (n, *shape[2:]), elements=st.integers(0, max(c, 2) - 1)))
            if c == 1:
                labels = np.minimum(labels, 1)
            if not logits and c > 1:
                pred = normalized(draw, shape, zeros=True)
            return name, params, pred, labels
        return name, params, pred, draw(arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0])))

    # kl_div
    p = normalized(draw, shape, zeros=True)
    q = normalized(draw, shape, zeros=True)
    if params["from_logits"]:
        return name, params, pred, p
    if params["log_input"]:
        return name, params, np.log(np.maximum(q, 1e-12)), p
    return name, params, q, p


def numpy_loss(name, params, y_pred, y_true, reduction="mean"):
    extra = {"axis": 1} if name in CLASS_AXIS_LOSSES else {}
    return getattr(lossplug.numpy, name)(y_pred, y_true, **params, **extra, reduction=reduction)


def torch_loss(name, params, y_pred, y_true, dtype=torch.float64, reduction="mean"):
    loss = getattr(lossplug.torch, CLASS_NAMES[name])(**params, reduction=reduction).to(dtype)
    target = torch.tensor(y_true) if y_true.dtype.kind in "iu" else torch.tensor(y_true, dtype=dtype)
    return loss(torch.tensor(y_pred, dtype=dtype), target).numpy()


# --- torch agrees with NumPy --------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@SETTINGS
@given(problem=problems())
def test_torch_float64_matches_numpy(problem, reduction):
    name, params, y_pred, y_true = problem
    out = torch_loss(name, params, y_pred, y_true, reduction=reduction)  # float64 module: exact weights
    expected = numpy_loss(name, params, y_pred, y_true, reduction)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-10)


@SETTINGS
@given(problem=problems())
def test_torch_float32_close_to_numpy(problem):
    name, params, y_pred, y_true = problem
    if name in ("bce", "weighted_bce") and not params["from_logits"]:
        # float32 cannot hold 1 - p for p within ~1e-3 of 1 (spacing 6e-8 near 1; 1 - 1e-7 rounds
        # to 1 - 1.19e-7): log(1 - p) is then off by percents in any float32 BCE, so stay below
        y_pred = np.minimum(y_pred, 0.999)
    # the reference sees the float32-rounded inputs (tiny values flush to 0, and Dice with smooth=0
    # jumps from 1 to 0 when an empty mask's prediction becomes exactly 0)
    y_pred = y_pred.astype(np.float32).astype(np.float64)
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(np.float32).astype(np.float64)
    expected = numpy_loss(name, params, y_pred, y_true)
    out = torch_loss(name, params, y_pred, y_true, dtype=torch.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


# --- bounds -------------------------------------------------------------------------------------


@SETTINGS
@given(problem=problems())
def test_every_loss_is_non_negative(problem):
    name, params, y_pred, y_true = problem
    # KL(p||q) >= 0 for distributions; clipping q up to eps can lower it by at most log(1 + C eps)
    floor = -math.log1p(y_pred.shape[1] * EPS) - 1e-12 if name == "kl_div" else 0.0
    for out in (numpy_loss(name, params, y_pred, y_true, "none"), torch_loss(name, params, y_pred, y_true)):
        assert np.all(np.asarray(out) >= floor), (name, params, out)


@SETTINGS
@given(problem=problems(names=("dice",)))
def test_dice_lies_in_unit_interval(problem):
    name, params, y_pred, y_true = problem
    out = numpy_loss(name, params, y_pred, y_true, "none")
    assert np.all((out >= -1e-12) & (out <= 1 + 1e-12)), out


# --- zero at a perfect prediction ---------------------------------------------------------------


@SETTINGS
@given(shape=shapes(), data=st.data())
def test_regression_losses_are_zero_at_the_target(shape, data):
    y = data.draw(arrays(np.float64, shape, elements=floats(-10.0, 10.0)))
    for name in ("mse", "mae", "huber"):
        assert numpy_loss(name, {}, y, y) == 0.0
        assert torch_loss(name, {}, y, y, dtype=torch.float32) == 0.0


@SETTINGS
@given(shape=shapes(), squared=st.booleans(), smooth=st.sampled_from([0.0, 1e-5, 1.0]),
       aggregation=st.sampled_from(["sample", "batch"]), data=st.data())
def test_dice_is_zero_at_the_mask(shape, squared, smooth, aggregation, data):
    mask = data.draw(arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0])))
    params = {"squared": squared, "smooth": smooth, "aggregation": aggregation}
    np.testing.assert_allclose(numpy_loss("dice", params, mask, mask), 0.0, atol=1e-12)
    np.testing.assert_allclose(torch_loss("dice", params, mask, mask, dtype=torch.float32), 0.0, atol=1e-6)


@SETTINGS
@given(shape=shapes(), data=st.data())
def test_squared_dice_is_zero_at_a_soft_target(shape, data):
    y = data.draw(arrays(np.float64, shape, elements=floats(0.0, 1.0)))
    np.testing.assert_allclose(numpy_loss("dice", {"smooth": 0.0}, y, y), 0.0, atol=1e-12)


@SETTINGS
@given(shape=shapes(), data=st.data())
def test_kl_div_is_zero_at_the_target(shape, data):
    p = normalized(data.draw, shape, zeros=True)
    # entries of p below eps are clipped in q: a bound, not exactly 0
    bound = shape[1] * EPS
    assert abs(numpy_loss("kl_div", {}, p, p)) <= bound
    assert abs(numpy_loss("kl_div", {"log_input": True}, np.log(np.maximum(p, 1e-300)), p)) <= 1e-12
    assert abs(torch_loss("kl_div", {}, p, p, dtype=torch.float32)) <= 1e-5


@SETTINGS
@given(shape=shapes(min_classes=2), data=st.data())
def test_cross_entropies_are_zero_at_one_hot_targets_up_to_the_clip(shape, data):
    n, c = shape[:2]
    labels = data.draw(arrays(np.int64, (n, *shape[2:]), elements=st.integers(0, c - 1)))
    onehot = np.moveaxis(np.eye(c)[labels], -1, 1)
    clip = -math.log1p(-EPS)  # -log(1 - eps): the cost of p clipped to 1 - eps
    for out in (
        numpy_loss("categorical_ce", {}, onehot, onehot),
        numpy_loss("sparse_categorical_ce", {}, onehot, labels),
        numpy_loss("bce", {}, onehot, onehot),
    ):
        assert 0.0 <= out <= clip * (1 + 1e-9)
    # and softmax of widely separated logits gets the same: log-softmax is exact there
    logits = 50.0 * onehot
    assert numpy_loss("categorical_ce", {"from_logits": True}, logits, onehot) < 1e-20
    assert np.allclose(softmax(logits), onehot)
