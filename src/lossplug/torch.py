"""``torch.nn.Module`` losses: ``loss(y_pred, y_true)``, class axis ``dim=1`` (0 for 1-D input).

Hyperparameters are plain attributes (``loss.delta``); ``class_weights`` is a buffer, so it follows
``.to(device)`` and is saved in ``state_dict``. Half-precision inputs are computed in float32, as
torch's own losses do under autocast. On the CPU, large inputs that need a gradient go through
fused kernels compiled by inductor on first use (loss and gradient in one pass, the same values;
``fused_kernels(False)`` or ``LOSSPLUG_FUSED_KERNELS=0`` turns them off).
"""

from __future__ import annotations

import types

from lossplug._optional import missing

try:
    import torch
    from torch import nn
except ImportError as _exc:
    raise missing("lossplug.torch", "torch", "torch", _exc) from _exc

from lossplug.frameworks.adapter import LossAdapter, loss_classes
from lossplug.frameworks.compiled import fused_kernels
from lossplug.frameworks.fast_torch import fast_loss
from lossplug.frameworks.ops import get_backend

__all__ = ["fused_kernels", "LossModule"]

_xp = get_backend("torch")


def _as_tensors(y_pred, y_true):
    if not isinstance(y_pred, torch.Tensor):
        y_pred = torch.as_tensor(y_pred, dtype=torch.get_default_dtype())
    if not isinstance(y_true, torch.Tensor):
        y_true = torch.as_tensor(y_true, device=y_pred.device)
    if y_pred.dtype in (torch.float16, torch.bfloat16):
        y_pred = y_pred.float()
    if (y_true.is_floating_point() or y_true.dtype == torch.bool) and y_true.dtype != y_pred.dtype:
        y_true = y_true.to(y_pred.dtype)
    return y_pred, y_true


class LossModule(LossAdapter, nn.Module):
    """Base of every lossplug torch loss.

    Subclass a concrete loss and override ``terms(y_pred, y_true)`` (the unreduced loss and its
    weights) or, for Dice, ``score(intersection, denominator)``; ``forward`` checks the inputs,
    calls ``terms`` and applies ``reduction``.
    """

    framework = "torch"
    _call = "loss(y_pred, y_true)"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" not in cls.__dict__:
            # a forward of the class's own: torch.compile keeps its cache (and its limit of 8
            # recompilations) per code object, as it does for each torch.nn loss class
            base = LossModule.forward
            code = base.__code__.replace(co_qualname=f"{cls.__qualname__}.forward")
            forward = types.FunctionType(code, base.__globals__, "forward", base.__defaults__)
            forward.__doc__, forward.__qualname__ = base.__doc__, f"{cls.__qualname__}.forward"
            forward.__annotations__ = base.__annotations__
            cls.forward = forward

    def _base_init(self, **params):
        nn.Module.__init__(self)
        self.reduction = self._store_params(params)["reduction"]

    def params(self) -> dict:
        """The current hyperparameters (attributes may be changed after construction)."""
        # LossAdapter.params without nn.Module.__getattr__: this runs on every call
        d, buffers = self.__dict__, self._buffers
        out = {}
        for p in self.spec.params:
            name = p.name
            out[name] = buffers[name] if name in buffers else d[name] if name in d else getattr(self, name)
        return out

    def _store(self, name, value):
        if name == "class_weights":
            weights = None if value is None else torch.tensor(value, dtype=torch.get_default_dtype())
            self.register_buffer("class_weights", weights)
        else:
            setattr(self, name, value)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        y_pred, y_true = _as_tensors(y_pred, y_true)
        if type(self).terms is LossModule.terms:  # a subclass's own terms always run
            fast = fast_loss(self, y_pred, y_true)  # checks the inputs itself
            if fast is not None:
                return fast
        y_true = self._check(_xp, y_pred, y_true)
        loss, weight = self.terms(y_pred, y_true)
        return self._reduce(_xp, loss, weight)

    def terms(self, y_pred: torch.Tensor, y_true: torch.Tensor):
        """The formula before reduction: ``(loss, weight)``, ``weight`` ``None`` for a plain mean."""
        return self._terms(_xp, y_pred, y_true)

    def extra_repr(self) -> str:
        changed = {
            p.name: getattr(self, p.name) for p in self.spec.params
            if p.name not in ("reduction", "class_weights") and getattr(self, p.name) != p.default
        }
        if self.reduction != "mean":
            changed["reduction"] = self.reduction
        return ", ".join(f"{k}={v!r}" for k, v in changed.items())


# One class per registry entry (lossplug._spec.REGISTRY), bound here as module attributes:
# ``lossplug.torch.HuberLoss`` pickles, imports and documents as a hand-written class would.
_CLASSES = loss_classes(LossModule, __name__, _xp)
globals().update(_CLASSES)
__all__ += list(_CLASSES)

from lossplug.frameworks.combined_torch import CombinedLoss  # noqa: E402  (a sum of the classes above)

CombinedLoss.__module__ = __name__
__all__ += ["CombinedLoss"]
