"""The registry: every loss's name, class name, formula, parameters, defaults and checks.

This is the one place that knows what a loss accepts. The NumPy functions, the torch modules,
the Keras classes, the Hydra YAML files and the command line all read it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lossplug.formulas import classification, divergence, regression, segmentation

REDUCTIONS = ("mean", "sum", "none")


class LossParameterError(ValueError, TypeError):
    """A bad or unknown loss parameter (a ``ValueError``; also a ``TypeError`` for unknown names)."""


# --- value checks: each returns None when the value is fine, or what it must be -----------------


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _positive(v):
    return None if _is_number(v) and v > 0 else "a number > 0"


def _non_negative(v):
    return None if _is_number(v) and v >= 0 else "a number >= 0"


def _unit_interval(v):
    return None if _is_number(v) and 0 <= v <= 1 else "a number in [0, 1]"


def _eps(v):
    return None if _is_number(v) and 0 < v < 0.5 else "a number in (0, 0.5)"


def _bool(v):
    return None if isinstance(v, bool) or type(v).__name__ == "bool_" else "True or False"


def _optional_int(v):
    if v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool)):
        return None
    return "an integer or None"


def _one_of(*choices):
    def check(v):
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def _class_weights(v):
    if v is None:
        return None
    try:
        values = [float(x) for x in v]
    except (TypeError, ValueError):
        return "None or a 1-D sequence of numbers >= 0"
    if not values or any(not (x >= 0) for x in values) or not any(x > 0 for x in values):
        return "None or a non-empty 1-D sequence of numbers >= 0, not all 0"
    return None


def _as_float(v):
    return float(v)


def _as_bool(v):
    return bool(v)


def _as_weights(v):
    if v is None:
        return None
    if hasattr(v, "tolist"):  # numpy arrays, tensors, OmegaConf ListConfig all end up as floats
        v = v.tolist()
    return tuple(float(x) for x in v)


def _identity(v):
    return v


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its name, default, check, normaliser and a line of documentation."""

    name: str
    default: Any
    check: Callable[[Any], str | None]
    doc: str
    convert: Callable[[Any], Any] = _identity


REDUCTION = Param(
    "reduction", "mean", _one_of(*REDUCTIONS),
    '"mean" (the formula), "sum", or "none" (see the reduction table in the docs)',
)
FROM_LOGITS = Param(
    "from_logits", False, _bool,
    "y_pred holds logits; lossplug then works in log space (log-sigmoid, log-softmax)", _as_bool,
)
EPS = Param("eps", 1e-7, _eps, "probabilities are clipped to [eps, 1 - eps]", _as_float)
DELTA = Param("delta", 1.0, _positive, "where the loss turns from quadratic to linear", _as_float)
POS_WEIGHT = Param("pos_weight", 1.0, _non_negative, "weight w+ of the positive term", _as_float)
NEG_WEIGHT = Param("neg_weight", 1.0, _non_negative, "weight w- of the negative term", _as_float)
LABEL_SMOOTHING = Param(
    "label_smoothing", 0.0, _unit_interval,
    "targets become y(1 - ls) + ls/K (K = 2 for binary, C classes otherwise)", _as_float,
)
CLASS_WEIGHTS = Param(
    "class_weights", None, _class_weights, "one weight per class (a torch buffer)", _as_weights
)
IGNORE_INDEX = Param(
    "ignore_index", None, _optional_int, "targets with this label count neither in the loss nor in the mean"
)
AXIS = Param(
    "axis", None, _optional_int,
    "class axis; None means the framework's habit (torch: 1, or 0 for 1-D input; Keras and NumPy: -1)",
)
SMOOTH = Param("smooth", 1e-5, _non_negative, "s, added to numerator and denominator", _as_float)
SQUARED = Param(
    "squared", True, _bool, "denominator sum(y_pred^2) + sum(y^2); False gives sum(y_pred) + sum(y)",
    _as_bool,
)
AGGREGATION = Param(
    "aggregation", "sample", _one_of("sample", "batch"),
    '"sample": one Dice per sample, then the mean; "batch": one Dice from sums over the whole batch',
)
PER_CLASS = Param(
    "per_class", False, _bool,
    "one Dice per class (sums over spatial axes only), averaged with class_weights", _as_bool,
)
INCLUDE_BACKGROUND = Param(
    "include_background", True, _bool, "False drops class 0 from the sums", _as_bool
)
ACTIVATION = Param(
    "activation", "auto", _one_of("auto", "softmax", "sigmoid"),
    'with from_logits: "auto" is softmax for integer label maps with C > 1, sigmoid otherwise',
)
SYNC_DIST = Param(
    "sync_dist", False, _bool,
    'torch only, with aggregation="batch": all-reduce the Dice sums across processes (keeps gradients)',
    _as_bool,
)
LOG_INPUT = Param(
    "log_input", False, _bool, "y_pred holds log-probabilities log q", _as_bool
)


