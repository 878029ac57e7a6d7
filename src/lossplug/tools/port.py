"""``lossplug.port``: the lossplug loss that gives a torch.nn, Keras 3 or MONAI loss's own number.

``port(torch.nn.CrossEntropyLoss(label_smoothing=0.1), framework="keras")`` reads the source
object's settings and returns ``lossplug.keras.SparseCategoricalCELoss(from_logits=True,
label_smoothing=0.1, ignore_index=-100)``, which gives the source's value on the same data laid
out by the target framework's habit (class axis 1 in torch, the last axis in Keras and NumPy).
Where lossplug's parameters cannot say what the source computes, the loss's ``numerics`` parameter
reproduces that framework's numerics ("torch": BCE's log clamped at -100; "keras": clipping,
renormalised categorical probabilities, smoothing in the denominator only, -cos). A setting that
cannot be reproduced exactly raises a ``ValueError`` naming it: never an approximate loss.

The source class is recognised by its module and qualified name (an exact class, not a
subclass, whose forward may differ); no framework is imported here that the caller did not
hand an object of. ``RULES`` is the converter's own table, which ``docs/porting.md`` is
generated from (``porting_table``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lossplug._spec import REGISTRY

FRAMEWORKS = ("numpy", "torch", "keras")
SOURCES = {"torch": "torch.nn", "keras": "keras.losses", "monai": "monai.losses"}


class PortError(ValueError):
    """A source setting lossplug cannot reproduce exactly (a ``ValueError``)."""


@dataclass(frozen=True)
class Recipe:
    """What a source loss becomes: a registry ``name`` with ``params``, or ``combined`` terms."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    terms: dict[str, Recipe] | None = None  # name == "combined": term key -> its recipe
    weights: dict[str, float] | None = None
    source: str = ""

    def build(self, framework: str):
        """The lossplug loss for ``framework``: a NumPy function, an ``nn.Module`` or a Keras loss."""
        import lossplug

        if framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
        if self.terms is None:
            return lossplug.get(self.name, framework=framework, **self.params)
        if framework == "numpy":
            return _numpy_sum({k: t.build("numpy") for k, t in self.terms.items()}, self.weights or {})
        terms = {k: {"name": t.name, **t.params} for k, t in self.terms.items()}
        return lossplug.get("combined", framework=framework, terms=terms, weights=dict(self.weights or {}))

    def code(self, framework: str) -> str:
        """Python that builds the same loss."""
        if self.terms is None:
            return _call_code(self.name, self.params, framework)
        if framework == "numpy":
            parts = [f"{self.weights.get(k, 1.0)!r} * {_call_code(t.name, t.params, 'numpy')}(y_pred, y_true)"
                     for k, t in self.terms.items()]
            return "loss = lambda y_pred, y_true: " + " + ".join(parts)
        terms = ", ".join(f"{k!r}: {_call_code(t.name, t.params, framework)}" for k, t in self.terms.items())
        return (f"lossplug.{framework}.CombinedLoss(terms={{{terms}}}, weights={dict(self.weights)!r})")

    def yaml(self, framework: str) -> str:
        """An entry of the Hydra ``loss`` group: ``_target_``, the parameters (all), ``numerics``."""
        lines = [f"# lossplug port of {self.source}" if self.source else "# lossplug port",
                 "_target_: lossplug.get"]
        if self.terms is None:
            lines += [f"name: {self.name}", f"framework: {framework}"]
            lines += [f"{k}: {_yaml(v)}" for k, v in self.full_params().items()]
        else:
            lines += ["name: combined", f"framework: {framework}", "terms:"]
            for key, term in self.terms.items():
                lines += [f"  {key}:", f"    name: {term.name}"]
                lines += [f"    {k}: {_yaml(v)}" for k, v in term.full_params().items()]
            lines += ["weights:"] + [f"  {k}: {_yaml(float(v))}" for k, v in self.weights.items()]
        return "\n".join(lines) + "\n"

    def full_params(self) -> dict[str, Any]:
        return REGISTRY[self.name].validate(self.params) if self.terms is None else {}

    def __str__(self) -> str:
        return self.code("torch")


def _numpy_sum(terms: dict[str, Callable], weights: dict[str, float]):
    def loss(y_pred, y_true):
        return sum(weights.get(k, 1.0) * f(y_pred, y_true) for k, f in terms.items())

    loss.terms, loss.weights = terms, weights
    return loss


def _value_code(v) -> str:
    return repr(list(v)) if isinstance(v, tuple) else repr(v)


def _call_code(name: str, params: dict, framework: str) -> str:
    args = ", ".join(f"{k}={_value_code(v)}" for k, v in params.items())
    if framework == "numpy":
        return f"functools.partial(lossplug.numpy.{name}{', ' + args if args else ''})"
    return f"lossplug.{framework}.{REGISTRY[name].class_name}({args})"


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return repr(value) if isinstance(value, float | int) else str(value)


# --- reading the source objects -----------------------------------------------------------------


def _fail(source: str, setting: str, why: str):
    raise PortError(f"lossplug.port: {source}: {setting} cannot be reproduced exactly: {why}")


