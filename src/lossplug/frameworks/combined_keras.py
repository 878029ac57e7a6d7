"""``lossplug.keras.CombinedLoss``: a weighted sum of Keras losses, and a metric per term.

A Keras ``Loss`` cannot add entries to ``History`` by itself: ``Model.metrics`` collects the
compiled metrics, the loss tracker and the metrics of layers, and under ``jit_compile`` (JAX in
particular) only their variables carry state out of a training step. So each term's value is
logged by a metric of its own, ``CombinedLoss.term_metrics()``, passed to ``compile``; it computes
its term from ``(y_true, y_pred)`` inside the same compiled step (XLA shares the work with the
loss where it can) and averages it over the epoch as Keras averages the loss. Both are registered
under ``lossplug>``, so a saved model loads without ``custom_objects``.
"""

from __future__ import annotations

import keras

from lossplug.frameworks import combined

_register = keras.saving.register_keras_serializable(package="lossplug")


def _deserialize(term):
    if isinstance(term, dict) and "class_name" in term:  # a serialised Keras object (from get_config)
        return keras.saving.deserialize_keras_object(term)
    return term


@_register
class CombinedLoss(keras.losses.Loss):
    r"""A weighted sum of losses, :math:`\sum_k w_k L_k(y, \hat y)` (registry name ``combined``).

    Args:
        terms: a mapping of names to ``keras.losses.Loss`` objects, or to a registry name with its
            parameters (``{"name": "dice", "from_logits": True}``), as the Hydra presets write them.
        weights: a mapping of term names to numbers >= 0; a term not named has weight 1.
        preset: the name of the shipped preset it was built from (``loss=dice_ce``), or ``None``;
            the loss's ``name`` unless one is given.

    Each term reduces its own value (masks and ``sample_weight`` pass through to every term);
    log them with ``model.compile(loss=loss, metrics=loss.term_metrics())``: History and
    ``CSVLogger`` then hold ``<term>_loss`` (and ``val_<term>_loss``) for every term.
    """

    def __init__(self, *, terms, weights=None, preset=None, name=None, dtype=None, framework=None):
        if framework not in (None, "keras"):
            raise ValueError(f"lossplug.keras.CombinedLoss got framework={framework!r}; it is the Keras one")
        super().__init__(name=name or preset or "combined", dtype=dtype)
        self.preset = preset
        terms = {k: _deserialize(t) for k, t in combined._plain(terms).items()} if terms else terms
        self.terms, self.weights = combined.check(terms, weights, "keras", keras.losses.Loss)

    def __call__(self, y_true, y_pred, sample_weight=None):
        total = None
        for key, term in self.terms.items():
            value = term(y_true, y_pred, sample_weight=sample_weight)
            part = value if self.weights[key] == 1.0 else self.weights[key] * value
            total = part if total is None else total + part
        return total

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def term_metrics(self) -> list[keras.metrics.Metric]:
        """One metric per term, named ``<term>_loss``: each term's unweighted value, for ``compile``."""
        return [TermMean(term, name=f"{key}_loss") for key, term in self.terms.items()]

    def get_config(self) -> dict:
        config = {
            "name": self.name,
            "terms": {k: keras.saving.serialize_keras_object(t) for k, t in self.terms.items()},
            "weights": dict(self.weights),
            "preset": self.preset,
        }
        if self.dtype != keras.backend.floatx():
            config["dtype"] = self.dtype
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class TermMean(keras.metrics.Mean):
    """The mean over an epoch of one loss term's value (weighted by batch size, as Keras's loss)."""

    def __init__(self, loss, name=None, dtype=None):
        loss = _deserialize(loss)
        super().__init__(name=name or f"{loss.name}_loss", dtype=dtype)
        self.loss = loss

    def update_state(self, y_true, y_pred, sample_weight=None):
        value = self.loss(y_true, y_pred, sample_weight=sample_weight)
        return super().update_state(value, sample_weight=keras.ops.shape(y_pred)[0])

    def get_config(self) -> dict:
        loss = keras.saving.serialize_keras_object(self.loss)
        return {"name": self.name, "dtype": self.dtype, "loss": loss}
