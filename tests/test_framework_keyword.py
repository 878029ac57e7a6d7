"""``framework``: required from Hydra, accepted (and checked) by every lossplug class.

``hydra.utils.instantiate(cfg.loss)`` without a framework must fail at once, naming ``framework``
and its values, not hand back a NumPy function that fails inside a training step; and the one
call ``instantiate(cfg.loss, framework="torch")`` must build a user's subclass selected by
``_target_`` as it builds ours (tests/test_hydra_external_app.py runs both from an installed wheel).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import lossplug
from lossplug._spec import REGISTRY

NAMES = list(REGISTRY)


def test_get_without_framework_names_framework_and_its_values():
    with pytest.raises(ValueError) as info:
        lossplug.get("huber", framework=None)
    message = str(info.value)
    assert "framework is not set" in message and "'numpy', 'torch' or 'keras'" in message


def test_get_still_defaults_to_numpy_when_called_directly():
    fn = lossplug.get("mse")
    assert fn(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == pytest.approx(5.0)


@pytest.mark.parametrize("name", NAMES)
def test_hydra_instantiate_without_framework_fails_at_once(tmp_path, name):
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    (tmp_path / "config.yaml").write_text(f"defaults:\n  - loss: {name}\n  - _self_\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = compose(config_name="config")
        assert cfg.loss.framework is None
        with pytest.raises(InstantiationException) as info:
            instantiate(cfg.loss)
        assert isinstance(info.value.__cause__, ValueError)
        assert "framework is not set" in str(info.value.__cause__)
        # and with it, the loss (framework from the loss node itself, as on the command line)
        cfg = compose(config_name="config", overrides=["loss.framework=numpy"])
        assert instantiate(cfg.loss).func is getattr(lossplug.numpy, name)


# --- torch ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_torch_classes_take_their_own_framework(name):
    pytest.importorskip("torch")
    import lossplug.torch as lt

    cls = getattr(lt, REGISTRY[name].class_name)
    assert cls(framework="torch").params() == cls().params()
    assert "framework" not in inspect.signature(cls).parameters  # plumbing: not in the docs
    with pytest.raises(ValueError) as info:
        cls(framework="keras")
    message = str(info.value)
    assert f"lossplug.torch.{cls.__name__} is a torch loss" in message and "framework='keras'" in message


def test_torch_unknown_framework_lists_the_values():
    pytest.importorskip("torch")
    from lossplug.torch import HuberLoss

    with pytest.raises(ValueError, match="unknown framework='jax'; it takes 'numpy', 'torch' or 'keras'"):
        HuberLoss(framework="jax")


def test_torch_subclass_passes_framework_through_super_init():
    torch = pytest.importorskip("torch")
    from lossplug.torch import BCELoss

    class FocalBCELoss(BCELoss):
        def __init__(self, *, gamma: float = 2.0, **params):
            super().__init__(**params)
            self.gamma = gamma

        def terms(self, y_pred, y_true):
            loss, weight = super().terms(y_pred, y_true)
            return (1 - torch.exp(-loss)) ** self.gamma * loss, weight

    loss = FocalBCELoss(gamma=0.0, from_logits=True, framework="torch")
    x = torch.tensor([[-1.0, 2.0], [0.5, -3.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss(x, y), torch.nn.BCEWithLogitsLoss()(x, y))  # gamma 0: plain BCE
    with pytest.raises(ValueError, match=r"FocalBCELoss is a torch loss but framework='numpy'"):
        FocalBCELoss(framework="numpy")


# --- keras ----------------------------------------------------------------------------------------


@pytest.mark.keras
def test_keras_classes_take_their_own_framework():
    pytest.importorskip("keras")
    import keras

    import lossplug.keras as lk

    loss = lk.HuberLoss(delta=0.5, framework="keras")
    assert "framework" not in loss.get_config()  # it is not a hyperparameter: nothing to save
    y_true, y_pred = np.array([[0.0, 1.0]]), np.array([[0.3, -0.4]])
    expected = keras.losses.Huber(delta=0.5)(y_true, y_pred)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(y_true, y_pred)),
                               keras.ops.convert_to_numpy(expected), rtol=1e-6)
    with pytest.raises(ValueError, match=r"lossplug\.keras\.HuberLoss is a keras loss but framework='torch'"):
        lk.HuberLoss(framework="torch")
