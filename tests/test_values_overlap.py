"""Tversky, soft Jaccard and generalized Dice against MONAI and against numbers worked by hand.

Conventions matched (MONAI 1.6, monai/losses/tversky.py, dice.py):

- MONAI computes one score per sample *and class* (``batch=True`` adds the batch axis to the
  sums) and averages them: its multi-class Tversky is lossplug's ``per_class=True``; with one
  channel the two coincide. ``smooth_nr = smooth_dr = s`` is lossplug's ``smooth``.
- ``DiceLoss(jaccard=True)`` is 1 - (2I + s_nr)/(2(P + Y - I) + s_dr): with ``s_nr = s_dr = 2s``
  it is lossplug's Jaccard with ``smooth=s`` (and with 0 both are the plain soft IoU).
- ``GeneralizedDiceLoss`` sums per class, weights 1/Y_c^2, 1/Y_c or 1 and gives an absent class
  the largest weight of the present ones (per sample, or over the batch with ``batch=True``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import GeneralizedDiceLoss as MonaiGeneralizedDiceLoss
from monai.losses import TverskyLoss as MonaiTverskyLoss

import lossplug.numpy as ln
import lossplug.torch as lt


@pytest.fixture
def tol(torch_dtype):
    return {"rtol": 1e-10, "atol": 1e-12} if torch_dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}


@pytest.fixture
def gdl_tol(torch_dtype, tol):
    # MONAI takes the class weights in float32 (w_func(ground_o.float())) also for float64 input
    return {"rtol": 1e-7, "atol": 1e-9} if torch_dtype == torch.float64 else tol


def close(actual, expected, tol):
    np.testing.assert_allclose(actual.detach().double().numpy(), expected.detach().double().numpy(), **tol)


def _label_logits(dtype, n=2, c=4, shape=(3, 5)):
    x = torch.randn(n, c, *shape, dtype=dtype) * 2
    return x, torch.randint(0, c, (n, *shape))


# --- Tversky ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (0.3, 0.7), (0.9, 0.1), (0.0, 1.0)])
@pytest.mark.parametrize("aggregation", ["sample", "batch"])
@pytest.mark.parametrize("smooth", [1e-5, 1.0])
def test_tversky_binary_masks(torch_dtype, tol, alpha, beta, aggregation, smooth):
    p = torch.rand(3, 1, 5, 4, dtype=torch_dtype)
    y = (torch.rand(3, 1, 5, 4) < 0.4).to(torch_dtype)
    expected = MonaiTverskyLoss(alpha=alpha, beta=beta, smooth_nr=smooth, smooth_dr=smooth,
                                batch=aggregation == "batch")(p, y)
    loss = lt.TverskyLoss(alpha=alpha, beta=beta, smooth=smooth, aggregation=aggregation)
    close(loss(p, y), expected, tol)


@pytest.mark.parametrize("aggregation", ["sample", "batch"])
@pytest.mark.parametrize("include_background", [True, False])
def test_tversky_label_maps_softmax_per_class(torch_dtype, tol, aggregation, include_background):
    x, labels = _label_logits(torch_dtype)
    expected = MonaiTverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7,
                                batch=aggregation == "batch",
                                include_background=include_background)(x, labels[:, None])
    loss = lt.TverskyLoss(from_logits=True, alpha=0.3, beta=0.7, per_class=True,
                          aggregation=aggregation, include_background=include_background)
    close(loss(x, labels), expected, tol)


def test_tversky_multilabel_sigmoid_and_reduction_none(torch_dtype, tol):
    x = torch.randn(3, 2, 4, 4, dtype=torch_dtype)
    y = (torch.rand(3, 2, 4, 4) < 0.3).to(torch_dtype)
    expected = MonaiTverskyLoss(sigmoid=True, alpha=0.6, beta=0.4, reduction="none")(x, y)  # (N, C, 1, 1)
    loss = lt.TverskyLoss(from_logits=True, activation="sigmoid", alpha=0.6, beta=0.4, per_class=True,
                          reduction="none")
    close(loss(x, y), expected.flatten(1).mean(1), tol)


@pytest.mark.parametrize("ignore_index", [255, 2])
def test_tversky_ignore_index(torch_dtype, tol, ignore_index):
    x, labels = _label_logits(torch_dtype, c=3)
    labels[:, :1, :] = ignore_index
    expected = MonaiTverskyLoss(softmax=True, to_onehot_y=True, alpha=0.2, beta=0.8,
                                ignore_index=ignore_index)(x, labels[:, None])
    loss = lt.TverskyLoss(from_logits=True, alpha=0.2, beta=0.8, per_class=True, ignore_index=ignore_index)
    close(loss(x, labels), expected, tol)


def test_tversky_on_label_maps_equals_the_one_hot_masks(torch_dtype, tol):
    # the label-map sums (no one-hot) against the same loss on the one-hot masks
    x, labels = _label_logits(torch_dtype, c=3)
    onehot = F.one_hot(labels, 3).movedim(-1, 1).to(torch_dtype)
    for per_class in (False, True):
        loss = lt.TverskyLoss(from_logits=True, activation="softmax", alpha=0.3, beta=0.7,
                              per_class=per_class)
        close(loss(x, labels), loss(x, onehot), tol)


# --- Jaccard ------------------------------------------------------------------------------------


@pytest.mark.parametrize("smooth", [0.0, 1e-5, 0.5])
@pytest.mark.parametrize("aggregation", ["sample", "batch"])
def test_jaccard_binary_masks(torch_dtype, tol, smooth, aggregation):
    p = torch.rand(3, 1, 5, 4, dtype=torch_dtype)
    y = (torch.rand(3, 1, 5, 4) < 0.4).to(torch_dtype)
    expected = MonaiDiceLoss(jaccard=True, smooth_nr=2 * smooth, smooth_dr=2 * smooth,
                             batch=aggregation == "batch")(p, y)
    close(lt.JaccardLoss(smooth=smooth, aggregation=aggregation)(p, y), expected, tol)


@pytest.mark.parametrize("include_background", [True, False])
def test_jaccard_label_maps_softmax_per_class(torch_dtype, tol, include_background):
    x, labels = _label_logits(torch_dtype)
    expected = MonaiDiceLoss(jaccard=True, softmax=True, to_onehot_y=True, smooth_nr=2e-5, smooth_dr=2e-5,
                             include_background=include_background)(x, labels[:, None])
    loss = lt.JaccardLoss(from_logits=True, per_class=True, include_background=include_background)
    close(loss(x, labels), expected, tol)


def test_jaccard_class_weights(torch_dtype, tol):
    w = [0.5, 1.0, 1.5]  # sum = C: MONAI's mean(w_c loss_c) equals sum(w_c loss_c) / sum(w_c)
    x, labels = _label_logits(torch_dtype, c=3)
    expected = MonaiDiceLoss(jaccard=True, softmax=True, to_onehot_y=True, smooth_nr=2e-5, smooth_dr=2e-5,
                             weight=w)(x, labels[:, None])
    close(lt.JaccardLoss(from_logits=True, per_class=True, class_weights=w)(x, labels), expected, tol)


# --- generalized Dice ---------------------------------------------------------------------------


@pytest.mark.parametrize("weight_type", ["square", "simple", "uniform"])
@pytest.mark.parametrize("aggregation", ["sample", "batch"])
@pytest.mark.parametrize("include_background", [True, False])
def test_generalized_dice_label_maps(torch_dtype, gdl_tol, weight_type, aggregation, include_background):
    x, labels = _label_logits(torch_dtype, c=4, shape=(4, 4))
    labels[0][labels[0] == 2] = 3  # class 2 absent from sample 0: it takes the largest weight there
    expected = MonaiGeneralizedDiceLoss(softmax=True, to_onehot_y=True, w_type=weight_type,
                                        batch=aggregation == "batch",
                                        include_background=include_background)(x, labels[:, None])
    loss = lt.GeneralizedDiceLoss(from_logits=True, weight_type=weight_type, aggregation=aggregation,
                                  include_background=include_background)
    close(loss(x, labels), expected, gdl_tol)


def test_generalized_dice_masks_and_reduction_none(torch_dtype, gdl_tol):
    p = torch.softmax(torch.randn(3, 3, 4, 4, dtype=torch_dtype), 1)
    y = F.one_hot(torch.randint(0, 3, (3, 4, 4)), 3).movedim(-1, 1).to(torch_dtype)
    y[1, 1] = 0  # an absent class in one sample (its pixels become background-free)
    expected = MonaiGeneralizedDiceLoss(reduction="none")(p, y)
    close(lt.GeneralizedDiceLoss(reduction="none")(p, y), expected.flatten(), gdl_tol)


def test_generalized_dice_binary_sigmoid(torch_dtype, gdl_tol):
    x = torch.randn(3, 1, 5, 5, dtype=torch_dtype) * 2
    y = (torch.rand(3, 1, 5, 5) < 0.3).to(torch_dtype)
    expected = MonaiGeneralizedDiceLoss(sigmoid=True)(x, y)
    close(lt.GeneralizedDiceLoss(from_logits=True)(x, y), expected, gdl_tol)


# --- numbers worked by hand ---------------------------------------------------------------------

# two samples of four pixels: TP = (1.7, 1.3), sum(y_pred) = (2.0, 1.7), sum(y) = (2, 2), so
# FP = (0.3, 0.4) and FN = (0.3, 0.7)
P_HAND = [[0.9, 0.8, 0.1, 0.2], [0.3, 0.6, 0.7, 0.1]]
Y_HAND = [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]


def test_tversky_by_hand():
    # alpha = 0.3 on FP, beta = 0.7 on FN: 1.7 / (1.7 + 0.09 + 0.21) = 0.85, 1.3 / (1.3 + 0.12 + 0.49)
    expected = [1 - 1.7 / 2.0, 1 - 1.3 / 1.91]
    got = ln.tversky(P_HAND, Y_HAND, alpha=0.3, beta=0.7, smooth=0.0, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    np.testing.assert_allclose(ln.tversky(P_HAND, Y_HAND, alpha=0.3, beta=0.7, smooth=0.0),
                               np.mean(expected), rtol=1e-14)
    # focal Tversky: the per-sample losses to the power gamma
    got = ln.tversky(P_HAND, Y_HAND, alpha=0.3, beta=0.7, gamma=0.75, smooth=0.0, reduction="none")
    np.testing.assert_allclose(got, np.power(expected, 0.75), rtol=1e-14)
    # the batch: TP = 3.0, FP = 0.7, FN = 1.0
    got = ln.tversky(P_HAND, Y_HAND, alpha=0.3, beta=0.7, smooth=0.0, aggregation="batch")
    np.testing.assert_allclose(got, 1 - 3.0 / (3.0 + 0.21 + 0.7), rtol=1e-14)


def test_jaccard_by_hand():
    # I / (P + Y - I): 1.7 / 2.3 and 1.3 / 2.4; with s = 1: 2.7 / 3.3 and 2.3 / 3.4
    got = ln.jaccard(P_HAND, Y_HAND, smooth=0.0, reduction="none")
    np.testing.assert_allclose(got, [0.6 / 2.3, 1.1 / 2.4], rtol=1e-14)
    got = ln.jaccard(P_HAND, Y_HAND, smooth=1.0, reduction="none")
    np.testing.assert_allclose(got, [0.6 / 3.3, 1.1 / 3.4], rtol=1e-14)


def test_generalized_dice_by_hand():
    # one sample, three pixels, labels [0, 0, 1], class 2 absent (class axis 1 here):
    # Y = (2, 1, 0), I = (1.2, 0.6, 0), P = (1.4, 1.1, 0.5); square weights (1/4, 1, 1 = the largest)
    p = [[[0.7, 0.5, 0.2], [0.2, 0.3, 0.6], [0.1, 0.2, 0.2]]]
    labels = [[0, 0, 1]]
    got = ln.generalized_dice(p, labels, smooth=0.0, axis=1)
    np.testing.assert_allclose(got, 1 - 2 * (0.25 * 1.2 + 0.6) / (0.25 * 3.4 + 2.1 + 0.5), rtol=1e-14)
    # simple weights (1/2, 1, 1); uniform: plain Dice over the classes' pooled sums
    got = ln.generalized_dice(p, labels, smooth=0.0, axis=1, weight_type="simple")
    np.testing.assert_allclose(got, 1 - 2 * (0.5 * 1.2 + 0.6) / (0.5 * 3.4 + 2.1 + 0.5), rtol=1e-14)
    got = ln.generalized_dice(p, labels, smooth=0.0, axis=1, weight_type="uniform")
    np.testing.assert_allclose(got, 1 - 2 * 1.8 / 6.0, rtol=1e-14)
    # class_weights multiply the weights: (1/4 * 2, 1 * 1, 1 * 0)
    got = ln.generalized_dice(p, labels, smooth=0.0, axis=1, class_weights=[2.0, 1.0, 0.0])
    np.testing.assert_allclose(got, 1 - 2 * (0.5 * 1.2 + 0.6) / (0.5 * 3.4 + 2.1), rtol=1e-14)


# --- properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("aggregation", ["sample", "batch"])
def test_tversky_half_half_is_plain_dice_with_twice_the_smoothing(aggregation):
    rng = np.random.default_rng(1)
    p, y = rng.uniform(size=(4, 2, 5)), (rng.uniform(size=(4, 2, 5)) < 0.5).astype(float)
    for s in (0.0, 1e-5, 0.3):
        tversky = ln.tversky(p, y, smooth=s, aggregation=aggregation, reduction="none")
        dice = ln.dice(p, y, smooth=2 * s, squared=False, aggregation=aggregation, reduction="none")
        np.testing.assert_allclose(tversky, dice, rtol=1e-13)
    # and the closed form 1 - 2 TP / (P + Y) with s = 0
    tp, total = (p * y).sum((1, 2)), (p + y).sum((1, 2))
    np.testing.assert_allclose(ln.tversky(p, y, smooth=0.0, reduction="none"), 1 - 2 * tp / total, rtol=1e-13)


@pytest.mark.parametrize("name", ["tversky", "jaccard", "generalized_dice"])
def test_zero_at_a_perfect_prediction(name):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=(3, 4, 4))
    onehot = np.moveaxis(np.eye(3)[labels], -1, 1)
    f = getattr(ln, name)
    for params in ({}, {"aggregation": "batch"}, {"gamma": 0.5} if name == "tversky" else {}):
        np.testing.assert_allclose(f(onehot, labels, axis=1, **params), 0.0, atol=1e-6)
        np.testing.assert_allclose(f(onehot, onehot, axis=1, smooth=0.0, **params), 0.0, atol=1e-15)
    mask = (rng.uniform(size=(3, 1, 4, 4)) < 0.5).astype(float)
    np.testing.assert_allclose(f(mask, mask, axis=1, smooth=0.0), 0.0, atol=1e-15)


def test_focal_tversky_gradient_is_finite_at_a_perfect_prediction():
    # gamma < 1: d/dx x^gamma is infinite at 0; the formula takes the power away from 0
    y = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    p = y.clone().requires_grad_()
    loss = lt.TverskyLoss(gamma=0.5, smooth=0.0)(p, y)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(p.grad).all()
