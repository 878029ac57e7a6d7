"""``lossplug.torch.CombinedLoss``: a weighted sum of torch losses that keeps each term's value."""

from __future__ import annotations

import torch
from torch import nn

from lossplug.frameworks import combined


class CombinedLoss(nn.Module):
    r"""A weighted sum of losses, :math:`\sum_k w_k L_k(\hat y, y)` (registry name ``combined``).

    Args:
        terms: a mapping of names to ``nn.Module`` losses, or to a registry name with its
            parameters (``{"name": "dice", "from_logits": True}``), as the Hydra presets write them.
        weights: a mapping of term names to numbers >= 0; a term not named has weight 1.
        preset: the name of the shipped preset it was built from (``loss=dice_ce``), or ``None``.

    ``term_values`` holds each term's own (unweighted) value of the last call, detached, ready
    for ``LightningModule.log_dict({f"train/{k}": v for k, v in loss.term_values.items()})``.

    Example::

        loss = CombinedLoss(terms={"dice": DiceLoss(from_logits=True),
                                   "ce": SparseCategoricalCELoss(from_logits=True)},
                            weights={"dice": 1.0, "ce": 0.5})
    """

    def __init__(self, *, terms, weights=None, preset: str | None = None, framework: str | None = None):
        super().__init__()
        if framework not in (None, "torch"):
            raise ValueError(f"lossplug.torch.CombinedLoss got framework={framework!r}; it is the torch one")
        built, weights = combined.check(terms, weights, "torch", nn.Module)
        self.terms = nn.ModuleDict(built)
        self.weights = weights
        self.preset = preset
        self.term_values: dict[str, torch.Tensor] = {}

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        values = {key: term(y_pred, y_true) for key, term in self.terms.items()}
        self.term_values = {key: value.detach() for key, value in values.items()}
        total = None
        for key, value in values.items():
            part = value if self.weights[key] == 1.0 else self.weights[key] * value
            total = part if total is None else total + part
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}" + (f", preset={self.preset!r}" if self.preset else "")
