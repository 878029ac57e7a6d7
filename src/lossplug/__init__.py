"""lossplug: nine deep-learning losses written once, the same number in NumPy, PyTorch and Keras.

``import lossplug`` imports no framework; ``lossplug.torch`` and ``lossplug.keras`` import theirs.
"""

from __future__ import annotations

import functools
import importlib

from lossplug._spec import REGISTRY, LossParameterError, spec
from lossplug.core import value_checks

__all__ = ["available", "get", "value_checks", "LossParameterError", "__version__"]
__version__ = "0.1.0"

FRAMEWORKS = ("numpy", "torch", "keras")


def available() -> list[str]:
    """The registry names, in the order of the docs: mse, mae, huber, bce, ... kl_div."""
    return list(REGISTRY)


def get(name: str, framework: str | None = "numpy", **params):
    """Build the loss ``name`` for ``framework`` with ``params``.

    ``"numpy"`` gives a function ``f(y_pred, y_true)``; ``"torch"`` an ``nn.Module``; ``"keras"`` a
    ``keras.losses.Loss``. Unknown names and parameters raise a ``ValueError`` listing valid ones.
    ``framework=None`` (what the shipped Hydra configs carry until ``instantiate(cfg.loss,
    framework=...)`` sets it) raises a ``ValueError`` naming ``framework`` and its values, so a
    config built without one fails here and not later inside a training step.
    """
    if name == "combined":  # lossplug.torch.CombinedLoss / lossplug.keras.CombinedLoss: terms=, weights=
        return _combined(framework, **params)
    loss_spec = spec(name)
    if framework is None:
        raise ValueError(
            f"lossplug.get({name!r}): framework is not set; pass framework='numpy', 'torch' or 'keras' "
            "(from Hydra: hydra.utils.instantiate(cfg.loss, framework='torch'), or loss.framework=torch "
            "on the command line)"
        )
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    loss_spec.validate(params)
    module = importlib.import_module(f"lossplug.{framework}")
    if framework == "numpy":
        return functools.partial(getattr(module, name), **params)
    return getattr(module, loss_spec.class_name)(**params)


def _combined(framework, **params):
    if framework not in ("torch", "keras"):
        raise ValueError(
            f"lossplug.get('combined'): framework={framework!r}; a combined loss is built for 'torch' "
            "or 'keras' (from Hydra: hydra.utils.instantiate(cfg.loss, framework='torch'))"
        )
    return importlib.import_module(f"lossplug.{framework}").CombinedLoss(**params)


def __getattr__(name: str):
    # `lossplug.torch.HuberLoss` without a separate import; the framework loads only then.
    if name in FRAMEWORKS:
        return importlib.import_module(f"lossplug.{name}")
    if name == "port":  # lossplug.port(loss, framework=...): the tools layer, loaded on first use
        return importlib.import_module("lossplug.tools.port").port
    raise AttributeError(f"module 'lossplug' has no attribute {name!r}")
