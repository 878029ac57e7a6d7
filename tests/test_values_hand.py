"""Every loss against numbers worked by hand, in NumPy and in torch float32 / float64.

The classic worked examples (BCE 0.1976349, CCE 1.7661058, KL 0.1167834) and small cases whose
arithmetic is written out in the comments. 2-D inputs put classes on the last axis, which is also
torch's dim 1, so one set of arrays serves both frameworks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from loss_cases import CLASS_NAMES, tolerances

import lossplug.numpy
import lossplug.torch

FRAMEWORKS = ["numpy", "torch-float32", "torch-float64"]


def run(framework, name, y_pred, y_true, **params):
    y_pred, y_true = np.asarray(y_pred, dtype=float), np.asarray(y_true)
    if framework == "numpy":
        return np.asarray(getattr(lossplug.numpy, name)(y_pred, y_true, **params))
    dtype = getattr(torch, framework.split("-")[1])
    true = torch.tensor(y_true) if y_true.dtype.kind in "iu" else torch.tensor(y_true, dtype=dtype)
    out = getattr(lossplug.torch, CLASS_NAMES[name])(**params)(torch.tensor(y_pred, dtype=dtype), true)
    assert out.dtype == dtype
    return out.detach().numpy()


def check(framework, expected, name, y_pred, y_true, **params):
    out = run(framework, name, y_pred, y_true, **params)
    dtype = "float64" if framework != "torch-float32" else "float32"
    # hand values are given to 7 significant digits
    tol = tolerances(dtype)
    np.testing.assert_allclose(out, expected, rtol=max(tol["rtol"], 5e-7), atol=max(tol["atol"], 1e-7))


@pytest.fixture(params=FRAMEWORKS)
def fw(request):
    return request.param


# --- the classic worked examples ----------------------------------------------------------------

P3 = [[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]
LABELS3 = [1, 2, 0]
ONEHOT3 = np.eye(3)[LABELS3]


def test_bce_classic(fw):
    check(fw, 0.1976349, "bce", [0.1, 0.9, 0.8, 0.3], [0.0, 1.0, 1.0, 0.0])


def test_categorical_ce_classic(fw):
    # -(log 0.1 + log 0.5 + log 0.1) / 3
    check(fw, 1.7661058, "categorical_ce", P3, ONEHOT3)


def test_sparse_categorical_ce_classic(fw):
    check(fw, 1.7661058, "sparse_categorical_ce", P3, LABELS3)


def test_kl_div_classic(fw):
    # KL(p||q), p = y_true = [0.2, 0.3, 0.5], q = y_pred = [0.4, 0.3, 0.3]:
    # 0.2 log 0.5 + 0 + 0.5 log(5/3) = -0.1386294 + 0.2554128
    check(fw, 0.1167834, "kl_div", [[0.4, 0.3, 0.3]], [[0.2, 0.3, 0.5]])


def test_kl_div_log_input_and_logits_give_the_classic_value(fw):
    q = np.array([[0.4, 0.3, 0.3]])
    check(fw, 0.1167834, "kl_div", np.log(q), [[0.2, 0.3, 0.5]], log_input=True)
    check(fw, 0.1167834, "kl_div", np.log(q) + 3.0, [[0.2, 0.3, 0.5]], from_logits=True)


def test_bce_classic_sum(fw):
    check(fw, 4 * 0.1976349, "bce", [0.1, 0.9, 0.8, 0.3], [0.0, 1.0, 1.0, 0.0], reduction="sum")


def test_categorical_ce_classic_none(fw):
    # per sample: -log 0.1, -log 0.5, -log 0.1
    check(fw, [2.3025851, 0.6931472, 2.3025851], "categorical_ce", P3, ONEHOT3, reduction="none")


# --- regression ---------------------------------------------------------------------------------

YP, YT = [1.0, 2.0, 3.0], [1.5, 2.0, 1.0]  # errors 0.5, 0, 2


def test_mse_hand(fw):
    check(fw, (0.25 + 0 + 4) / 3, "mse", YP, YT)  # 1.4166667
    check(fw, [0.25, 0.0, 4.0], "mse", YP, YT, reduction="none")
    check(fw, 4.25, "mse", YP, YT, reduction="sum")


def test_mae_hand(fw):
    check(fw, 2.5 / 3, "mae", YP, YT)  # 0.8333333
    check(fw, [0.5, 0.0, 2.0], "mae", YP, YT, reduction="none")


def test_huber_both_sides_of_delta(fw):
    # delta 1: |e| = 0.5 -> 0.5*0.25 = 0.125 (quadratic); |e| = 2 -> 0.5*1 + 1*(2-1) = 1.5 (linear)
    check(fw, [0.125, 0.0, 1.5], "huber", YP, YT, reduction="none")
    check(fw, 1.625 / 3, "huber", YP, YT)
    # delta 0.25: both errors beyond delta: 0.03125 + 0.25*0.25 = 0.09375; 0.03125 + 0.25*1.75 = 0.46875
    check(fw, [0.09375, 0.0, 0.46875], "huber", YP, YT, delta=0.25, reduction="none")
    # delta 3: both inside: 0.125 and 2
    check(fw, 2.125 / 3, "huber", YP, YT, delta=3.0)


def test_huber_at_delta_is_continuous(fw):
    # |e| = delta exactly: 0.5 delta^2 from either branch
    check(fw, 0.5 * 0.7**2, "huber", [0.7], [0.0], delta=0.7)


# --- binary ------------------------------------------------------------------------------------


def test_weighted_bce_pos_and_neg_weights(fw):
    # p = [0.8, 0.3], y = [1, 0], w+ = 2, w- = 0.5:
    # -2 log 0.8 = 0.4462871, -0.5 log 0.7 = 0.1783375
    check(fw, [0.4462871, 0.1783375], "weighted_bce", [0.8, 0.3], [1.0, 0.0],
          pos_weight=2.0, neg_weight=0.5, reduction="none")
    check(fw, (0.4462871 + 0.1783375) / 2, "weighted_bce", [0.8, 0.3], [1.0, 0.0],
          pos_weight=2.0, neg_weight=0.5)


def test_weighted_bce_zero_negative_weight_drops_negatives(fw):
    check(fw, [-3 * math.log(0.8), 0.0], "weighted_bce", [0.8, 0.3], [1.0, 0.0],
          pos_weight=3.0, neg_weight=0.0, reduction="none")


def test_weighted_bce_from_logits(fw):
    # logit log 4 -> p = 0.8; logit log(3/7) -> p = 0.3
    check(fw, (0.4462871 + 0.1783375) / 2, "weighted_bce", [math.log(4), math.log(3 / 7)], [1.0, 0.0],
          pos_weight=2.0, neg_weight=0.5, from_logits=True)


def test_bce_label_smoothing(fw):
    # ls = 0.2, y = 1 -> 0.9: -(0.9 log 0.8 + 0.1 log 0.2) = 0.2008292 + 0.1609438
    check(fw, 0.3617730, "bce", [0.8], [1.0], label_smoothing=0.2)
    check(fw, 0.3617730, "bce", [math.log(4)], [1.0], label_smoothing=0.2, from_logits=True)


def test_bce_clips_probabilities_at_eps(fw):
    # p = 0 for y = 1 is clipped to eps: -log(1e-3)
    check(fw, [-math.log(1e-3), 0.0 - math.log(1 - 1e-3)], "bce", [0.0, 0.0], [1.0, 0.0],
          eps=1e-3, reduction="none")


# --- categorical --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["categorical_ce", "sparse_categorical_ce"])
def test_ce_label_smoothing(fw, name):
    # ls = 0.3, C = 3, p = [0.8, 0.1, 0.1], y = class 0 -> [0.8, 0.1, 0.1]:
    # -(0.8 log 0.8 + 0.2 log 0.1) = 0.1785148 + 0.4605170
    target = [[1.0, 0.0, 0.0]] if name == "categorical_ce" else [0]
    check(fw, 0.6390318, name, [[0.8, 0.1, 0.1]], target, label_smoothing=0.3)


@pytest.mark.parametrize("name", ["categorical_ce", "sparse_categorical_ce"])
def test_ce_class_weights_mean_divides_by_the_label_weights(fw, name):
    # classic example, weights [1, 2, 3], labels [1, 2, 0]:
    # 2*(-log 0.1) + 3*(-log 0.5) + 1*(-log 0.1) = 4.6051702 + 2.0794415 + 2.3025851 = 8.9871968; / 6
    target = ONEHOT3 if name == "categorical_ce" else LABELS3
    check(fw, 8.9871968 / 6, name, P3, target, class_weights=[1.0, 2.0, 3.0])
    check(fw, 8.9871968, name, P3, target, class_weights=[1.0, 2.0, 3.0], reduction="sum")
    check(fw, [4.6051702, 2.0794415, 2.3025851], name, P3, target, class_weights=[1.0, 2.0, 3.0],
          reduction="none")


def test_sparse_ce_ignore_index_mean(fw):
    # sample 1 ignored: mean of -log 0.1 and -log 0.1
    check(fw, 2.3025851, "sparse_categorical_ce", P3, [1, -100, 0], ignore_index=-100)
    check(fw, [2.3025851, 0.0, 2.3025851], "sparse_categorical_ce", P3, [1, -100, 0], ignore_index=-100,
          reduction="none")


def test_categorical_ce_ignore_index_mean(fw):
    # one-hot labels [1, 2, 0], ignore class 2: sample 1 drops out
    check(fw, 2.3025851, "categorical_ce", P3, ONEHOT3, ignore_index=2)


def test_ce_ignore_index_with_class_weights(fw):
    # labels [1, 2, 0], weights [1, 2, 3], ignore 0: (2*2.3025851 + 3*0.6931472) / (2 + 3)
    check(fw, (4.6051702 + 2.0794415) / 5, "sparse_categorical_ce", P3, LABELS3,
          class_weights=[1.0, 2.0, 3.0], ignore_index=0)


def test_ce_all_ignored_is_zero(fw):
    check(fw, 0.0, "sparse_categorical_ce", P3, [-1, -1, -1], ignore_index=-1)


def test_ce_from_logits(fw):
    # logits log p give the probabilities back through softmax
    check(fw, 1.7661058, "categorical_ce", np.log(P3) - 1.0, ONEHOT3, from_logits=True)
    check(fw, 1.7661058, "sparse_categorical_ce", np.log(P3) + 2.0, LABELS3, from_logits=True)


def test_ce_soft_targets(fw):
    # y = [0.5, 0.5, 0] on p = [0.8, 0.1, 0.1]: -(0.5 log 0.8 + 0.5 log 0.1) = 0.1115718 + 1.1512925
    check(fw, 1.2628643, "categorical_ce", [[0.8, 0.1, 0.1]], [[0.5, 0.5, 0.0]])


def test_kl_div_zero_target_terms_are_zero(fw):
    # p = [0, 1]: 0 + 1 log(1/0.25)
    check(fw, math.log(4), "kl_div", [[0.75, 0.25]], [[0.0, 1.0]])


# --- dice ---------------------------------------------------------------------------------------

MASK_P = [[[0.9, 0.2], [0.6, 0.0]]]  # one sample, 2x2
MASK_Y = [[[1.0, 0.0], [1.0, 0.0]]]
# intersection = 0.9 + 0.6 = 1.5; sum p^2 = 0.81 + 0.04 + 0.36 = 1.21; sum p = 1.7; sum y = sum y^2 = 2


def test_dice_2x2_squared(fw):
    check(fw, 1 - 3.0 / 3.21, "dice", MASK_P, MASK_Y, smooth=0.0)  # 0.0654206
    check(fw, 1 - 4.0 / 4.21, "dice", MASK_P, MASK_Y, smooth=1.0)  # 0.0498812


def test_dice_2x2_plain(fw):
    check(fw, 1 - 3.0 / 3.7, "dice", MASK_P, MASK_Y, smooth=0.0, squared=False)  # 0.1891892
    check(fw, 1 - 4.0 / 4.7, "dice", MASK_P, MASK_Y, smooth=1.0, squared=False)  # 0.1489362


def test_dice_default_smooth(fw):
    check(fw, 1 - (3.0 + 1e-5) / (3.21 + 1e-5), "dice", MASK_P, MASK_Y)


def test_dice_two_samples_mean_and_batch(fw):
    # sample 2: p = [[0, 0.5], [0, 0]], y = [[0, 1], [0, 0]]: I = 0.5, D = 0.25 + 1 -> 1 - 1/1.25 = 0.2
    p = MASK_P + [[[0.0, 0.5], [0.0, 0.0]]]
    y = MASK_Y + [[[0.0, 1.0], [0.0, 0.0]]]
    check(fw, [0.21 / 3.21, 0.2], "dice", p, y, smooth=0.0, reduction="none")
    check(fw, (0.21 / 3.21 + 0.2) / 2, "dice", p, y, smooth=0.0)
    # batch: I = 2, D = 3.21 + 1.25 = 4.46
    check(fw, 1 - 4.0 / 4.46, "dice", p, y, smooth=0.0, aggregation="batch")


def test_dice_both_masks_empty_is_zero(fw):
    check(fw, 0.0, "dice", [[[0.0, 0.0]]], [[[0.0, 0.0]]], smooth=0.0)
    check(fw, 0.0, "dice", [[[0.0, 0.0]]], [[[0.0, 0.0]]])


def test_dice_label_map_per_class(fw):
    # 1 sample, 2 positions, 2 classes on the last axis (numpy) / dim 1 (torch; given transposed)
    # probabilities p = [[0.8, 0.2], [0.4, 0.6]] (position x class), labels [0, 1]:
    # class 0: I = 0.8, D = 0.64 + 0.16 + 1 = 1.8 -> 1 - 1.6/1.8 = 0.1111111
    # class 1: I = 0.6, D = 0.04 + 0.36 + 1 = 1.4 -> 1 - 1.2/1.4 = 0.1428571
    p = np.array([[[0.8, 0.2], [0.4, 0.6]]])
    if fw != "numpy":
        p = p.transpose(0, 2, 1)
    labels = [[0, 1]]
    check(fw, (1 / 9 + 1 / 7) / 2, "dice", p, labels, smooth=0.0, per_class=True)
    check(fw, (1 / 9 + 3 / 7) / 4, "dice", p, labels, smooth=0.0, per_class=True, class_weights=[1.0, 3.0])
    check(fw, 1 / 7, "dice", p, labels, smooth=0.0, include_background=False)
    # not per class: I = 1.4, D = 0.64 + 0.16 + 0.04 + 0.36 + 2 = 3.2 -> 1 - 2.8/3.2 = 0.125
    check(fw, 0.125, "dice", p, labels, smooth=0.0)
    # ignore label 1: only position 0 counts: I = 0.8, D = 0.64 + 0.04 + 1 = 1.68
    check(fw, 1 - 1.6 / 1.68, "dice", p, [[0, 9]], smooth=0.0, ignore_index=9)


# --- logits of +-1e3: exact in log space ----------------------------------------------------------


def test_logits_1e3_cost_their_margin(fw):
    # softplus(1000) = 1000; log-softmax of [1e3, -1e3] is [0, -2000]
    check(fw, [1000.0, 0.0], "bce", [1e3, 1e3], [0.0, 1.0], from_logits=True, reduction="none")
    check(fw, [3000.0, 0.0], "weighted_bce", [-1e3, -1e3], [1.0, 0.0], from_logits=True, pos_weight=3.0,
          reduction="none")
    check(fw, [2000.0, 0.0], "sparse_categorical_ce", [[1e3, -1e3], [1e3, -1e3]], [1, 0], from_logits=True,
          reduction="none")
    check(fw, [2000.0, 0.0], "categorical_ce", [[1e3, -1e3], [1e3, -1e3]], [[0.0, 1.0], [1.0, 0.0]],
          from_logits=True, reduction="none")
    check(fw, 2000.0, "kl_div", [[1e3, -1e3]], [[0.0, 1.0]], from_logits=True)
