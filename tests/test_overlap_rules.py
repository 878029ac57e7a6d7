"""Tversky, Jaccard, generalized Dice and Lovász keep the rules of the nine: named errors for bad
parameters and bad input, torch.compile without graph breaks, finite under bf16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossplug
import lossplug.numpy as ln
import lossplug.torch as lt
from lossplug import LossParameterError

CLASSES = {"tversky": lt.TverskyLoss, "jaccard": lt.JaccardLoss,
           "generalized_dice": lt.GeneralizedDiceLoss, "lovasz": lt.LovaszLoss}


@pytest.mark.parametrize("name,params,match", [
    ("tversky", {"alpha": -0.1}, "alpha=-0.1 is invalid; it must be a number >= 0"),
    ("tversky", {"beta": "x"}, "beta='x' is invalid"),
    ("tversky", {"gamma": 0.0}, "gamma=0.0 is invalid; it must be a number > 0"),
    ("tversky", {"class_weights": [1.0, 2.0]}, "class_weights needs per_class=True"),
    ("jaccard", {"class_weights": [1.0, 2.0]}, "class_weights needs per_class=True"),
    ("jaccard", {"aggregation": "image"}, "aggregation='image' is invalid"),
    ("jaccard", {"sync_dist": True}, 'sync_dist=True needs aggregation="batch"'),
    ("generalized_dice", {"weight_type": "inverse"}, "weight_type='inverse' is invalid; it must be one of"),
    ("generalized_dice", {"per_class": True}, "unknown parameter.*per_class"),
    ("lovasz", {"aggregation": "all"}, "aggregation='all' is invalid"),
    ("lovasz", {"smooth": 1.0}, "unknown parameter.*smooth"),
])
def test_bad_parameters_fail_at_construction(name, params, match):
    with pytest.raises(LossParameterError, match=match):
        CLASSES[name](**params)
    with pytest.raises(LossParameterError, match=match):
        lossplug.get(name, framework="numpy", **params)([0.5], [1.0])


@pytest.mark.parametrize("name", list(CLASSES))
def test_bad_inputs_are_named(name):
    loss = CLASSES[name](from_logits=True)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"label 3 is out of range.*labels must be in \[0, 2\]"):
        loss(x, torch.full((2, 4, 4), 3))
    with pytest.raises(ValueError, match=r"y_true has shape \(2, 4\).*never broadcasts"):
        loss(x, torch.zeros(2, 4, dtype=torch.long))
    # MONAI's (N, 1, H, W) label channel: the message says what to do with it
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*never broadcasts\); a label map has no class "
                                         r"axis: squeeze axis 1 of y_true"):
        loss(x, torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y_pred \(probabilities, from_logits=False\) must lie in \[0, 1\]"):
        CLASSES[name]()(x * 10, torch.zeros(2, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("name", ["tversky", "jaccard", "generalized_dice"])
def test_class_weights_of_the_wrong_length_are_named(name):
    params = {"per_class": True} if name != "generalized_dice" else {}
    loss = CLASSES[name](class_weights=[1.0, 1.0], **params)
    with pytest.raises(ValueError, match="class_weights has 2 entries but y_pred has 3 classes"):
        loss(torch.rand(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))


def test_generalized_dice_needs_a_class_axis():
    with pytest.raises(ValueError, match="needs a class axis"):
        ln.generalized_dice(np.full(4, 0.5), np.ones(4))


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("target", ["labels", "masks"])
def test_torch_compile_fullgraph(name, target):
    torch._dynamo.reset()
    x = torch.randn(2, 3 if target == "labels" else 1, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4)) if target == "labels" else (torch.rand(2, 1, 4, 4) < 0.5).float()
    params = {"from_logits": True, "ignore_index": 255} if target == "labels" else {"from_logits": True}
    loss = CLASSES[name](**params)
    compiled = torch.compile(loss, fullgraph=True, backend="eager")  # raises at a graph break
    np.testing.assert_allclose(compiled(x, y).item(), loss(x, y).item(), rtol=1e-6)


@pytest.mark.parametrize("name", list(CLASSES))
def test_bf16_autocast_is_finite(name):
    x = (torch.randn(2, 3, 8, 8) * 30).requires_grad_()
    y = torch.randint(0, 3, (2, 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = CLASSES[name](from_logits=True)(x.bfloat16(), y)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(x.grad).all()
    expected = CLASSES[name](from_logits=True)(x.detach().bfloat16().float(), y)
    np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-5)


@pytest.mark.parametrize("name", list(CLASSES))
def test_logits_of_a_thousand_are_finite(name):
    x = (torch.randn(2, 3, 4, 4, dtype=torch.float64).sign() * 1e3).requires_grad_()
    value = CLASSES[name](from_logits=True)(x, torch.randint(0, 3, (2, 4, 4)))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
