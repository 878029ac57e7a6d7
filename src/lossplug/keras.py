"""``keras.losses.Loss`` classes: ``loss(y_true, y_pred)``, class axis last, any Keras backend.

Each class is registered as ``lossplug>ClassName`` and ``get_config`` lists every
hyperparameter, so a compiled model saves and loads without ``custom_objects``.
"""

from __future__ import annotations

import inspect

from lossplug._optional import keras_import_error

try:
    import keras
except ImportError as _exc:
    raise keras_import_error(_exc) from _exc

from lossplug import core as _core
from lossplug._spec import REDUCTIONS, LossParameterError
from lossplug.frameworks.adapter import LossAdapter, loss_classes
from lossplug.frameworks.ops import get_backend

try:  # the mask a Keras layer attaches to its output (Masking, Embedding(mask_zero=True), ...)
    from keras.src.backend import get_keras_mask as _keras_mask
except ImportError:  # pragma: no cover - a Keras without it keeps masks as an attribute
    def _keras_mask(x):
        return getattr(x, "_keras_mask", None)

__all__ = ["LossClass"]

_xp = get_backend("keras")
_register = keras.saving.register_keras_serializable(package="lossplug")


def _tensor(x, dtype):
    x = keras.ops.convert_to_tensor(x, dtype=dtype)
    # a tf.Variable comes back unchanged, and keras.ops.take_along_axis needs a tensor's .ndim
    return x if hasattr(x, "ndim") else keras.ops.copy(x)


_KERAS_REDUCTIONS = ("sum_over_batch_size", None, "mean_with_sample_weight")
"""Keras 3's reduction names, taken beside lossplug's (``"sum_over_batch_size"`` is ``"mean"``,
``None`` is ``"none"``); ``"mean_with_sample_weight"`` divides by the sum of the sample weights."""


class LossClass(LossAdapter, keras.losses.Loss):
    """Base of every lossplug Keras loss.

    Subclass a concrete loss and override ``terms(y_true, y_pred)`` (the unreduced loss and its
    weights) or, for Dice, ``score(intersection, denominator)``. ``loss(y_true, y_pred,
    sample_weight)`` checks the inputs, calls ``terms`` and reduces the values (per position for
    the class losses) with the sample weights and the Keras mask of ``y_pred``, as Keras's
    built-in losses do (``lossplug.core.keras_reduce``); ``call`` returns the unreduced values.
    """

    framework = "keras"
    _call = "loss(y_true, y_pred, sample_weight=None)"
    _extra_init = tuple(
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in ("name", "dtype")
    )

    def _base_init(self, *, name=None, dtype=None, **params):
        reduction = self._checked_param(self._params_by_name["reduction"], params.get("reduction", "mean"))
        if reduction in _KERAS_REDUCTIONS:  # Keras's names, kept as given (get_config round-trips)
            params = {**params, "reduction": "mean"}
        validated = self.spec.validate(params)
        if validated.get("sync_dist"):
            raise LossParameterError(
                f"{self.spec.class_name}: sync_dist is for torch.distributed; under tf.distribute "
                "the Keras losses already sum Dice's batch sums and class-weight totals across replicas"
            )
        keras.losses.Loss.__init__(self, name=name, reduction=reduction, dtype=dtype)
        self._store_params(params)

    def _checked_param(self, param, value):
        if param.name != "reduction":
            return super()._checked_param(param, value)
        if value in REDUCTIONS or value in _KERAS_REDUCTIONS:
            return value
        names = ", ".join(repr(r) for r in REDUCTIONS + _KERAS_REDUCTIONS)
        raise LossParameterError(
            f"{self.spec.class_name}: reduction={value!r} is invalid; it must be one of {names}"
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        mask = _keras_mask(y_pred)
        with keras.name_scope(self.name):
            loss, weight = self._values(y_true, y_pred)
            if sample_weight is not None:
                sample_weight = _tensor(sample_weight, self.dtype)
            return _core.keras_reduce(
                self.spec, _xp, loss, weight, self.reduction, sample_weight, mask,
                numerics=getattr(self, "numerics", "lossplug"),
            )

    def call(self, y_true, y_pred):
        """The unreduced values (``reduction="none"`` without sample weights or mask)."""
        loss, weight = self._values(y_true, y_pred)
        return _core.keras_reduce(self.spec, _xp, loss, weight, "none")

    def _values(self, y_true, y_pred):
        """Checked inputs through ``terms``: ``(loss, weight)``, NaN for bad input in a graph."""
        y_true, y_pred = self._inputs(y_true, y_pred)
        y_true = self._check(_xp, y_pred, y_true)
        params = self.params()
        axis = _core.class_axis(self.spec, params, len(y_pred.shape), "keras")
        # in a graph (no value checks): labels out of range replaced for the formula, the loss NaN
        formula_input, taken = y_pred, False
        if type(self).terms is LossClass.terms:  # (a subclass's own formula: judged after it)
            formula_input, taken = _core.poison_inputs(self.spec, _xp, y_pred, y_true, params)
        labels = _core.safe_labels(self.spec, _xp, y_pred, y_true, params, axis)
        loss, weight = self.terms(labels, formula_input)
        return _core.poison(self.spec, _xp, y_pred, y_true, params, axis, loss, taken), weight

    def _inputs(self, y_true, y_pred):
        # y_pred in the loss's dtype (float32 under the mixed policies); targets shaped like y_pred
        # too, while integer labels stay integers (a label above 256 survives dtype="bfloat16")
        y_pred, y_true = _tensor(y_pred, self.dtype), _tensor(y_true, None)
        dtype = keras.backend.standardize_dtype(y_true.dtype)
        labels = self.spec.targets == "labels" or (
            self.spec.targets == "same_or_labels" and len(y_true.shape) != len(y_pred.shape)
        )
        if not labels:
            y_true = keras.ops.cast(y_true, self.dtype)
        elif dtype == "bool":
            y_true = keras.ops.cast(y_true, "int32")
        elif "float" in dtype and dtype != "float64":
            y_true = keras.ops.cast(y_true, "float32")  # checked to be integral, then cast
        return self._match_rank(y_true, y_pred)

    def terms(self, y_true, y_pred):
        """The formula before reduction: ``(loss, weight)``, ``weight`` ``None`` for a plain mean."""
        return self._terms(_xp, y_pred, y_true)

    def _match_rank(self, y_true, y_pred):
        # Keras's habit for elementwise losses: (N,) targets against (N, 1) outputs.
        if self.spec.kind == "elementwise":
            t, p = len(y_true.shape), len(y_pred.shape)
            if t == p + 1 and y_true.shape[-1] == 1:
                y_true = keras.ops.squeeze(y_true, -1)
            elif p == t + 1 and y_pred.shape[-1] == 1:
                y_pred = keras.ops.squeeze(y_pred, -1)
        return y_true, y_pred

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self.params())
        for key, value in config.items():  # class_weights, per-class alpha: JSON lists
            if isinstance(value, tuple):
                config[key] = list(value)
        if self.dtype != keras.backend.floatx():
            config["dtype"] = self.dtype
        return config


# One class per registry entry (lossplug._spec.REGISTRY), bound here as module attributes:
# ``lossplug.keras.HuberLoss`` pickles, imports and documents as a hand-written class would.
_CLASSES = loss_classes(LossClass, __name__, _xp, decorate=_register)
globals().update(_CLASSES)
__all__ += list(_CLASSES)

from lossplug.frameworks.combined_keras import CombinedLoss, TermMean  # noqa: E402

__all__ += ["CombinedLoss", "TermMean"]