def _numbers(source: str, setting: str, value) -> list[float] | None:
    """A tensor / array / number / sequence setting as a list of floats (None stays None)."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().reshape(-1).tolist()
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, int | float):
        return [float(value)]
    try:
        flat = []
        for v in value:
            flat.extend(v if isinstance(v, list | tuple) else [v])
        return [float(v) for v in flat]
    except TypeError:
        _fail(source, setting, f"{value!r} is not a number or a tensor of numbers")


def _scalar(source: str, setting: str, value, why: str) -> float | None:
    """A setting that lossplug takes as one number: a tensor is fine when all its entries agree."""
    values = _numbers(source, setting, value)
    if values is None:
        return None
    if not values or any(v != values[0] for v in values):
        _fail(source, setting, why)
    return values[0]


def _reduction(source: str, value, allowed: dict) -> str:
    if value in allowed:
        return allowed[value]
    _fail(source, f"reduction={value!r}", "lossplug's reductions for this loss are the source's "
          + ", ".join(repr(k) for k in allowed))


_TORCH_REDUCTIONS = {"mean": "mean", "sum": "sum", "none": "none"}
_KERAS_MEAN = {"sum_over_batch_size": "mean", "mean": "mean", "mean_with_sample_weight": "mean"}
_KERAS_PER_POSITION = {**_KERAS_MEAN, "sum": "sum", None: "none", "none": "none"}


def _keras_epsilon() -> float:
    keras = sys.modules.get("keras")
    return float(keras.config.epsilon()) if keras is not None else 1e-7


def _keras_kwargs(loss) -> dict:
    """A Keras loss's settings: ``get_config()`` and the wrapped function's keywords (Huber's delta)."""
    return {**dict(getattr(loss, "_fn_kwargs", {}) or {}), **loss.get_config()}


def _keras_axis(source: str, axis) -> int | None:
    """Keras's default class axis (-1) is the target framework's habit: ``axis=None``."""
    return None if axis in (-1, None) else int(axis)


# --- the rules: one per source class ------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    library: str  # "torch" | "keras" | "monai"
    cls: str
    target: str  # what it becomes, for the docs table
    notes: str
    convert: Callable[[Any, str, dict], Recipe]


RULES: dict[tuple[str, str], Rule] = {}


def rule(library: str, cls: str, target: str, notes: str = ""):
    def register(fn):
        RULES[(library, cls)] = Rule(library, cls, target, notes, fn)
        return fn

    return register


def _recipe(name: str, **params) -> Recipe:
    return Recipe(name, {k: v for k, v in params.items() if v != REGISTRY[name].defaults.get(k, object())})


# torch.nn -----------------------------------------------------------------------------------------


@rule("torch", "MSELoss", "mse(reduction)", "every reduction")
def _torch_mse(loss, src, opts):
    return _recipe("mse", reduction=_reduction(src, loss.reduction, _TORCH_REDUCTIONS))


@rule("torch", "L1Loss", "mae(reduction)", "every reduction")
def _torch_l1(loss, src, opts):
    return _recipe("mae", reduction=_reduction(src, loss.reduction, _TORCH_REDUCTIONS))


@rule("torch", "HuberLoss", "huber(delta, reduction)", "every reduction")
def _torch_huber(loss, src, opts):
    reduction = _reduction(src, loss.reduction, _TORCH_REDUCTIONS)
    return _recipe("huber", delta=float(loss.delta), reduction=reduction)


@rule("torch", "SmoothL1Loss", "huber(delta=beta) weighted 1/beta (combined); beta=1: huber; beta=0: mae",
      "SmoothL1Loss(beta) = HuberLoss(delta=beta) / beta")
def _torch_smooth_l1(loss, src, opts):
    beta, reduction = float(loss.beta), _reduction(src, loss.reduction, _TORCH_REDUCTIONS)
    if beta == 0.0:
        return _recipe("mae", reduction=reduction)
    if beta == 1.0:
        return _recipe("huber", reduction=reduction)
    huber = _recipe("huber", delta=beta, reduction=reduction)
    return Recipe("combined", terms={"huber": huber}, weights={"huber": 1.0 / beta})


@rule("torch", "BCELoss", 'bce(numerics="torch", reduction)',
      "torch clamps each log at -100 (no clipping); a one-number weight is weighted_bce(w, w)")
def _torch_bce(loss, src, opts):
    reduction = _reduction(src, loss.reduction, _TORCH_REDUCTIONS)
    w = _scalar(src, "weight", loss.weight,
                "a per-element weight tensor rescales each entry; lossplug's BCE weighs only the "
                "positive and negative terms (weighted_bce's pos_weight / neg_weight)")
    if w is None:
        return _recipe("bce", numerics="torch", reduction=reduction)
    return _recipe("weighted_bce", pos_weight=w, neg_weight=w, numerics="torch", reduction=reduction)


@rule("torch", "BCEWithLogitsLoss", "bce(from_logits=True) or weighted_bce(pos_weight=w*pw, neg_weight=w)",
      "pos_weight and weight must each be one number (or tensors of one repeated value)")
def _torch_bce_logits(loss, src, opts):
    reduction = _reduction(src, loss.reduction, _TORCH_REDUCTIONS)
    w = _scalar(src, "weight", loss.weight, "a per-element weight tensor rescales each entry; lossplug "
                "weighs only the positive and the negative term")
    pw = _scalar(src, "pos_weight", loss.pos_weight, "a pos_weight per class (broadcast along the last "
                 "axis) differs between classes; lossplug's pos_weight is one number")
    w, pw = 1.0 if w is None else w, 1.0 if pw is None else pw
    if w == 1.0 and pw == 1.0:
        return _recipe("bce", from_logits=True, reduction=reduction)
    return _recipe("weighted_bce", pos_weight=w * pw, neg_weight=w, from_logits=True, reduction=reduction)


def _class_weights(loss, src):
    w = _numbers(src, "weight", loss.weight)
    return None if w is None else tuple(w)


@rule("torch", "CrossEntropyLoss",
      'sparse_categorical_ce(from_logits=True, class_weights=weight, ignore_index, label_smoothing, '
      'numerics="torch")',
      "class-index targets; the weighted mean divides by the weights of the counted targets, as torch, "
      "and is NaN (0/0) where none counts (an all-ignored batch, a zero total weight); "
      'targets="probabilities": categorical_ce(from_logits=True, label_smoothing)')
def _torch_ce(loss, src, opts):
    if opts.get("targets", "labels") == "probabilities":  # port(..., targets="probabilities")
        if loss.weight is not None:
            _fail(src, "weight with probability targets", "torch divides the weighted sum by N there; "
                  "lossplug's categorical_ce divides by sum(w y)")
        return _recipe("categorical_ce", from_logits=True, label_smoothing=float(loss.label_smoothing),
                       reduction=_reduction(src, loss.reduction, _TORCH_REDUCTIONS))
    return _recipe(
        "sparse_categorical_ce", from_logits=True, class_weights=_class_weights(loss, src),
        ignore_index=int(loss.ignore_index), label_smoothing=float(loss.label_smoothing), numerics="torch",
        reduction=_reduction(src, loss.reduction, _TORCH_REDUCTIONS),
    )


@rule("torch", "NLLLoss",
      'sparse_categorical_ce(from_logits=True, class_weights=weight, ignore_index, numerics="torch")',
      "its input is log-probabilities (log_softmax's output), whose log-softmax is itself; NaN (0/0) "
      "where no target counts, as torch")
def _torch_nll(loss, src, opts):
    return _recipe(
        "sparse_categorical_ce", from_logits=True, class_weights=_class_weights(loss, src),
        ignore_index=int(loss.ignore_index), numerics="torch",
        reduction=_reduction(src, loss.reduction, _TORCH_REDUCTIONS),
    )


@rule("torch", "KLDivLoss",
      'kl_div(log_input=True, numerics="torch"); reduction "batchmean" -> "mean", "sum" -> "sum"',
      "input log q first, target p second; batchmean is the total over input.size(0), on (N, C), "
      "spatial (N, C, ...) and 1-D input alike (numerics='torch')")
def _torch_kl(loss, src, opts):
    if loss.log_target:
        _fail(src, "log_target=True", "lossplug's kl_div takes the target p as probabilities")
    if loss.reduction == "mean":
        _fail(src, "reduction='mean'", "torch divides the sum by every element (N * C * ...), which "
              "is not the KL divergence and depends on the class count; reduction='batchmean' (the "
              "total over the batch size) is ported")
    reduction = _reduction(src, loss.reduction, {"batchmean": "mean", "sum": "sum"})
    return _recipe("kl_div", log_input=True, numerics="torch", reduction=reduction)


@rule("torch", "PoissonNLLLoss", "poisson(log_input) with eps=1e-8", "full=True (Stirling term) is refused")
def _torch_poisson(loss, src, opts):
    if loss.full:
        _fail(src, "full=True", "lossplug's poisson has no Stirling term")
    reduction = _reduction(src, loss.reduction, _TORCH_REDUCTIONS)
    if loss.log_input:
        return _recipe("poisson", log_input=True, reduction=reduction)
    return _recipe("poisson", eps=float(loss.eps), reduction=reduction)


# keras.losses -------------------------------------------------------------------------------------


def _keras_mean(src, kw):
    return _reduction(src, kw.get("reduction"), _KERAS_MEAN)


_ELEMENTWISE_NOTE = "Keras averages the last axis first: only its mean reduction is lossplug's"


@rule("keras", "MeanSquaredError", "mse", _ELEMENTWISE_NOTE)
def _keras_mse(loss, src, opts):
    return _recipe("mse", reduction=_keras_mean(src, _keras_kwargs(loss)))


@rule("keras", "MeanAbsoluteError", "mae", _ELEMENTWISE_NOTE)
def _keras_mae(loss, src, opts):
    return _recipe("mae", reduction=_keras_mean(src, _keras_kwargs(loss)))


@rule("keras", "Huber", "huber(delta)", "delta is read from the loss (get_config omits it)")
def _keras_huber(loss, src, opts):
    kw = _keras_kwargs(loss)
    return _recipe("huber", delta=float(kw.get("delta", 1.0)), reduction=_keras_mean(src, kw))


@rule("keras", "LogCosh", "log_cosh", _ELEMENTWISE_NOTE)
def _keras_log_cosh(loss, src, opts):
    return _recipe("log_cosh", reduction=_keras_mean(src, _keras_kwargs(loss)))


@rule("keras", "BinaryCrossentropy", 'bce(from_logits, label_smoothing, eps=keras epsilon, numerics="keras")',
      "Keras clips p to [1e-7, 1 - 1e-7] (keras.config.epsilon()) and takes log(1 - clip(p)): a wrong "
      "p = 1 costs 16.118 in float64, 15.942 in float32")
def _keras_bce(loss, src, opts):
    kw = _keras_kwargs(loss)
    logits = bool(kw["from_logits"])
    return _recipe("bce", from_logits=logits, label_smoothing=float(kw["label_smoothing"]),
                   eps=_keras_epsilon(), numerics="lossplug" if logits else "keras",
                   reduction=_keras_mean(src, kw))


@rule("keras", "BinaryFocalCrossentropy",
      'focal(gamma, alpha if apply_class_balancing else None, from_logits, label_smoothing, '
      'numerics="keras")',
      "Keras uses alpha only with apply_class_balancing=True; its focal factor takes p unclipped, and "
      "on JAX and torch it clips the sigmoid of logits (TensorFlow: log space, numerics='lossplug')")
def _keras_binary_focal(loss, src, opts):
    kw = _keras_kwargs(loss)
    alpha = float(kw["alpha"]) if kw.get("apply_class_balancing") else None
    if alpha is not None and not 0 <= alpha <= 1:
        _fail(src, f"alpha={alpha}", "lossplug's focal alpha is a number in [0, 1]")
    logits = bool(kw["from_logits"])
    # Keras takes the sigmoid of logits and clips it, except on TensorFlow, whose BCE of a sigmoid's
    # output recovers the logits (log space, as lossplug's default)
    keras_numerics = not logits or sys.modules["keras"].backend.backend() != "tensorflow"
    return _recipe("focal", gamma=float(kw["gamma"]), alpha=alpha, from_logits=logits,
                   label_smoothing=float(kw["label_smoothing"]), eps=_keras_epsilon(),
                   numerics="keras" if keras_numerics else "lossplug", reduction=_keras_mean(src, kw))


@rule("keras", "CategoricalCrossentropy",
      'categorical_ce(from_logits, label_smoothing, axis, numerics="keras")',
      "Keras renormalises probabilities by their sum over the class axis before clipping")
def _keras_cce(loss, src, opts):
    kw = _keras_kwargs(loss)
    logits = bool(kw["from_logits"])
    return _recipe("categorical_ce", from_logits=logits, label_smoothing=float(kw["label_smoothing"]),
                   axis=_keras_axis(src, kw.get("axis")), eps=_keras_epsilon(),
                   numerics="lossplug" if logits else "keras",
                   reduction=_reduction(src, kw.get("reduction"), _KERAS_PER_POSITION))


@rule("keras", "SparseCategoricalCrossentropy",
      'sparse_categorical_ce(from_logits, ignore_index=ignore_class, axis, numerics="keras")',
      "ignored positions count in neither the sum nor the mean, as Keras's mask")
def _keras_scce(loss, src, opts):
    kw = _keras_kwargs(loss)
    logits = bool(kw["from_logits"])
    ignore = kw.get("ignore_class")
    return _recipe("sparse_categorical_ce", from_logits=logits, axis=_keras_axis(src, kw.get("axis")),
                   ignore_index=None if ignore is None else int(ignore), eps=_keras_epsilon(),
                   numerics="lossplug" if logits else "keras",
                   reduction=_reduction(src, kw.get("reduction"), _KERAS_PER_POSITION))


@rule("keras", "CategoricalFocalCrossentropy",
      'categorical_focal(gamma, alpha, from_logits, label_smoothing, axis, numerics="keras")',
      "a scalar alpha scales every class; Keras takes the softmax of logits, renormalises and clips")
def _keras_cfocal(loss, src, opts):
    kw = _keras_kwargs(loss)
    alpha = _numbers(src, "alpha", kw["alpha"])
    if alpha is not None:
        alpha = alpha[0] if len(alpha) == 1 and _is_scalar(kw["alpha"]) else tuple(alpha)
    return _recipe("categorical_focal", gamma=float(kw["gamma"]), alpha=alpha,
                   from_logits=bool(kw["from_logits"]), label_smoothing=float(kw["label_smoothing"]),
                   axis=_keras_axis(src, kw.get("axis")), eps=_keras_epsilon(), numerics="keras",
                   reduction=_reduction(src, kw.get("reduction"), _KERAS_PER_POSITION))


def _is_scalar(v) -> bool:
    return isinstance(v, int | float) or getattr(v, "ndim", 1) == 0


@rule("keras", "KLDivergence", 'kl_div(eps=keras epsilon, numerics="keras")',
      "Keras clips the target p to [eps, 1] too; the class axis is the last")
def _keras_kl(loss, src, opts):
    kw = _keras_kwargs(loss)
    return _recipe("kl_div", eps=_keras_epsilon(), numerics="keras",
                   reduction=_reduction(src, kw.get("reduction"), _KERAS_PER_POSITION))


@rule("keras", "Poisson", "poisson(eps=keras epsilon)", _ELEMENTWISE_NOTE)
def _keras_poisson(loss, src, opts):
    kw = _keras_kwargs(loss)
    return _recipe("poisson", eps=_keras_epsilon(), reduction=_keras_mean(src, kw))


@rule("keras", "CosineSimilarity", 'cosine_similarity(axis, eps=keras epsilon, numerics="keras")',
      "Keras returns -cos; lossplug's default is 1 - cos (numerics='keras' gives -cos)")
def _keras_cosine(loss, src, opts):
    kw = _keras_kwargs(loss)
    return _recipe("cosine_similarity", axis=_keras_axis(src, kw.get("axis")), eps=_keras_epsilon(),
                   numerics="keras", reduction=_reduction(src, kw.get("reduction"), _KERAS_PER_POSITION))


@rule("keras", "Hinge", "hinge", _ELEMENTWISE_NOTE)
def _keras_hinge(loss, src, opts):
    return _recipe("hinge", reduction=_keras_mean(src, _keras_kwargs(loss)))


@rule("keras", "SquaredHinge", "hinge(squared=True)", _ELEMENTWISE_NOTE)
def _keras_squared_hinge(loss, src, opts):
    return _recipe("hinge", squared=True, reduction=_keras_mean(src, _keras_kwargs(loss)))


def _keras_overlap_axis(src, kw):
    if kw.get("axis") is not None:
        _fail(src, f"axis={kw['axis']!r}", "only axis=None (one value over the whole batch) is ported; "
              "an axis tuple's meaning depends on the input's rank")


_KERAS_BATCH = {**_KERAS_MEAN, "sum": "mean", None: "mean", "none": "mean"}  # one value for the batch


@rule("keras", "Dice", 'dice(squared=False, smooth=keras epsilon, aggregation="batch", numerics="keras")',
      "Keras: 2I / (sum y_pred + sum y + 1e-7) over the whole batch, the epsilon in the denominator only")
def _keras_dice(loss, src, opts):
    kw = _keras_kwargs(loss)
    _keras_overlap_axis(src, kw)
    return _recipe("dice", squared=False, smooth=_keras_epsilon(), aggregation="batch", numerics="keras",
                   reduction=_reduction(src, kw.get("reduction"), _KERAS_BATCH))


@rule("keras", "Tversky", 'tversky(alpha=beta, beta=alpha, smooth=keras epsilon, aggregation="batch", '
      'numerics="keras")', "Keras calls sum((1 - y_pred) y) its false positives: its (alpha, beta) is "
      "lossplug's (beta, alpha)")
def _keras_tversky(loss, src, opts):
    kw = _keras_kwargs(loss)
    _keras_overlap_axis(src, kw)
    return _recipe("tversky", alpha=float(kw["beta"]), beta=float(kw["alpha"]), smooth=_keras_epsilon(),
                   aggregation="batch", numerics="keras",
                   reduction=_reduction(src, kw.get("reduction"), _KERAS_BATCH))


# monai.losses -------------------------------------------------------------------------------------


def _monai_layout(loss, src, *, squared_ok=True) -> dict:
    """The settings MONAI's Dice, Tversky and generalized Dice share, as lossplug parameters."""
    if getattr(loss, "other_act", None) is not None:
        _fail(src, "other_act", "lossplug applies only sigmoid or softmax")
    if getattr(loss, "soft_label", False):
        _fail(src, "soft_label=True", "MONAI's soft-label intersection (|x| + |y| - |x - y|)/2 is not "
              "lossplug's")
    if getattr(loss, "ignore_index", None) is not None:
        _fail(src, f"ignore_index={loss.ignore_index}", "MONAI's masking of ignored voxels is not ported")
    if getattr(loss, "class_weight", None) is not None:
        _fail(src, "weight", "MONAI takes the plain mean of w_c * loss_c; lossplug divides by sum(w_c)")
    nr, dr = float(loss.smooth_nr), float(loss.smooth_dr)
    if nr != dr:
        _fail(src, f"smooth_nr={nr} and smooth_dr={dr}", "lossplug adds one smoothing to both")
    params = {"smooth": nr, "include_background": bool(loss.include_background),
              "aggregation": "batch" if loss.batch else "sample",
              "numerics": "monai"}  # on one channel MONAI ignores softmax and include_background=False
    if loss.sigmoid or loss.softmax:
        params.update(from_logits=True, activation="sigmoid" if loss.sigmoid else "softmax")
    return params


_MONAI_MEAN = {"mean": "mean"}
_ONE_CHANNEL_NOTE = ("on one channel softmax=True and include_background=False are ignored, and a zero "
                     "denominator gives NaN, as MONAI (numerics='monai')")


@rule("monai", "DiceLoss", 'dice(per_class=True, squared=squared_pred, smooth, numerics="monai") or, with '
      "jaccard=True, jaccard(smooth=smooth/2)", "to_onehot_y: lossplug takes the label map without its "
      "channel, (N, H, W); " + _ONE_CHANNEL_NOTE)
def _monai_dice(loss, src, opts):
    params = _monai_layout(loss, src)
    reduction = _reduction(src, loss.reduction, _MONAI_MEAN)
    if loss.jaccard:
        if loss.squared_pred:
            _fail(src, "jaccard=True with squared_pred=True",
                  "lossplug's jaccard sums y_pred, not its square")
        params["smooth"] /= 2.0  # 1 - (2I + s)/(2(D - I) + s) = 1 - (I + s/2)/(D - I + s/2)
        return _recipe("jaccard", per_class=True, **params, reduction=reduction)
    return _recipe("dice", per_class=True, squared=bool(loss.squared_pred), **params, reduction=reduction)


@rule("monai", "TverskyLoss", 'tversky(alpha, beta, per_class=True, smooth, numerics="monai")',
      "one Tversky index per sample and class, averaged, as MONAI; " + _ONE_CHANNEL_NOTE)
def _monai_tversky(loss, src, opts):
    params = _monai_layout(loss, src)
    return _recipe("tversky", alpha=float(loss.alpha), beta=float(loss.beta), per_class=True, **params,
                   reduction=_reduction(src, loss.reduction, _MONAI_MEAN))


@rule("monai", "GeneralizedDiceLoss", 'generalized_dice(weight_type=w_type, smooth, numerics="monai")',
      "a class absent from y takes the largest weight of the present ones, as MONAI; " + _ONE_CHANNEL_NOTE)
def _monai_gdl(loss, src, opts):
    params = _monai_layout(loss, src)
    w_type = str(getattr(loss.w_type, "value", loss.w_type))
    return _recipe("generalized_dice", weight_type=w_type, **params,
                   reduction=_reduction(src, loss.reduction, {"mean": "mean", "sum": "sum"}))


@rule("monai", "FocalLoss",
      "focal(gamma, alpha, from_logits=True); use_softmax: categorical_focal(alpha_c / C)",
      "use_softmax averages over the class channel and its alpha means [1 - a, a, a, ...]: port(..., "
      "num_classes=C)")
def _monai_focal(loss, src, opts):
    if loss.class_weight is not None:
        _fail(src, "weight", "MONAI's per-class weight is not ported")
    if not loss.include_background:
        _fail(src, "include_background=False", "MONAI drops channel 0 before the activation")
    if getattr(loss, "ignore_index", None) is not None:
        _fail(src, f"ignore_index={loss.ignore_index}", "MONAI's masking of ignored voxels is not ported")
    alpha = None if loss.alpha is None else float(loss.alpha)
    gamma = float(loss.gamma)
    if not loss.use_softmax:
        if loss.to_onehot_y:
            _fail(src, "to_onehot_y=True without use_softmax", "lossplug's binary focal takes masks shaped "
                  "like y_pred")
        return _recipe("focal", gamma=gamma, alpha=alpha, from_logits=True,
                       reduction=_reduction(src, loss.reduction, _TORCH_REDUCTIONS))
    c = opts.get("num_classes")
    if c is None:
        _fail(src, "use_softmax=True", "MONAI averages over the class channel too, so the port needs the "
              "number of classes: lossplug.port(loss, framework, num_classes=C)")
    if c == 1 and loss.to_onehot_y:
        _fail(src, "to_onehot_y=True with use_softmax=True on one channel (num_classes=1)",
              "MONAI ignores to_onehot_y there and takes the label channel as the mask (its softmax of "
              "one channel is 1, so its loss is 0 for any input); lossplug's to_onehot_y port takes "
              "the label map")
    base = [1.0] * c if alpha is None else [1.0 - alpha] + [alpha] * (c - 1)
    return _recipe("categorical_focal", gamma=gamma, alpha=tuple(a / c for a in base), from_logits=True,
                   reduction=_reduction(src, loss.reduction, _MONAI_MEAN))


@rule("monai", "DiceCELoss", 'combined: dice (as DiceLoss) + sparse_categorical_ce (to_onehot_y) or '
      'categorical_ce (one-hot targets), numerics="monai", weights lambda_dice, lambda_ce',
      "with to_onehot_y, y_true is the label map (N, H, W); on one channel the CE term is BCE with logits "
      "(and softmax, include_background=False are ignored), as MONAI, whatever sigmoid/softmax says")
def _monai_dice_ce(loss, src, opts):
    dice = _monai_dice(loss.dice, src, opts)
    ce_src = loss.cross_entropy
    if ce_src.weight is not None:
        _fail(src, "weight", "MONAI's Dice takes the plain mean of w_c * loss_c; lossplug divides by "
              "sum(w_c)")
    ls = float(ce_src.label_smoothing)
    # MONAI's CE term takes the raw input (whatever dice's sigmoid/softmax), and is BCE with logits
    # on one channel: numerics="monai" switches by the channel count at call time
    name = "sparse_categorical_ce" if loss.dice.to_onehot_y else "categorical_ce"
    ce = _recipe(name, from_logits=True, label_smoothing=ls, numerics="monai")
    return Recipe("combined", terms={"dice": dice, "ce": ce},
                  weights={"dice": float(loss.lambda_dice), "ce": float(loss.lambda_ce)})


# --- the entry points ---------------------------------------------------------------------------


def _library(cls: type) -> str | None:
    module = cls.__module__
    for library, prefix in (("torch", "torch.nn"), ("keras", "keras"), ("monai", "monai.losses")):
        if module == prefix or module.startswith(prefix + "."):
            return library
    return None


def describe(loss) -> str:
    """``torch.nn.CrossEntropyLoss`` for a source loss object (its library's public path)."""
    cls = type(loss)
    library = _library(cls)
    return f"{SOURCES.get(library, cls.__module__)}.{cls.__qualname__}"


def recipe(loss, **options) -> Recipe:
    """The :class:`Recipe` of a source loss: what lossplug loss, with which parameters, reproduces it."""
    cls = type(loss)
    library = _library(cls)
    found = RULES.get((library, cls.__qualname__)) if library else None
    if found is None:
        for base in cls.__mro__[1:]:
            base_library = _library(base)
            if base_library and (base_library, base.__qualname__) in RULES:
                raise PortError(
                    f"lossplug.port: {cls.__module__}.{cls.__qualname__} subclasses "
                    f"{SOURCES[base_library]}.{base.__qualname__}; its forward may compute something else, "
                    "so it is not ported (port the base class's object)"
                )
        known = ", ".join(f"{SOURCES[lib]}.{name}" for lib, name in RULES)
        raise PortError(f"lossplug.port: cannot port {cls.__module__}.{cls.__qualname__}; it ports {known}")
    out = found.convert(loss, describe(loss), options)
    return Recipe(out.name, out.params, out.terms, out.weights, source=describe(loss))


def port(loss, framework: str = "numpy", **options):
    """The lossplug loss for ``framework`` that gives ``loss``'s own number.

    ``loss`` is a torch.nn, Keras 3 or MONAI loss object (``lossplug.tools.port.RULES`` lists them);
    the result is a NumPy function (``framework="numpy"``), a ``torch.nn.Module`` or a Keras loss,
    computing on data laid out by that framework's habit (class axis 1 in torch, last in Keras
    and NumPy). ``options``: ``num_classes=C`` for MONAI's ``FocalLoss(use_softmax=True)``;
    ``targets="probabilities"`` for torch's ``CrossEntropyLoss`` on class probabilities (default
    ``"labels"``, class indices).
    A setting that lossplug cannot reproduce exactly raises a ``ValueError`` naming it.
    """
    unknown = set(options) - {"num_classes", "targets"}
    if unknown:
        raise TypeError(
            f"lossplug.port got unknown option(s) {', '.join(sorted(unknown))}; it takes num_classes, targets"
        )
    if options.get("targets", "labels") not in ("labels", "probabilities"):
        raise ValueError(f"lossplug.port: targets={options['targets']!r}; it is 'labels' or 'probabilities'")
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    return recipe(loss, **options).build(framework)


def porting_table() -> str:
    """The Markdown table of ``docs/porting.md``: one row per rule, source -> lossplug."""
    rows = ["| source | lossplug | what it reproduces |", "|---|---|---|"]
    for r in RULES.values():
        rows.append(f"| `{SOURCES[r.library]}.{r.cls}` | `{r.target}` | {r.notes} |".replace("| |", "|  |"))
    return "\n".join(rows) + "\n"


__all__ = ["port", "recipe", "Recipe", "RULES", "PortError", "porting_table", "describe"]


# --- the command line: `lossplug port "<expression>" --to keras` ---------------------------------

_ROOTS = {"torch.nn": "torch", "nn": "torch", "keras.losses": "keras", "monai.losses": "monai"}
_MODULES = {"torch": "torch.nn", "keras": "keras.losses", "monai": "monai.losses"}


def _dotted(node) -> str | None:
    import ast

    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _argument(node, library: str):
    """A literal, or ``torch.tensor(<literal>)`` for torch/MONAI weights (made float64)."""
    import ast

    if isinstance(node, ast.Call) and _dotted(node.func) == "torch.tensor" and library in ("torch", "monai"):
        if len(node.args) != 1 or node.keywords:
            raise ValueError("torch.tensor(...) takes one literal list or number here")
        import torch

        return torch.tensor(ast.literal_eval(node.args[0]), dtype=torch.float64)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(
            f"argument {ast.unparse(node)!r} is not a literal (numbers, strings, lists, True/False/None, "
            "or torch.tensor([...]))"
        ) from None


def parse_source(text: str):
    """Build the loss object a command line names: ``torch.nn.HuberLoss(delta=0.5)``.

    Only a call of a ported class of ``torch.nn`` (or ``nn``), ``keras.losses`` or ``monai.losses``
    with literal arguments is accepted; nothing else of the text is evaluated. Only the source's
    module is imported.
    """
    import ast
    import importlib

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{text!r} is not a Python expression: {exc.msg}") from None
    call = tree.body
    name = _dotted(call.func) if isinstance(call, ast.Call) else None
    root, _, cls = (name or "").rpartition(".")
    library = _ROOTS.get(root)
    if library is None or (library, cls) not in RULES:
        known = ", ".join(f"{SOURCES[lib]}.{c}(...)" for lib, c in RULES)
        raise ValueError(f"{text!r} is not a call of a loss lossplug ports; write one of {known}")
    args = [_argument(a, library) for a in call.args]
    kwargs = {k.arg: _argument(k.value, library) for k in call.keywords if k.arg is not None}
    if len(kwargs) != len(call.keywords):
        raise ValueError("**kwargs are not accepted; write each setting as name=value")
    return getattr(importlib.import_module(_MODULES[library]), cls)(*args, **kwargs)


def _kind(r: Recipe, source) -> str:
    """The input kind of ``lossplug.tools.inputs`` a random batch for this port needs."""
    if r.terms is not None:
        return _kind(r.terms.get("dice") or next(iter(r.terms.values())), getattr(source, "dice", source))
    if r.name in ("dice", "tversky", "jaccard", "generalized_dice", "lovasz"):
        return "label_map" if getattr(source, "to_onehot_y", False) else "masks"
    onehot_y = getattr(source, "to_onehot_y", False)
    if r.name == "sparse_categorical_ce" or (r.name == "categorical_focal" and onehot_y):
        return "labels"
    return REGISTRY[r.name].inputs


def _batch(r: Recipe, source, library: str, seed: int):
    """``(source inputs, lossplug inputs per framework)`` of one random batch, each in its habit."""
    import numpy as np

    from lossplug.tools import inputs

    kind = _kind(r, source)
    params = dict((r.terms.get("dice") or next(iter(r.terms.values()))).params if r.terms else r.params)
    if r.terms is not None or type(source).__name__ == "FocalLoss":
        params["from_logits"] = True
    cls = type(source).__name__
    shape = {"label_map": (2, 3, 4, 4), "masks": (2, 3, 4, 4)}
    rng = np.random.default_rng(seed)
    y_pred, y_true = inputs.make(kind, params, shape.get(kind), rng)  # torch's layout: class axis 1
    if cls == "NLLLoss":
        y_pred = y_pred - np.log(np.exp(y_pred).sum(axis=1, keepdims=True))  # log-probabilities
    last = lambda a: np.moveaxis(a, 1, -1) if a.ndim == y_pred.ndim and a.ndim > 2 else a  # noqa: E731
    class_last = (last(y_pred), last(y_true))
    ours = {"torch": (y_pred, y_true), "numpy": class_last, "keras": class_last}
    src = class_last if library == "keras" else (y_pred, y_true)
    if library == "monai" and kind in ("label_map", "labels"):
        src = (y_pred, y_true[:, None])
    return kind, src, ours


def _value(framework: str, fn, y_pred, y_true) -> float:
    import numpy as np

    if framework == "torch":
        import torch

        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return float(fn(t(y_pred), t(y_true)))
    if framework == "keras":
        import keras

        value = fn(keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred))
        return float(keras.ops.convert_to_numpy(value))
    return float(fn(y_pred, y_true))


