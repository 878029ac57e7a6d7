"""A weighted sum of lossplug losses, built from config (e.g. Dice + cross-entropy).

``configs/loss/dice_ce.yaml`` composes two entries of the shipped ``loss`` group under ``terms``;
``hydra.utils.instantiate(cfg.loss, framework=...)`` calls :func:`combined`, which builds every
term for that framework and returns one loss of the framework's own kind.
"""

from __future__ import annotations

from collections.abc import Mapping


def combined(*, name: str, terms: Mapping, weights: Mapping | None = None, framework: str = "torch"):
    """Sum of ``weights[k] * terms[k]``; each term is a lossplug config (``_target_: lossplug.get``)."""
    from hydra.utils import instantiate

    weights = dict(weights or {})
    unknown = set(weights) - set(terms)
    if unknown:
        raise ValueError(f"weights for unknown terms {sorted(unknown)}; terms are {sorted(terms)}")
    built = {key: instantiate(term, framework=framework) for key, term in terms.items()}
    factors = {key: float(weights.get(key, 1.0)) for key in terms}
    if framework == "torch":
        return _torch_sum_class()(built, factors)
    if framework == "keras":
        return _keras_sum_class()(built, factors, name=name)
    raise ValueError(f"combined losses are built for torch or keras, not {framework!r}")


def _torch_sum_class():
    from torch import nn

    class WeightedSum(nn.Module):
        """``sum_k w_k * loss_k(y_pred, y_true)``; the terms are submodules."""

        def __init__(self, terms, weights):
            super().__init__()
            self.terms = nn.ModuleDict(terms)
            self.weights = dict(weights)

        def forward(self, y_pred, y_true):
            return sum(self.weights[k] * term(y_pred, y_true) for k, term in self.terms.items())

    return WeightedSum


_KERAS_CLASS = None


def _keras_sum_class():
    global _KERAS_CLASS
    if _KERAS_CLASS is not None:
        return _KERAS_CLASS
    import keras

    @keras.saving.register_keras_serializable(package="recipes")
    class WeightedSum(keras.losses.Loss):
        """``sum_k w_k * loss_k(y_true, y_pred)``; saves its terms with the model."""

        def __init__(self, terms, weights, name="weighted_sum", **kwargs):
            super().__init__(name=name, **kwargs)
            self.terms = {k: keras.losses.get(t) if isinstance(t, dict) else t for k, t in terms.items()}
            self.weights = dict(weights)

        def call(self, y_true, y_pred):
            # Each term reduces with its own rule; the outer reduction of a scalar is the scalar.
            return sum(self.weights[k] * term(y_true, y_pred) for k, term in self.terms.items())

        def get_config(self):
            return {"name": self.name, "weights": self.weights,
                    "terms": {k: keras.saving.serialize_keras_object(t) for k, t in self.terms.items()}}

        @classmethod
        def from_config(cls, config):
            terms = {k: keras.saving.deserialize_keras_object(t) for k, t in config["terms"].items()}
            return cls(terms, config["weights"], name=config["name"])

    _KERAS_CLASS = WeightedSum
    return WeightedSum
