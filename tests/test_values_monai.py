"""lossplug's DiceLoss against MONAI's DiceLoss where the formulas coincide.

MONAI (monai/losses/dice.py) computes one Dice per sample *and class* (sums over spatial axes
only; ``batch=True`` adds the batch axis), then averages them; ``squared_pred=True`` gives
lossplug's squared denominator, ``smooth_nr = smooth_dr = s`` its smoothing. So MONAI equals
lossplug with ``per_class=True`` (or with one channel, where the two coincide), and MONAI's
class ``weight`` (a plain mean of ``w_c * loss_c``) equals lossplug's weighted mean
``sum(w_c loss_c) / sum(w_c)`` when the weights sum to the number of classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss as MonaiDiceLoss  # the bench extra; .[dev] installs it

import lossplug.torch as lt


@pytest.fixture
def tol(torch_dtype):
    # MONAI forms the intersection as (|p|^2 + |y|^2 - |p - y|^2) / 2 from vector norms (a square
    # root, then a square): about 1e-8 relative off in float64, so float64 gets 1e-7 here
    return {"rtol": 1e-7, "atol": 1e-9} if torch_dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}


def close(actual, expected, tol):
    np.testing.assert_allclose(actual.detach().double().numpy(), expected.detach().double().numpy(), **tol)


def monai(**kwargs):
    kwargs.setdefault("squared_pred", True)
    return MonaiDiceLoss(**kwargs)


@pytest.mark.parametrize("smooth", [1e-5, 1.0, 0.0])
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("aggregation", ["sample", "batch"])
def test_binary_masks(torch_dtype, tol, smooth, squared, aggregation):
    p = torch.rand(3, 1, 5, 4, dtype=torch_dtype)
    y = (torch.rand(3, 1, 5, 4) < 0.4).to(torch_dtype)
    monai_loss = monai(squared_pred=squared, smooth_nr=smooth, smooth_dr=smooth, batch=aggregation == "batch")
    expected = monai_loss(p, y)
    loss = lt.DiceLoss(smooth=smooth, squared=squared, aggregation=aggregation)
    close(loss(p, y), expected, tol)


def test_binary_masks_from_logits_sigmoid(torch_dtype, tol):
    x = torch.randn(2, 1, 4, 4, dtype=torch_dtype) * 3
    y = (torch.rand(2, 1, 4, 4) < 0.5).to(torch_dtype)
    close(lt.DiceLoss(from_logits=True)(x, y), monai(sigmoid=True)(x, y), tol)


def test_reduction_none_is_monais_per_sample(torch_dtype, tol):
    p = torch.rand(3, 1, 4, 4, dtype=torch_dtype)
    y = (torch.rand(3, 1, 4, 4) < 0.5).to(torch_dtype)
    close(lt.DiceLoss(reduction="none")(p, y), monai(reduction="none")(p, y).flatten(), tol)


@pytest.mark.parametrize("aggregation", ["sample", "batch"])
@pytest.mark.parametrize("include_background", [True, False])
def test_label_maps_with_softmax(torch_dtype, tol, aggregation, include_background):
    x = torch.randn(2, 4, 3, 5, dtype=torch_dtype) * 2
    labels = torch.randint(0, 4, (2, 3, 5))
    expected = monai(softmax=True, to_onehot_y=True, batch=aggregation == "batch",
                     include_background=include_background)(x, labels[:, None])
    loss = lt.DiceLoss(from_logits=True, per_class=True, aggregation=aggregation,
                       include_background=include_background)
    close(loss(x, labels), expected, tol)


def test_one_hot_masks_with_probabilities(torch_dtype, tol):
    p = torch.softmax(torch.randn(2, 3, 4, 4, dtype=torch_dtype), 1)
    y = F.one_hot(torch.randint(0, 3, (2, 4, 4)), 3).movedim(-1, 1).to(torch_dtype)
    close(lt.DiceLoss(per_class=True)(p, y), monai()(p, y), tol)


def test_two_classes_without_background_is_the_foreground_dice(torch_dtype, tol):
    # with C = 2 and the background dropped, per_class and pooled Dice are the same number
    x = torch.randn(3, 2, 4, 4, dtype=torch_dtype)
    labels = torch.randint(0, 2, (3, 4, 4))
    expected = monai(softmax=True, to_onehot_y=True, include_background=False)(x, labels[:, None])
    close(lt.DiceLoss(from_logits=True, include_background=False)(x, labels), expected, tol)


def test_multilabel_sigmoid_per_class(torch_dtype, tol):
    x = torch.randn(2, 3, 4, 4, dtype=torch_dtype)
    y = (torch.rand(2, 3, 4, 4) < 0.3).to(torch_dtype)
    loss = lt.DiceLoss(from_logits=True, activation="sigmoid", per_class=True)
    close(loss(x, y), monai(sigmoid=True)(x, y), tol)


def test_class_weights_summing_to_the_class_count(torch_dtype, tol):
    w = [0.5, 1.0, 1.5]  # sum 3 = C: MONAI's mean(w_c loss_c) equals sum(w_c loss_c) / sum(w_c)
    x = torch.randn(2, 3, 4, 4, dtype=torch_dtype)
    labels = torch.randint(0, 3, (2, 4, 4))
    expected = monai(softmax=True, to_onehot_y=True, weight=w)(x, labels[:, None])
    close(lt.DiceLoss(from_logits=True, per_class=True, class_weights=w)(x, labels), expected, tol)


@pytest.mark.parametrize("ignore_index", [255, 2])
def test_ignore_index_on_label_maps(torch_dtype, tol, ignore_index):
    x = torch.randn(2, 3, 4, 4, dtype=torch_dtype)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[:, :2, :] = ignore_index
    expected = monai(softmax=True, to_onehot_y=True, ignore_index=ignore_index)(x, labels[:, None])
    loss = lt.DiceLoss(from_logits=True, per_class=True, ignore_index=ignore_index)
    close(loss(x, labels), expected, tol)