def cli(text: str, framework: str, seed: int = 0, num_classes: int | None = None, out=None) -> int:
    """``lossplug port``: print the ported code, its YAML and both numbers; 0 if they agree, else 1."""
    out = out or sys.stdout
    source = parse_source(text)
    library = _library(type(source))
    options = {} if num_classes is None else {"num_classes": num_classes}
    r = recipe(source, **options)
    kind, src, ours = _batch(r, source, library, seed)
    loss = r.build(framework)
    expected = _value("keras" if library == "keras" else "torch", source, *src)
    got = _value(framework, loss, *ours[framework])
    float32 = library == "keras" or framework == "keras"
    tol = 2e-5 if float32 else 1e-6
    diff = abs(got - expected) / max(abs(expected), 1e-12)
    imports = {"numpy": "import functools\n\nimport lossplug.numpy", "torch": "import lossplug.torch",
               "keras": "import lossplug.keras"}[framework]
    yp, yt = ours[framework]
    print(f"# {describe(source)}: {text.strip()}", file=out)
    print(f"{imports}\n\nloss = {r.code(framework)}" if not r.code(framework).startswith("loss =")
          else f"{imports}\n\n{r.code(framework)}", file=out)
    print("\n# Hydra: an entry of the `loss` group (conf/loss/<name>.yaml)", file=out)
    print(r.yaml(framework), file=out, end="")
    print(f"\n# a random batch ({kind}, seed {seed}): y_pred {tuple(yp.shape)}, y_true {tuple(yt.shape)} "
          f"in {framework}'s layout", file=out)
    print(f"source   {describe(source)}: {expected!r}", file=out)
    print(f"lossplug {framework}: {got!r}", file=out)
    same = diff <= tol or expected == got or (expected != expected and got != got)  # NaN: both
    print(f"relative difference {diff:.2e} ({'within' if same else 'OVER'} {tol:g})", file=out)
    return 0 if same else 1


TABLE_START = "<!-- porting table: generated by lossplug.tools.port.porting_table(); do not edit -->"
TABLE_END = "<!-- end of the porting table -->"


def write_docs(path) -> bool:
    """Rewrite the table between the markers of ``docs/porting.md``; True if it changed."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    new = f"{head}{TABLE_START}\n{porting_table()}{TABLE_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m lossplug.tools.port docs/porting.md
    print("rewrote" if write_docs(sys.argv[1]) else "unchanged", sys.argv[1])
