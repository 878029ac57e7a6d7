"""CombinedLoss (torch): the weighted sum, terms as instances or registry-name dicts, each term's
value for logging, errors, torch.compile, and the shipped Hydra presets.

Independent value: MONAI's ``DiceCELoss(softmax=True, to_onehot_y=True, lambda_dice=a, lambda_ce=b)``
is a * (MONAI's Dice: per class, plain denominator) + b * torch's ``CrossEntropyLoss``, i.e.
``CombinedLoss`` of ``DiceLoss(from_logits=True, per_class=True, squared=False)`` and
``SparseCategoricalCELoss(from_logits=True)`` with weights a and b.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

import lossplug
import lossplug.numpy as ln
import lossplug.torch as lt
from lossplug import LossParameterError


def _batch(dtype=torch.float64, c=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, 4, 5, generator=g, dtype=dtype) * 2
    return x, torch.randint(0, c, (2, 4, 5), generator=g)


@pytest.mark.parametrize("lambda_dice,lambda_ce", [(1.0, 1.0), (0.7, 0.3), (1.0, 0.0)])
def test_against_monai_dice_ce(torch_dtype, lambda_dice, lambda_ce):
    x, labels = _batch(torch_dtype)
    expected = DiceCELoss(softmax=True, to_onehot_y=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)(
        x, labels[:, None]
    )
    loss = lt.CombinedLoss(
        terms={"dice": lt.DiceLoss(from_logits=True, per_class=True, squared=False),
               "ce": {"name": "sparse_categorical_ce", "from_logits": True}},
        weights={"dice": lambda_dice, "ce": lambda_ce},
    )
    rtol = 1e-10 if torch_dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(loss(x, labels).item(), expected.item(), rtol=rtol)


def test_value_is_the_weighted_sum_of_numpy_terms_and_term_values_are_kept():
    x, labels = _batch()
    loss = lossplug.get("combined", framework="torch", terms={
        "dice": {"name": "dice", "from_logits": True, "smooth": 0.5},
        "ce": lt.SparseCategoricalCELoss(from_logits=True),
        "lovasz": {"name": "lovasz", "from_logits": True},
    }, weights={"ce": 0.5, "lovasz": 2.0})
    assert isinstance(loss, lt.CombinedLoss) and loss.weights == {"dice": 1.0, "ce": 0.5, "lovasz": 2.0}
    assert isinstance(loss.terms["dice"], lt.DiceLoss) and loss.terms["dice"].smooth == 0.5
    xr = x.clone().requires_grad_()
    value = loss(xr, labels)
    value.backward()
    xn, yn = x.numpy(), labels.numpy()
    dice = ln.dice(xn, yn, from_logits=True, smooth=0.5, axis=1)
    ce = ln.sparse_categorical_ce(xn, yn, from_logits=True, axis=1)
    lovasz = ln.lovasz(xn, yn, from_logits=True, axis=1)
    np.testing.assert_allclose(value.item(), dice + 0.5 * ce + 2.0 * lovasz, rtol=1e-12)
    assert set(loss.term_values) == {"dice", "ce", "lovasz"}
    for key, expected in (("dice", dice), ("ce", ce), ("lovasz", lovasz)):
        got = loss.term_values[key]
        assert not got.requires_grad
        np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    assert torch.isfinite(xr.grad).all()


def test_module_behaviour():
    terms = {"dice": lt.DiceLoss(), "cce": lt.CategoricalCELoss(class_weights=[1, 2, 3])}
    loss = lt.CombinedLoss(terms=terms)
    assert "class_weights" in {k.split(".")[-1] for k in loss.state_dict()}
    assert "weights={'dice': 1.0, 'cce': 1.0}" in repr(loss)
    assert isinstance(loss.terms, torch.nn.ModuleDict)


@pytest.mark.parametrize("terms,weights,match", [
    ({}, None, "non-empty mapping"),
    ([lt.DiceLoss()], None, "non-empty mapping"),
    ({"dice": lt.DiceLoss()}, {"ce": 1.0}, "unknown term.*'ce'.*the terms are 'dice'"),
    ({"dice": lt.DiceLoss()}, {"dice": -1.0}, r"weights\['dice'\]=-1.0 is invalid"),
    ({"dice": lt.DiceLoss()}, {"dice": "one"}, "must be a number"),
    ({"dice": {"from_logits": True}}, None, "term 'dice' is a mapping without 'name'"),
    ({"dice": {"name": "dice", "smoth": 1.0}}, None, "unknown parameter.*smoth"),
    ({"dice": {"name": "dcie"}}, None, "unknown loss 'dcie'"),
    ({"dice": "dice"}, None, "term 'dice' is str"),
    ({"dice": {"name": "dice", "framework": "keras"}}, None, "framework='keras'"),
])
def test_named_errors(terms, weights, match):
    with pytest.raises(ValueError, match=match):
        lt.CombinedLoss(terms=terms, weights=weights)


def test_get_needs_torch_or_keras():
    with pytest.raises(ValueError, match="framework='numpy'.*'torch' or 'keras'"):
        lossplug.get("combined", framework="numpy", terms={"dice": {"name": "dice"}})
    with pytest.raises(ValueError, match="framework=None"):
        lossplug.get("combined", framework=None, terms={"dice": {"name": "dice"}})


def test_torch_compile_fullgraph_and_bf16_autocast():
    x, labels = _batch(torch.float32)
    loss = lt.CombinedLoss(terms={"dice": {"name": "dice", "from_logits": True},
                                  "tversky": {"name": "tversky", "from_logits": True, "alpha": 0.3},
                                  "ce": {"name": "sparse_categorical_ce", "from_logits": True}},
                           weights={"ce": 0.5})
    eager = loss(x, labels)
    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    np.testing.assert_allclose(compiled(x, labels).item(), eager.item(), rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x.bfloat16(), labels)
    assert torch.isfinite(value) and value.dtype == torch.float32
    np.testing.assert_allclose(value.item(), eager.item(), rtol=3e-2)


# --- the shipped presets ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_app(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    path = tmp_path_factory.mktemp("app_conf")
    (path / "config.yaml").write_text("defaults:\n  - loss: dice_ce\n  - _self_\n")
    with initialize_config_dir(config_dir=str(path), version_base=None):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides))


def test_dice_ce_preset(compose_app):
    from hydra.utils import instantiate

    cfg = compose_app("loss.terms.dice.smooth=0.5", "loss.weights.ce=0.25",
                      "loss.terms.ce.label_smoothing=0.1")
    # every parameter of every term is in the config
    assert set(lossplug._spec.REGISTRY["dice"].defaults) <= set(cfg.loss.terms.dice)
    assert set(lossplug._spec.REGISTRY["sparse_categorical_ce"].defaults) <= set(cfg.loss.terms.ce)
    loss = instantiate(cfg.loss, framework="torch")
    assert isinstance(loss, lt.CombinedLoss) and loss.weights == {"dice": 1.0, "ce": 0.25}
    assert loss.terms["dice"].smooth == 0.5 and loss.terms["dice"].from_logits
    assert loss.terms["ce"].label_smoothing == 0.1 and loss.terms["ce"].from_logits
    x, labels = _batch()
    xn, yn = x.numpy(), labels.numpy()
    expected = ln.dice(xn, yn, from_logits=True, smooth=0.5, axis=1) + 0.25 * ln.sparse_categorical_ce(
        xn, yn, from_logits=True, label_smoothing=0.1, axis=1)
    np.testing.assert_allclose(loss(x, labels).item(), expected, rtol=1e-12)


def test_dice_bce_preset_on_masks(compose_app):
    from hydra.utils import instantiate

    cfg = compose_app("loss=dice_bce", "loss.terms.bce.label_smoothing=0.2")
    loss = instantiate(cfg.loss, framework="torch")
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    y = (torch.rand(3, 1, 4, 4) < 0.5).double()
    expected = ln.dice(x.numpy(), y.numpy(), from_logits=True) + F.binary_cross_entropy_with_logits(
        x, y * 0.8 + 0.1).item()
    np.testing.assert_allclose(loss(x, y).item(), expected, rtol=1e-12)


def test_misspelt_term_parameter_is_named(compose_app):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    cfg = compose_app("+loss.terms.dice.smoth=0.5")
    with pytest.raises((LossParameterError, InstantiationException), match="smoth"):
        instantiate(cfg.loss, framework="torch")


def test_dice_focal_preset(compose_app):
    from hydra.utils import instantiate

    cfg = compose_app("loss=dice_focal", "loss.terms.focal.gamma=1.5", "loss.weights.focal=2.0")
    loss = instantiate(cfg.loss, framework="torch")
    x, labels = _batch(c=3)
    xn, yn = x.numpy(), labels.numpy()
    expected = ln.dice(xn, yn, from_logits=True, axis=1) + 2.0 * ln.categorical_focal(
        xn, yn, from_logits=True, gamma=1.5, axis=1)
    np.testing.assert_allclose(loss(x, labels).item(), expected, rtol=1e-12)
    assert set(loss.term_values) == {"dice", "focal"}


def test_against_monai_dice_focal():
    # MONAI's DiceFocalLoss(softmax=True, to_onehot_y=True): its Dice takes the softmax (per class,
    # plain denominator), its focal term is the sigmoid focal loss of every channel against the
    # one-hot target (FocalLoss(use_softmax=False)): lossplug's binary focal on the one-hot masks
    from monai.losses import DiceFocalLoss

    x, labels = _batch(c=3)
    onehot = F.one_hot(labels, 3).movedim(-1, 1).double()
    expected = DiceFocalLoss(softmax=True, to_onehot_y=True, gamma=1.5, lambda_focal=0.5)(x, labels[:, None])
    loss = lt.CombinedLoss(terms={
        "dice": lt.DiceLoss(from_logits=True, activation="softmax", per_class=True, squared=False),
        "focal": {"name": "focal", "from_logits": True, "gamma": 1.5}}, weights={"focal": 0.5})
    # MONAI's focal term comes back in float32 precision for float64 input (about 1e-8 off)
    np.testing.assert_allclose(loss(x, onehot).item(), expected.item(), rtol=1e-7)
