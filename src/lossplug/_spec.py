"""The registry: every loss's name, class name, formula, parameters, defaults and checks.

This is the one place that knows what a loss accepts. The NumPy functions, the torch modules,
the Keras classes, the Hydra YAML files and the command line all read it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lossplug.formulas import classification, divergence, focal, lovasz, margin, regression, segmentation

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
FOCAL_GAMMA = Param(
    "gamma", 2.0, _non_negative,
    "focusing exponent: (1 - p_t)^gamma scales the cross-entropy; 0 gives the plain cross-entropy",
    _as_float,
)


def _optional_unit(v):
    return None if v is None or (_is_number(v) and 0 <= v <= 1) else "None or a number in [0, 1]"


def _as_optional_float(v):
    return None if v is None else float(v)


def _class_alpha(v):
    if v is None or (_is_number(v) and v >= 0):
        return None
    return _class_weights(v) and "None, a number >= 0, or one number >= 0 per class (not all 0)"


def _as_class_alpha(v):
    return v if v is None else float(v) if _is_number(v) else _as_weights(v)


FOCAL_ALPHA = Param(
    "alpha", None, _optional_unit,
    "alpha_t = alpha y + (1 - alpha)(1 - y) weighs positives against negatives; None: 1",
    _as_optional_float,
)
CLASS_ALPHA = Param(
    "alpha", None, _class_alpha,
    "None (1), a number that scales every class (as Keras's), or one weight per class",
    _as_class_alpha,
)
POISSON_LOG_INPUT = Param(
    "log_input", False, _bool, "y_pred holds the log-rate: the loss is exp(y_pred) - y y_pred", _as_bool
)
POISSON_EPS = Param(
    "eps", 1e-7, _eps, "added to y_pred inside the log (log_input=False)", _as_float
)
COSINE_EPS = Param("eps", 1e-8, _positive, "floor of each vector's norm", _as_float)
HINGE_SQUARED = Param(
    "squared", False, _bool, "square the margin: max(0, 1 - t y_pred)^2 (Keras's SquaredHinge)", _as_bool
)
TVERSKY_ALPHA = Param(
    "alpha", 0.5, _non_negative, "weight of the false positives FP = sum(y_pred (1 - y))", _as_float
)
TVERSKY_BETA = Param(
    "beta", 0.5, _non_negative, "weight of the false negatives FN = sum((1 - y_pred) y)", _as_float
)
TVERSKY_GAMMA = Param(
    "gamma", 1.0, _positive, "exponent of the loss; gamma != 1 is the focal Tversky loss", _as_float
)
WEIGHT_TYPE = Param(
    "weight_type", "square", _one_of("square", "simple", "uniform"),
    'class weight w_c: "square" 1/(sum y_c)^2, "simple" 1/sum y_c, "uniform" 1; a class absent '
    "from y_true takes the largest weight of the present ones",
)
def _numerics(*frameworks):
    return Param(
        "numerics", "lossplug", _one_of("lossplug", *frameworks),
        '"lossplug" (default); ' + " or ".join(f'"{f}"' for f in frameworks)
        + " reproduces that framework's own numerics (lossplug.port sets it; docs/porting.md)",
    )


NUMERICS_KERAS = _numerics("keras")
NUMERICS_BCE = _numerics("torch", "keras")
NUMERICS_CE = _numerics("torch", "keras", "monai")  # torch: the 0/0 mean; monai: DiceCELoss's BCE
NUMERICS_OVERLAP = _numerics("keras", "monai")  # monai: one channel ignores softmax, include_background
NUMERICS_MONAI = _numerics("monai")
LOVASZ_AGGREGATION = Param(
    "aggregation", "sample", _one_of("sample", "batch"),
    '"sample": one Lovasz loss per sample (per image), then the mean; "batch": one over the whole batch',
)


@dataclass(frozen=True)
class Case:
    """One parameter set of a loss in the test matrix (and, with ``check=True``, in ``lossplug check``).

    ``inputs`` names the input kind (``lossplug.tools.inputs.KINDS``; ``None``: the loss's own) and
    ``shape`` is ``y_pred``'s shape in torch's layout, class axis at dim 1 (``None``: the kind's
    default). ``from_logits``, ``log_input`` and ``ignore_index`` in ``params`` shape the inputs too.
    """

    label: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: str | None = None
    shape: tuple[int, ...] | None = None
    check: bool = False


def case(label: str = "", *, inputs=None, shape=None, check=False, **params) -> Case:
    """``case("delta0.3", delta=0.3)``: a :class:`Case` with the loss's parameters as keywords."""
    return Case(label, params, inputs, shape, check)


@dataclass(frozen=True)
class Hook:
    """An extension point: a method of the torch and Keras classes that a subclass may override.

    The formula takes it as the keyword argument ``name`` and calls
    ``name(xp, *args, *params)``; the classes' method ``name(self, *args)`` calls ``default`` with
    the current values of the hyperparameters ``params``.
    """

    name: str
    default: Callable
    args: tuple[str, ...]
    params: tuple[str, ...]
    doc: str


@dataclass(frozen=True)
class LossSpec:
    """What the registry knows about one loss: everything the classes, YAML, docs, CLI and tests need.

    Only plain data beyond ``formula``: the tools (docs pages, plots, ``lossplug check``) and the
    test matrix read these fields; nothing here imports them.
    """

    name: str
    class_name: str
    formula: Callable
    params: tuple[Param, ...]
    kind: str  # "elementwise" | "positions" (class losses, KL) | "sample" (Dice)
    targets: str  # "same" | "labels" | "same_or_labels": what y_true may look like
    math: str  # LaTeX of the mean-reduction formula
    summary: str
    text: str = ""  # the formula in plain text: NumPy docstring, `lossplug show`
    inputs: str = "regression"  # input kind (lossplug.tools.inputs) of the plots and of the cases
    example: tuple = ()  # (y_pred, y_true, params) of the docs page: small (N, C) lists
    plots: tuple[Mapping[str, Any], ...] = ({},)  # the parameter sets drawn on the docs page
    targets_doc: str = ""  # what y_true looks like, for the docs page's shapes table
    cases: tuple[Case, ...] = (Case(check=True),)  # the test matrix and `lossplug check` rows
    hooks: tuple[Hook, ...] = ()  # methods a subclass may override (Dice's score)
    # the data-dependent checks of a loss without from_logits (lossplug.core.check_values):
    # "counts" (y_true >= 0, y_pred >= 0 unless log_input), "signs" (labels all in {0, 1}
    # or all in {-1, 1}), "finite" (no NaN or infinity in y_pred or y_true); "": none
    checks: str = ""
    # each entry of y_pred (probabilities) enters a term of its own, which the class axis sums
    # (lossplug's numerics): a NaN put in at a bad entry makes its position's loss NaN and leaves
    # every other entry's gradient finite (lossplug.core.poison_inputs)
    separable: bool = False
    # the formula compares an integer label map with each class (the overlap losses: their sums
    # per class, and with per_class=False their total where the backend prefers it,
    # ``compares_labels``) instead of gathering the entry at the label
    compares_labels: bool = False

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def __post_init__(self):
        # read on every call: worked out once here (functools.cached_property takes an RLock on
        # Python 3.11, which torch.compile(fullgraph=True) cannot trace on a first call)
        object.__setattr__(self, "_has_class_axis", any(p.name == "axis" for p in self.params))

    @property
    def has_class_axis(self) -> bool:
        return self._has_class_axis

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
        check_combinations(self, out)
        return out


def check_combinations(spec: LossSpec, params: dict[str, Any]) -> None:
    if params.get("from_logits") and params.get("log_input"):
        raise LossParameterError(
            f"{spec.class_name}: from_logits=True and log_input=True exclude each other"
        )
    if params.get("class_weights") is not None and params.get("per_class") is False:
        raise LossParameterError(f"{spec.class_name}: class_weights needs per_class=True")
    if params.get("sync_dist") and params.get("aggregation") != "batch":
        raise LossParameterError(f'{spec.class_name}: sync_dist=True needs aggregation="batch"')


_CLASS_PARAMS = (FROM_LOGITS, LABEL_SMOOTHING, CLASS_WEIGHTS, IGNORE_INDEX, AXIS, EPS, REDUCTION)
_CE_PARAMS = _CLASS_PARAMS[:-1] + (NUMERICS_CE, REDUCTION)

_REGRESSION_EXAMPLE = ([[0.5, 2.0], [-1.0, 0.0]], [[0.0, 1.5], [0.0, 0.5]])
_BINARY_EXAMPLE = ([[0.9, 0.2], [0.6, 0.1]], [[1.0, 0.0], [1.0, 1.0]])
_CLASS_PROBS = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
_ONE_HOT = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
_SPATIAL = (2, 3, 2, 2)
_ONEHOT_DOC = "same shape: one-hot or soft targets"
_LABELS_DOC = (
    "integer labels: `y_pred`'s shape without the class axis (a trailing axis of size 1 is "
    "squeezed when the class axis is the last one)"
)

_SPECS = (
    LossSpec(
        "mse", "MSELoss", regression.mse, (REDUCTION,), "elementwise", "same",
        r"\operatorname{mean}\big((\hat y - y)^2\big)",
        "Mean squared error.",
        text="Mean squared error: mean((y_pred - y_true)^2).",
        example=(*_REGRESSION_EXAMPLE, {}),
        cases=(case(check=True), case("4d", shape=(2, 3, 2, 2))),
    ),
    LossSpec(
        "mae", "MAELoss", regression.mae, (REDUCTION,), "elementwise", "same",
        r"\operatorname{mean}\big(|\hat y - y|\big)",
        "Mean absolute error (L1).",
        text="Mean absolute error: mean(|y_pred - y_true|).",
        example=(*_REGRESSION_EXAMPLE, {}),
    ),
    LossSpec(
        "huber", "HuberLoss", regression.huber, (DELTA, REDUCTION), "elementwise", "same",
        r"\operatorname{mean}\big(\tfrac12 q^2 + \delta(|e| - q)\big),\ e = \hat y - y,\ "
        r"q = \min(|e|, \delta)",
        "Huber loss: quadratic for |error| <= delta, linear beyond.",
        text="Huber loss: mean(0.5 q^2 + delta (|e| - q)), e = y_pred - y_true, q = min(|e|, delta).",
        example=(*_REGRESSION_EXAMPLE, {"delta": 0.5}),
        plots=({"delta": 0.5}, {}, {"delta": 2.0}),
        cases=(case(), case("delta0.3", delta=0.3, check=True), case("delta2.5", shape=(2, 3, 2), delta=2.5)),
    ),
    LossSpec(
        "bce", "BCELoss", classification.bce, (FROM_LOGITS, LABEL_SMOOTHING, EPS, NUMERICS_BCE, REDUCTION),
        "elementwise", "same",
        r"\operatorname{mean}\big(-[y\log p + (1 - y)\log(1 - p)]\big)",
        "Binary cross-entropy on probabilities or logits.",
        text="Binary cross-entropy: mean(-[y log p + (1 - y) log(1 - p)]), p clipped to [eps, 1 - eps].",
        inputs="binary",
        example=(*_BINARY_EXAMPLE, {}),
        plots=({}, {"label_smoothing": 0.1}),
        cases=(
            case(), case("soft", inputs="binary_soft"),
            case("logits", from_logits=True),
            case("ls", label_smoothing=0.1, check=True),
            case("logits-ls", from_logits=True, label_smoothing=0.2),
            case("logits-soft", inputs="binary_soft", shape=(4, 3, 5), from_logits=True, check=True),
            case("eps1e-3", eps=1e-3),
        ),
    ),
    LossSpec(
        "weighted_bce", "WeightedBCELoss", classification.weighted_bce,
        (POS_WEIGHT, NEG_WEIGHT, FROM_LOGITS, LABEL_SMOOTHING, EPS, NUMERICS_BCE, REDUCTION),
        "elementwise", "same",
        r"\operatorname{mean}\big(-[w_+\,y\log p + w_-\,(1 - y)\log(1 - p)]\big)",
        "Binary cross-entropy with a weight on the positive and on the negative term.",
        text="Weighted BCE: mean(-[w+ y log p + w- (1 - y) log(1 - p)]).",
        inputs="binary",
        example=(*_BINARY_EXAMPLE, {"pos_weight": 2.0}),
        plots=({}, {"pos_weight": 3.0}, {"pos_weight": 3.0, "neg_weight": 0.5}),
        cases=(
            case("w2-0.5", pos_weight=2.0, neg_weight=0.5, check=True),
            case("neg0", pos_weight=3.0, neg_weight=0.0),
            case("logits", pos_weight=0.7, neg_weight=1.5, from_logits=True, check=True),
            case("logits-ls-soft", inputs="binary_soft", pos_weight=2.0, from_logits=True,
                 label_smoothing=0.1),
            case("pos0-logits", pos_weight=0.0, neg_weight=2.0, from_logits=True),
        ),
    ),
    LossSpec(
        "categorical_ce", "CategoricalCELoss", classification.categorical_ce, _CE_PARAMS,
        "positions", "same",
        r"\operatorname{mean}_i\Big(-\sum_c y_{ic}\log p_{ic}\Big)",
        "Cross-entropy against one-hot or soft targets.",
        text="Categorical cross-entropy: mean over samples of -sum_c y_c log p_c.",
        inputs="onehot",
        example=(_CLASS_PROBS, _ONE_HOT, {}),
        plots=({}, {"label_smoothing": 0.1}),
        targets_doc=_ONEHOT_DOC,
        separable=True,
        cases=(
            case(check=True), case("soft", inputs="soft"),
            case("logits", from_logits=True),
            case("logits-spatial", shape=_SPATIAL, from_logits=True),
            case("logits-soft-spatial-ls", inputs="soft", shape=(3, 4, 4, 5), from_logits=True,
                 label_smoothing=0.1, check=True),
            case("ls", label_smoothing=0.1),
            case("cw", class_weights=[0.5, 2.0, 1.0]),
            case("ignore", ignore_index=1, from_logits=True),
            case("cw-ignore-ls", shape=(3, 3, 2), class_weights=[1.0, 3.0, 0.25], ignore_index=0,
                 label_smoothing=0.2),
            case("cw-ignore-spatial", shape=(3, 4, 4, 5), class_weights=[0.5, 1.0, 2.0, 0.25],
                 ignore_index=0, check=True),
        ),
    ),
    LossSpec(
        "sparse_categorical_ce", "SparseCategoricalCELoss", classification.sparse_categorical_ce,
        _CE_PARAMS, "positions", "labels",
        r"\operatorname{mean}_i\big(-\log p_{i,\,y_i}\big)",
        "Cross-entropy against integer class labels.",
        text="Sparse categorical cross-entropy: mean over samples of -log p_label.",
        inputs="labels",
        example=(_CLASS_PROBS, [0, 1], {}),
        plots=({}, {"label_smoothing": 0.1}),
        targets_doc=_LABELS_DOC,
        cases=(
            case(),
            case("logits", shape=(8, 5), from_logits=True, check=True),
            case("logits-spatial", shape=(2, 4, 3, 2), from_logits=True),
            case("ls", label_smoothing=0.15),
            case("cw", class_weights=[0.5, 2.0, 1.0], from_logits=True),
            case("ignore", ignore_index=-100),
            case("cw-ignore-ls", shape=(3, 3, 2), class_weights=[1.0, 3.0, 0.25], ignore_index=7,
                 label_smoothing=0.1, from_logits=True),
            case("logits-cw-ls", shape=(8, 5), from_logits=True,
                 class_weights=[1.0, 2.0, 0.5, 1.0, 4.0], label_smoothing=0.2, check=True),
            case("cw-ignore-spatial", shape=(3, 4, 4, 5), class_weights=[0.5, 1.0, 2.0, 0.25],
                 ignore_index=-100, check=True),
        ),
    ),
    LossSpec(
        "dice", "DiceLoss", segmentation.dice,
        (FROM_LOGITS, SMOOTH, SQUARED, AGGREGATION, PER_CLASS, CLASS_WEIGHTS, INCLUDE_BACKGROUND,
         ACTIVATION, IGNORE_INDEX, AXIS, SYNC_DIST, NUMERICS_OVERLAP, REDUCTION),
        "sample", "same_or_labels",
        r"\operatorname{mean}_i\Big(1 - \frac{2\sum \hat y_i y_i + s}"
        r"{\sum \hat y_i^2 + \sum y_i^2 + s}\Big)",
        "Dice loss; sums run over every non-batch axis.",
        text="Dice loss: mean over samples of 1 - (2 sum(y_pred y) + s) / (sum(y_pred^2) + sum(y^2) + s).",
        inputs="masks",
        compares_labels=True,
        example=([[0.9, 0.8, 0.1, 0.2], [0.3, 0.6, 0.7, 0.1]],
                 [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]], {}),
        plots=({}, {"squared": False}),
        cases=(
            case(), case("plain", squared=False), case("smooth1", smooth=1.0),
            case("logits", from_logits=True),
            case("batch", aggregation="batch"),
            case("onehot", inputs="onehot", shape=(3, 3, 6, 6), check=True),
            case("labelmap-softmax", inputs="label_map", from_logits=True, check=True),
            case("perclass-cw", inputs="label_map", per_class=True, class_weights=[0.25, 1.0, 2.0]),
            case("nobg", inputs="label_map", include_background=False, from_logits=True, per_class=True),
            case("ignore", inputs="label_map", ignore_index=255, from_logits=True),
            case("multilabel-batch", shape=(2, 3, 3, 3), from_logits=True, activation="sigmoid",
                 aggregation="batch", per_class=True),
            case("perclass-cw-nobg", inputs="onehot", shape=(3, 3, 6, 6), per_class=True,
                 class_weights=[1.0, 2.0, 0.5], include_background=False, check=True),
            case("binary-logits-batch-plain", shape=(3, 1, 6, 6), from_logits=True,
                 aggregation="batch", squared=False, check=True),
            case("labelmap-sigmoid-smooth0", inputs="label_map", from_logits=True,
                 activation="sigmoid", smooth=0.0),
        ),
        hooks=(Hook("score", segmentation.dice_score, ("intersection", "denominator"), ("smooth",),
                    "The Dice ratio from the sums; override for another smoothing rule."),),
    ),
    LossSpec(
        "tversky", "TverskyLoss", segmentation.tversky,
        (TVERSKY_ALPHA, TVERSKY_BETA, TVERSKY_GAMMA, FROM_LOGITS, SMOOTH, AGGREGATION, PER_CLASS,
         CLASS_WEIGHTS, INCLUDE_BACKGROUND, ACTIVATION, IGNORE_INDEX, AXIS, SYNC_DIST, NUMERICS_OVERLAP,
         REDUCTION),
        "sample", "same_or_labels",
        r"\operatorname{mean}_i\Big(1 - \frac{TP_i + s}{TP_i + \alpha FP_i + \beta FN_i + s}\Big)^\gamma,"
        r"\ TP = \sum \hat y y,\ FP = \sum \hat y (1 - y),\ FN = \sum (1 - \hat y) y",
        "Tversky loss: Dice with its own weights on false positives and false negatives "
        "(focal Tversky for gamma != 1).",
        text="Tversky loss: mean over samples of (1 - (TP + s) / (TP + alpha FP + beta FN + s))^gamma, "
             "TP = sum(y_pred y), FP = sum(y_pred (1 - y)), FN = sum((1 - y_pred) y).",
        inputs="masks",
        compares_labels=True,
        example=([[0.9, 0.8, 0.1, 0.2], [0.3, 0.6, 0.7, 0.1]],
                 [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]], {"alpha": 0.3, "beta": 0.7}),
        plots=({}, {"alpha": 0.3, "beta": 0.7}, {"gamma": 0.75}),
        cases=(
            case(), case("a0.3-b0.7", alpha=0.3, beta=0.7, check=True),
            case("focal0.75", gamma=0.75), case("focal2-logits", gamma=2.0, from_logits=True),
            case("batch", aggregation="batch", alpha=0.7, beta=0.3),
            case("labelmap-softmax", inputs="label_map", from_logits=True, check=True),
            case("perclass-cw-nobg", inputs="onehot", shape=(3, 3, 6, 6), per_class=True,
                 class_weights=[1.0, 2.0, 0.5], include_background=False, check=True),
            case("ignore-perclass", inputs="label_map", ignore_index=255, from_logits=True,
                 per_class=True, alpha=0.2, beta=0.8),
        ),
    ),
    LossSpec(
        "jaccard", "JaccardLoss", segmentation.jaccard,
        (FROM_LOGITS, SMOOTH, AGGREGATION, PER_CLASS, CLASS_WEIGHTS, INCLUDE_BACKGROUND, ACTIVATION,
         IGNORE_INDEX, AXIS, SYNC_DIST, NUMERICS_MONAI, REDUCTION),
        "sample", "same_or_labels",
        r"\operatorname{mean}_i\Big(1 - \frac{I_i + s}{\sum \hat y_i + \sum y_i - I_i + s}\Big),"
        r"\ I_i = \sum \hat y_i y_i",
        "Soft Jaccard (IoU) loss; sums run over every non-batch axis.",
        text="Soft Jaccard loss: mean over samples of 1 - (I + s) / (sum(y_pred) + sum(y) - I + s), "
             "I = sum(y_pred y).",
        inputs="masks",
        compares_labels=True,
        example=([[0.9, 0.8, 0.1, 0.2], [0.3, 0.6, 0.7, 0.1]],
                 [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]], {}),
        plots=({}, {"smooth": 1.0}),
        cases=(
            case(), case("logits", from_logits=True), case("smooth1", smooth=1.0),
            case("batch", aggregation="batch", check=True),
            case("labelmap-softmax", inputs="label_map", from_logits=True, check=True),
            case("perclass-cw", inputs="label_map", per_class=True, class_weights=[0.25, 1.0, 2.0]),
            case("ignore-nobg", inputs="label_map", ignore_index=255, from_logits=True,
                 include_background=False, per_class=True, check=True),
        ),
    ),
    LossSpec(
        "generalized_dice", "GeneralizedDiceLoss", segmentation.generalized_dice,
        (FROM_LOGITS, SMOOTH, WEIGHT_TYPE, AGGREGATION, CLASS_WEIGHTS, INCLUDE_BACKGROUND, ACTIVATION,
         IGNORE_INDEX, AXIS, SYNC_DIST, NUMERICS_MONAI, REDUCTION),
        "sample", "same_or_labels",
        r"\operatorname{mean}_i\Big(1 - \frac{2\sum_c w_c I_{ic} + s}"
        r"{\sum_c w_c\,(\sum \hat y_{ic} + \sum y_{ic}) + s}\Big),\ w_c = 1/(\textstyle\sum y_{ic})^2",
        "Generalized Dice loss: per-class sums weighted by the inverse squared class size.",
        text="Generalized Dice loss: mean over samples of 1 - (2 sum_c w_c I_c + s) / "
             "(sum_c w_c (sum(y_pred_c) + sum(y_c)) + s), w_c = 1 / sum(y_c)^2.",
        inputs="label_map",
        compares_labels=True,
        example=([[[0.7, 0.2], [0.2, 0.6], [0.1, 0.2]], [[0.5, 0.1], [0.4, 0.1], [0.1, 0.8]]],
                 [[0, 1], [1, 2]], {"axis": 1}),  # (N, C, pixels) and labels (N, pixels)
        plots=({}, {"weight_type": "simple"}, {"weight_type": "uniform"}),
        cases=(
            case(), case("logits", from_logits=True, check=True),
            case("simple", weight_type="simple"),
            case("uniform-logits", weight_type="uniform", from_logits=True),
            case("batch", aggregation="batch", from_logits=True, check=True),
            case("nobg", include_background=False, from_logits=True),
            case("ignore", ignore_index=255, from_logits=True),
            case("onehot-cw", inputs="onehot", shape=(3, 3, 6, 6), class_weights=[1.0, 2.0, 0.5], check=True),
            case("binary-mask", inputs="masks"),
        ),
    ),
    LossSpec(
        "lovasz", "LovaszLoss", lovasz.lovasz,
        (FROM_LOGITS, LOVASZ_AGGREGATION, IGNORE_INDEX, AXIS, REDUCTION),
        "sample", "same_or_labels",
        r"\operatorname{mean}_i\ \overline{\Delta_J}(m_i):\ \text{the Lovasz extension of the Jaccard "
        r"loss at the errors } m_i",
        "Lovasz loss (Berman et al. 2018): hinge on binary logits, softmax for label maps.",
        text="Lovasz loss: mean over samples of the Lovasz extension of the Jaccard loss at the errors: "
             "1 - y_pred (2 y - 1) clipped at 0 (binary, logits), |[y = c] - p_c| averaged over the "
             "present classes (label maps).",
        inputs="label_map",
        example=([[[0.7, 0.2], [0.2, 0.6], [0.1, 0.2]], [[0.5, 0.1], [0.4, 0.1], [0.1, 0.8]]],
                 [[0, 1], [1, 2]], {"axis": 1}),  # (N, C, pixels) and labels (N, pixels)
        plots=({},),
        cases=(
            case(), case("logits", from_logits=True, check=True),
            case("batch-logits", aggregation="batch", from_logits=True, check=True),
            case("ignore", ignore_index=255, from_logits=True),
            case("hinge", inputs="masks", from_logits=True, check=True),
            case("hinge-batch", inputs="masks", from_logits=True, aggregation="batch"),
            case("binary-probs", inputs="masks"),
            case("onechannel-labels", inputs="label_map", shape=(2, 1, 4, 4), from_logits=True),
        ),
    ),
    LossSpec(
        "kl_div", "KLDivLoss", divergence.kl_div,
        (FROM_LOGITS, LOG_INPUT, AXIS, EPS, NUMERICS_BCE, REDUCTION),
        "positions", "same",
        r"\operatorname{mean}_i\Big(\sum_c p_{ic}\log\frac{p_{ic}}{q_{ic}}\Big),\ "
        r"p = y_\text{true},\ q = y_\text{pred}",
        "Kullback-Leibler divergence KL(p || q) of the prediction q from the target p.",
        text="KL divergence KL(p || q): mean over samples of sum_c p_c log(p_c / q_c), p = y_true.",
        inputs="distributions",
        example=(_CLASS_PROBS, [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], {}),
        targets_doc="same shape: the target distribution p",
        separable=True,
        cases=(
            case(),
            case("zeros", inputs="distributions_zeros", shape=(6, 5), check=True),
            case("logits", from_logits=True, check=True),
            case("log_input", log_input=True, check=True),
            case("spatial", shape=_SPATIAL),
            case("eps1e-4", eps=1e-4),
        ),
    ),
    LossSpec(
        "focal", "FocalLoss", focal.focal,
        (FOCAL_GAMMA, FOCAL_ALPHA, FROM_LOGITS, LABEL_SMOOTHING, EPS, NUMERICS_KERAS, REDUCTION),
        "elementwise", "same",
        r"\operatorname{mean}\big(\alpha_t (1 - p_t)^\gamma\,\mathrm{BCE}(p, y)\big),\ "
        r"p_t = y p + (1 - y)(1 - p),\ \alpha_t = \alpha y + (1 - \alpha)(1 - y)",
        "Binary focal loss: BCE scaled by (1 - p_t)^gamma, optionally balanced by alpha.",
        text="Binary focal loss: mean(alpha_t (1 - p_t)^gamma BCE(p, y)), p_t = y p + (1 - y)(1 - p).",
        inputs="binary",
        example=(*_BINARY_EXAMPLE, {"alpha": 0.25}),
        plots=({"gamma": 0.0}, {}, {"gamma": 5.0}, {"alpha": 0.25}),
        cases=(
            case(check=True),
            case("logits", from_logits=True, check=True),
            case("alpha0.25-logits", alpha=0.25, from_logits=True),
            case("gamma0", gamma=0.0),
            case("gamma0.5-soft", inputs="binary_soft", gamma=0.5),
            case("ls-alpha", label_smoothing=0.1, alpha=0.75, check=True),
            case("logits-spatial-gamma3", shape=_SPATIAL, from_logits=True, gamma=3.0),
        ),
    ),
    LossSpec(
        "categorical_focal", "CategoricalFocalLoss", focal.categorical_focal,
        (FOCAL_GAMMA, CLASS_ALPHA, FROM_LOGITS, LABEL_SMOOTHING, IGNORE_INDEX, AXIS, EPS, NUMERICS_KERAS,
         REDUCTION),
        "positions", "same_or_labels",
        r"\operatorname{mean}_i\Big(-\sum_c \alpha_c (1 - p_{ic})^\gamma\,y_{ic}\log p_{ic}\Big)",
        "Categorical focal loss: cross-entropy scaled by (1 - p_c)^gamma, per-class alpha.",
        text="Categorical focal loss: mean over samples of -sum_c alpha_c (1 - p_c)^gamma y_c log p_c.",
        inputs="onehot",
        example=(_CLASS_PROBS, _ONE_HOT, {}),
        plots=({"gamma": 0.0}, {}, {"gamma": 5.0}),
        targets_doc=(
            "one-hot or soft targets shaped like `y_pred`, or integer labels without the class axis"
        ),
        separable=True,
        cases=(
            case(check=True),
            case("logits", from_logits=True),
            case("labels-logits", inputs="labels", from_logits=True, check=True),
            case("alpha-per-class", alpha=[0.25, 0.5, 1.0]),
            case("alpha0.25-ls", alpha=0.25, label_smoothing=0.1),
            case("labels-ignore-spatial", inputs="labels", shape=_SPATIAL, from_logits=True,
                 ignore_index=-1, check=True),
            case("onehot-ignore", ignore_index=1, from_logits=True),
            case("gamma0-soft", inputs="soft", gamma=0.0),
            case("gamma0.5-labels", inputs="labels", gamma=0.5),
        ),
    ),
    LossSpec(
        "log_cosh", "LogCoshLoss", margin.log_cosh, (REDUCTION,), "elementwise", "same",
        r"\operatorname{mean}\big(\log\cosh(\hat y - y)\big)",
        "Log-cosh: about e^2 / 2 for small errors, |e| - log 2 for large ones.",
        text="Log-cosh: mean(log cosh(y_pred - y_true)), as |e| + softplus(-2|e|) - log 2.",
        example=(*_REGRESSION_EXAMPLE, {}),
        cases=(case(check=True), case("4d", shape=_SPATIAL)),
    ),
    LossSpec(
        "poisson", "PoissonLoss", margin.poisson, (POISSON_LOG_INPUT, POISSON_EPS, REDUCTION),
        "elementwise", "same",
        r"\operatorname{mean}\big(\hat y - y\log(\hat y + \epsilon)\big)",
        "Poisson negative log-likelihood of counts y under the rate y_pred (or log-rate).",
        text="Poisson: mean(y_pred - y_true log(y_pred + eps)); log_input: mean(exp(y_pred) - y y_pred).",
        inputs="counts",
        checks="counts",
        example=([[1.0, 2.5], [0.5, 3.0]], [[1.0, 2.0], [0.0, 4.0]], {}),
        cases=(
            case(check=True), case("log_input", log_input=True, check=True),
            case("eps1e-3", eps=1e-3), case("log_input-4d", shape=_SPATIAL, log_input=True),
        ),
    ),
    LossSpec(
        "cosine_similarity", "CosineSimilarityLoss", margin.cosine_similarity,
        (AXIS, COSINE_EPS, NUMERICS_KERAS, REDUCTION), "positions", "same",
        r"\operatorname{mean}_i\Big(1 - \frac{\hat y_i\cdot y_i}"
        r"{\max(\|\hat y_i\|, \epsilon)\,\max(\|y_i\|, \epsilon)}\Big)",
        "One minus the cosine similarity of y_pred and y_true along the class axis.",
        text="Cosine similarity loss: mean over samples of 1 - cos(y_pred, y_true) along axis.",
        inputs="vectors",
        checks="finite",
        example=([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0]], [[1.0, 1.0, 0.0], [0.5, 1.0, 0.0]], {}),
        targets_doc="same shape: the target vectors",
        cases=(case(check=True), case("spatial", shape=_SPATIAL, check=True), case("eps1e-3", eps=1e-3)),
    ),
    LossSpec(
        "hinge", "HingeLoss", margin.hinge, (HINGE_SQUARED, REDUCTION), "elementwise", "same",
        r"\operatorname{mean}\big(\max(0, 1 - t\hat y)\big),\ t = 2y - 1",
        "Hinge loss on scores: labels 0/1 (or -1/+1); squared=True is the squared hinge.",
        text="Hinge: mean(max(0, 1 - t y_pred)), t = 2 y_true - 1 for labels 0/1 (-1/1 as they are).",
        inputs="scores",
        checks="signs",
        example=([[0.8, -0.3], [2.0, 0.1]], [[1.0, 0.0], [1.0, 1.0]], {}),
        plots=({}, {"squared": True}),
        cases=(
            case(check=True), case("pm1", inputs="scores_pm1", check=True),
            case("squared", squared=True, check=True),
            case("squared-pm1-4d", inputs="scores_pm1", shape=_SPATIAL, squared=True),
        ),
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
