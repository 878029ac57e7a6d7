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

from lossplug._spec import LossParameterError
from lossplug.core import formula_params
from lossplug.frameworks.adapter import LossAdapter, loss_classes
from lossplug.frameworks.fast_keras import ROUTES
from lossplug.frameworks.ops import get_backend

__all__ = ["LossClass"]

_xp = get_backend("keras")
_register = keras.saving.register_keras_serializable(package="lossplug")


def _tensor(x, dtype):
    x = keras.ops.convert_to_tensor(x, dtype=dtype)
    # a tf.Variable comes back unchanged, and keras.ops.take_along_axis needs a tensor's .ndim
    return x if hasattr(x, "ndim") else keras.ops.copy(x)


class LossClass(LossAdapter, keras.losses.Loss):
    """Base of every lossplug Keras loss.

    Subclass a concrete loss and override ``terms(y_true, y_pred)`` (the unreduced loss and its
    weights) or, for Dice, ``score(intersection, denominator)``; ``call`` checks the inputs,
    calls ``terms`` and returns per-sample values whose Keras reduction is the formula.
    """

    framework = "keras"
    _call = "loss(y_true, y_pred, sample_weight=None)"
    _extra_init = tuple(
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in ("name", "dtype")
    )

    def _base_init(self, *, name=None, dtype=None, **params):
        validated = self.spec.validate(params)
        if validated.get("sync_dist"):
            raise LossParameterError(
                f"{self.spec.class_name}: sync_dist is for torch.distributed; under tf.distribute "
                "the Keras losses already sum Dice's batch sums and class-weight totals across replicas"
            )
        keras.losses.Loss.__init__(self, name=name, reduction=validated["reduction"], dtype=dtype)
        self._store_params(params)

    def call(self, y_true, y_pred):
        # Loss.__call__ turns a Python list into a list of scalar tensors; stack it back.
        y_true, y_pred = _tensor(y_true, self.dtype), _tensor(y_pred, self.dtype)
        y_true, y_pred = self._match_rank(y_true, y_pred)
        y_true = self._check(_xp, y_pred, y_true)
        loss, weight = self.terms(y_true, y_pred)
        return self._reduce(_xp, loss, weight)

    def terms(self, y_true, y_pred):
        """The formula before reduction: ``(loss, weight)``, ``weight`` ``None`` for a plain mean.

        Some losses take a Keras route (``lossplug.frameworks.fast_keras``): the same terms, written the way
        XLA compiles faster.
        """
        route = ROUTES.get(self.spec.name)
        if route is not None:
            params = formula_params(self.spec, _xp, y_pred, self.params(), self.framework)
            out = route(_xp, y_pred, y_true, **params)
            if out is not None:
                return out
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
