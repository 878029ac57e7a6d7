"""The recipe options that are off by default: the segnet head's prior bias and the lr warmup.

Checked against numbers worked by hand and against scipy's softmax/expit, in torch and (marked
``keras``, once per backend) in Keras; the defaults are checked to leave every recipe as it was.
"""

from __future__ import annotations

import numpy as np
import pytest
from recipe_configs import compose
from scipy.special import expit, softmax

from recipes.models import builder_kwargs, class_priors, prior_logits, segnet

LABELS = np.array([[0, 0, 0, 0, 0, 0, 1, 2], [0, 0, 0, 0, 0, 0, 2, 2]])  # 12 bg, 1 circle, 3 squares


def test_defaults_leave_the_recipes_unchanged():
    cfg = compose(["task=segmentation_multiclass"])
    assert cfg.model.head_bias is None and cfg.optimizer.warmup_steps == 0
    assert builder_kwargs(cfg.model, LABELS, 3) == {}
    assert compose(["task=multiclass"]).optimizer.warmup_steps == 0
    assert builder_kwargs(compose(["task=multiclass"]).model, LABELS, 3) == {}  # the mlp: no such key


def test_class_priors_and_their_logits():
    assert class_priors(LABELS, 3) == pytest.approx([12 / 16, 1 / 16, 3 / 16])
    assert softmax(prior_logits([0.75, 0.0625, 0.1875])) == pytest.approx([0.75, 0.0625, 0.1875], rel=1e-5)
    mask = (LABELS > 0).astype(np.float32)[..., None]
    assert class_priors(mask, 1) == [0.25]
    assert expit(prior_logits([0.25])) == pytest.approx([0.25], rel=1e-5)
    assert float(prior_logits([0.25])[0]) == pytest.approx(np.log(1 / 3), rel=1e-6)
    cfg = compose(["task=segmentation_multiclass", "model.head_bias=log_prior"])
    assert builder_kwargs(cfg.model, LABELS, 3)["class_priors"] == pytest.approx([0.75, 0.0625, 0.1875])
    with pytest.raises(ValueError, match="head_bias"):
        builder_kwargs(compose(["task=segmentation_multiclass", "model.head_bias=zeros"]).model, LABELS, 3)


def test_torch_segnet_starts_at_the_priors():
    import torch

    priors = [0.75, 0.0625, 0.1875]
    net = segnet(framework="torch", in_shape=(8, 8, 1), n_outputs=3, head_bias="log_prior",
                 class_priors=priors)
    assert softmax(net.head.bias.detach().numpy()) == pytest.approx(priors, rel=1e-5)
    # with zero weights in the head every pixel's softmax is the priors
    with torch.no_grad():
        net.head.weight.zero_()
        p = torch.softmax(net(torch.randn(2, 1, 8, 8)), dim=1)
    assert p[0, :, 3, 5].numpy() == pytest.approx(priors, rel=1e-5)
    with pytest.raises(ValueError, match="class_priors"):
        segnet(framework="torch", in_shape=(8, 8, 1), n_outputs=3, head_bias="log_prior", class_priors=[1.0])


def _lightning_lrs(warmup: int, steps: int) -> list[float] | None:
    import torch

    from recipes.lightning_path import LossplugModule

    module = LossplugModule(torch.nn.Linear(2, 2), torch.nn.MSELoss(), loss_config={}, kind="regression",
                            n_outputs=2, lr=0.01, weight_decay=0.5, warmup_steps=warmup)
    configured = module.configure_optimizers()
    if isinstance(configured, torch.optim.Optimizer):
        return None
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "step"
    assert optimizer.param_groups[0]["weight_decay"] == 0.5
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_lightning_warmup_is_linear_then_constant():
    assert _lightning_lrs(0, 3) is None and _lightning_lrs(1, 3) is None  # the plain AdamW
    # update t (from 0) uses lr * min(1, (t + 1) / 4)
    assert _lightning_lrs(4, 7) == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01, 0.01])


@pytest.mark.keras
def test_keras_warmup_matches_the_lightning_one():
    from omegaconf import OmegaConf

    from recipes.keras_path import learning_rate

    assert learning_rate(OmegaConf.create({"lr": 0.01, "weight_decay": 0.0, "warmup_steps": 0})) == 0.01
    schedule = learning_rate(OmegaConf.create({"lr": 0.01, "warmup_steps": 4}))
    keras_lrs = [float(schedule(t)) for t in range(7)]
    assert keras_lrs == pytest.approx(_lightning_lrs(4, 7), rel=1e-6)


@pytest.mark.keras
def test_keras_segnet_starts_at_the_priors():
    import keras

    priors = [0.75, 0.0625, 0.1875]
    model = segnet(framework="keras", in_shape=(8, 8, 1), n_outputs=3, head_bias="log_prior",
                   class_priors=priors)
    kernel, bias = model.layers[-1].get_weights()
    assert softmax(bias) == pytest.approx(priors, rel=1e-5)
    model.layers[-1].set_weights([np.zeros_like(kernel), bias])
    p = keras.ops.convert_to_numpy(keras.ops.softmax(model(np.random.default_rng(0).normal(
        size=(2, 8, 8, 1)).astype("float32")), axis=-1))
    assert p[1, 4, 2] == pytest.approx(priors, rel=1e-5)
    plain = segnet(framework="keras", in_shape=(8, 8, 1), n_outputs=3)
    assert not plain.layers[-1].get_weights()[1].any()  # Keras's zero bias stays the default


def test_torch_segnet_norm_batch():
    import torch

    plain = segnet(framework="torch", in_shape=(8, 8, 1), n_outputs=3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    net = segnet(framework="torch", in_shape=(8, 8, 1), n_outputs=3, norm="batch")
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 10  # two per block: 2 down, the bottom, 2 up
    first = net.down[0]
    assert [type(m).__name__ for m in first] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2
    x = torch.randn(4, 1, 8, 8)
    net.train()
    assert net(x).shape == (4, 3, 8, 8)
    # in training mode the first norm's output is standardised per channel (batch statistics)
    h = first[1](first[0](x)).detach()
    assert h.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert h.var(dim=(0, 2, 3), unbiased=False).numpy() == pytest.approx(np.ones(16), rel=1e-3)
    assert float(first[1].running_mean.abs().sum()) > 0  # the running statistics moved
    net.eval()
    assert net(x).shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="norm"):
        segnet(framework="torch", in_shape=(8, 8, 1), n_outputs=3, norm="layer")
    cfg = compose(["task=segmentation_multiclass"])
    assert cfg.model.norm is None


@pytest.mark.keras
def test_keras_segnet_norm_batch():
    import keras

    plain = segnet(framework="keras", in_shape=(8, 8, 1), n_outputs=3)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    model = segnet(framework="keras", in_shape=(8, 8, 1), n_outputs=3, norm="batch")
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 10
    assert norms[0].momentum == 0.9 and norms[0].epsilon == 1e-5
    names = [type(layer).__name__ for layer in model.layers[1:7]]
    assert names == ["Conv2D", "BatchNormalization", "Activation"] * 2
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    assert tuple(model(x, training=True).shape) == (4, 8, 8, 3)
    # training mode: the first norm's output is standardised per channel over the batch
    h = keras.ops.convert_to_numpy(norms[0](model.layers[1](x), training=True))
    assert np.abs(h.mean(axis=(0, 1, 2))).max() < 1e-4
    assert h.var(axis=(0, 1, 2)) == pytest.approx(np.ones(16), rel=1e-3)
    assert tuple(model(x, training=False).shape) == (4, 8, 8, 3)
