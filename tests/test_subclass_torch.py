"""Subclassing the torch losses as a user's project would: a focal BCE overriding ``terms`` with an
extra ``gamma`` hyperparameter, and a Dice overriding ``score`` with another smoothing rule."""

from __future__ import annotations

import math

import pytest
import torch

import lossplug.torch as lt


class FocalBCELoss(lt.BCELoss):
    """Focal loss (Lin et al. 2017): BCE scaled by (1 - p_t)^gamma, p_t the probability of the truth."""

    def __init__(self, *, gamma: float = 2.0, **params):
        super().__init__(**params)
        self.gamma = gamma

    def terms(self, y_pred, y_true):
        bce, weight = super().terms(y_pred, y_true)
        p = torch.sigmoid(y_pred) if self.from_logits else y_pred
        p_t = p * y_true + (1 - p) * (1 - y_true)
        return (1 - p_t) ** self.gamma * bce, weight


class NumeratorFreeDiceLoss(lt.DiceLoss):
    """Dice smoothed in the denominator only: 2I / (D + s), so empty masks cost 1, not 0."""

    def score(self, intersection, denominator):
        return 2 * intersection / (denominator + self.smooth)


# --- focal BCE ----------------------------------------------------------------------------------


def test_focal_hand_values():
    # p = 0.8, y = 1: (1 - 0.8)^2 * -log 0.8 = 0.04 * 0.2231436; p = 0.4, y = 0: 0.4^2 * -log 0.6
    p, y = torch.tensor([0.8, 0.4], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    out = FocalBCELoss(gamma=2.0, reduction="none")(p, y)
    expected = [0.04 * -math.log(0.8), 0.16 * -math.log(0.6)]  # 0.0089257, 0.0817331
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    assert math.isclose(float(FocalBCELoss(gamma=2.0)(p, y)), sum(expected) / 2, rel_tol=1e-12)


@pytest.mark.parametrize("from_logits", [False, True])
def test_focal_with_gamma_0_is_bce_and_keeps_the_base_parameters(from_logits):
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    p = x if from_logits else torch.sigmoid(x)
    y = (torch.rand(4, 3) < 0.5).float()
    focal = FocalBCELoss(gamma=0.0, from_logits=from_logits, label_smoothing=0.1)
    assert focal.gamma == 0.0 and focal.label_smoothing == 0.1 and focal.from_logits is from_logits
    torch.testing.assert_close(focal(p, y), lt.BCELoss(from_logits=from_logits, label_smoothing=0.1)(p, y))
    assert float(FocalBCELoss(gamma=2.0, from_logits=from_logits)(p, y)) < float(focal(p, y))


def test_focal_keeps_the_base_checks():
    with pytest.raises(ValueError, match="eps"):
        FocalBCELoss(gamma=2.0, eps=0.0)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        FocalBCELoss()(torch.rand(3), torch.rand(2))


def test_focal_trains_a_tiny_model():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) > 0).float().unsqueeze(1)
    model = torch.nn.Linear(4, 1)
    loss_fn = FocalBCELoss(gamma=2.0, from_logits=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    with torch.no_grad():
        accuracy = float(((model(x) > 0).float() == y).float().mean())
    assert accuracy > 0.9


# --- Dice with its own smoothing ----------------------------------------------------------------

MASK_P = torch.tensor([[[0.9, 0.2], [0.6, 0.0]]], dtype=torch.float64)
MASK_Y = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)


def test_dice_score_override_hand_value():
    # I = 1.5, squared D = 1.21 + 2 = 3.21, s = 1: 1 - 3 / 4.21 = 0.2874109 (stock Dice: 1 - 4/4.21)
    out = NumeratorFreeDiceLoss(smooth=1.0)(MASK_P, MASK_Y)
    assert math.isclose(float(out), 1 - 3 / 4.21, rel_tol=1e-12)
    assert math.isclose(float(lt.DiceLoss(smooth=1.0)(MASK_P, MASK_Y)), 1 - 4 / 4.21, rel_tol=1e-12)
    # plain denominator D = 1.7 + 2 = 3.7: 1 - 3 / 4.7
    out = NumeratorFreeDiceLoss(smooth=1.0, squared=False)(MASK_P, MASK_Y)
    assert math.isclose(float(out), 1 - 3 / 4.7, rel_tol=1e-12)


def test_dice_score_override_empty_masks_cost_one():
    zeros = torch.zeros(1, 2, 2, dtype=torch.float64)
    assert float(NumeratorFreeDiceLoss(smooth=1.0)(zeros, zeros)) == 1.0
    assert float(lt.DiceLoss(smooth=1.0)(zeros, zeros)) == 0.0


def test_dice_score_override_per_class_and_batch():
    # score receives the per-class sums: class 0 (I = 0.8, D = 1.8), class 1 (I = 0.6, D = 1.4), s = 1
    p = torch.tensor([[[0.8, 0.4], [0.2, 0.6]]], dtype=torch.float64)  # (N=1, C=2, positions=2)
    labels = torch.tensor([[0, 1]])
    loss = NumeratorFreeDiceLoss(smooth=1.0, per_class=True, aggregation="batch")
    expected = ((1 - 1.6 / 2.8) + (1 - 1.2 / 2.4)) / 2
    assert math.isclose(float(loss(p, labels)), expected, rel_tol=1e-12)