@dataclass(frozen=True)
class LossSpec:
    """What the registry knows about one loss."""

    name: str
    class_name: str
    formula: Callable
    params: tuple[Param, ...]
    kind: str  # "elementwise" | "positions" (class losses, KL) | "sample" (Dice)
    targets: str  # "same" | "labels" | "same_or_labels": what y_true may look like
    math: str  # LaTeX of the mean-reduction formula
    summary: str

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    @property
    def has_class_axis(self) -> bool:
        return any(p.name == "axis" for p in self.params)

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Fill in defaults, reject unknown names and bad values; return the normalised params."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise LossParameterError(
                f"{self.class_name} ({self.name!r}) got unknown parameter(s) {', '.join(unknown)}; "
                f"its parameters are: {', '.join(known)}"
            )
        out = {}
        for p in self.params:
            value = params.get(p.name, p.default)
            problem = p.check(value)
            if problem is not None:
                raise LossParameterError(
                    f"{self.class_name}: {p.name}={value!r} is invalid; it must be {problem}"
                )
            out[p.name] = p.convert(value)
        _check_combinations(self, out)
        return out


def _check_combinations(spec: LossSpec, params: dict[str, Any]) -> None:
    if params.get("from_logits") and params.get("log_input"):
        raise LossParameterError(
            f"{spec.class_name}: from_logits=True and log_input=True exclude each other"
        )
    if params.get("class_weights") is not None and spec.name == "dice" and not params["per_class"]:
        raise LossParameterError(f"{spec.class_name}: class_weights needs per_class=True")
    if params.get("sync_dist") and params.get("aggregation") != "batch":
        raise LossParameterError(f'{spec.class_name}: sync_dist=True needs aggregation="batch"')


_CLASS_PARAMS = (FROM_LOGITS, LABEL_SMOOTHING, CLASS_WEIGHTS, IGNORE_INDEX, AXIS, EPS, REDUCTION)

_SPECS = (
    LossSpec(
        "mse", "MSELoss", regression.mse, (REDUCTION,), "elementwise", "same",
        r"\operatorname{mean}\big((\hat y - y)^2\big)",
        "Mean squared error.",
    ),
    LossSpec(
        "mae", "MAELoss", regression.mae, (REDUCTION,), "elementwise", "same",
        r"\operatorname{mean}\big(|\hat y - y|\big)",
        "Mean absolute error (L1).",
    ),
    LossSpec(
        "huber", "HuberLoss", regression.huber, (DELTA, REDUCTION), "elementwise", "same",
        r"\operatorname{mean}\big(\tfrac12 q^2 + \delta(|e| - q)\big),\ e = \hat y - y,\ "
        r"q = \min(|e|, \delta)",
        "Huber loss: quadratic for |error| <= delta, linear beyond.",
    ),
    LossSpec(
        "bce", "BCELoss", classification.bce, (FROM_LOGITS, LABEL_SMOOTHING, EPS, REDUCTION),
        "elementwise", "same",
        r"\operatorname{mean}\big(-[y\log p + (1 - y)\log(1 - p)]\big)",
        "Binary cross-entropy on probabilities or logits.",
    ),
    LossSpec(
        "weighted_bce", "WeightedBCELoss", classification.weighted_bce,
        (POS_WEIGHT, NEG_WEIGHT, FROM_LOGITS, LABEL_SMOOTHING, EPS, REDUCTION),
        "elementwise", "same",
        r"\operatorname{mean}\big(-[w_+\,y\log p + w_-\,(1 - y)\log(1 - p)]\big)",
        "Binary cross-entropy with a weight on the positive and on the negative term.",
    ),
    LossSpec(
        "categorical_ce", "CategoricalCELoss", classification.categorical_ce, _CLASS_PARAMS,
        "positions", "same",
        r"\operatorname{mean}_i\Big(-\sum_c y_{ic}\log p_{ic}\Big)",
        "Cross-entropy against one-hot or soft targets.",
    ),
    LossSpec(
        "sparse_categorical_ce", "SparseCategoricalCELoss", classification.sparse_categorical_ce,
        _CLASS_PARAMS, "positions", "labels",
        r"\operatorname{mean}_i\big(-\log p_{i,\,y_i}\big)",
        "Cross-entropy against integer class labels.",
    ),
    LossSpec(
        "dice", "DiceLoss", segmentation.dice,
        (FROM_LOGITS, SMOOTH, SQUARED, AGGREGATION, PER_CLASS, CLASS_WEIGHTS, INCLUDE_BACKGROUND,
         ACTIVATION, IGNORE_INDEX, AXIS, SYNC_DIST, REDUCTION),
        "sample", "same_or_labels",
        r"\operatorname{mean}_i\Big(1 - \frac{2\sum \hat y_i y_i + s}"
        r"{\sum \hat y_i^2 + \sum y_i^2 + s}\Big)",
        "Dice loss; sums run over every non-batch axis.",
    ),
    LossSpec(
        "kl_div", "KLDivLoss", divergence.kl_div, (FROM_LOGITS, LOG_INPUT, AXIS, EPS, REDUCTION),
        "positions", "same",
        r"\operatorname{mean}_i\Big(\sum_c p_{ic}\log\frac{p_{ic}}{q_{ic}}\Big),\ "
        r"p = y_\text{true},\ q = y_\text{pred}",
        "Kullback-Leibler divergence KL(p || q) of the prediction q from the target p.",
    ),
)

REGISTRY: dict[str, LossSpec] = {s.name: s for s in _SPECS}
BY_CLASS: dict[str, LossSpec] = {s.class_name: s for s in _SPECS}


def spec(name: str) -> LossSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown loss {name!r}; valid names are: {', '.join(REGISTRY)}"
        ) from None


def param_names(specs: Sequence[LossSpec] = _SPECS) -> list[str]:
    return sorted({p.name for s in specs for p in s.params})
