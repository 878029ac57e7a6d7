"""What every framework shares around a formula: input checks, the class axis and the reduction.

``evaluate`` is the single path from ``(y_pred, y_true)`` to a loss value; the NumPy functions,
torch modules and Keras classes are thin adapters around it.
"""

from __future__ import annotations

import functools
import operator

from lossplug._spec import LossSpec
from lossplug.core.switch import Switch
from lossplug.formulas import division

VALUE_CHECKS = Switch()


def value_checks(enabled: bool):
    """Turn the data-dependent input checks (probability ranges, labels) on or off.

    They cost one small device-to-host sync per call; shape and parameter checks always run.
    Usable as a plain call or as a context manager that restores the previous setting::

        with lossplug.value_checks(False):
            trainer.fit(model)
    """
    return VALUE_CHECKS.set(enabled)


# --- the class axis -----------------------------------------------------------------------------


def resolve_axis(axis, ndim: int, framework: str) -> int:
    """The class axis as a non-negative int: torch's dim 1 (0 for 1-D), else the last axis."""
    if axis is None:
        axis = (1 if ndim >= 2 else 0) if framework == "torch" else -1
    if not -ndim <= axis < ndim:
        raise ValueError(f"class axis {axis} is out of range for y_pred with {ndim} dimension(s)")
    return axis % ndim


# --- input checks -------------------------------------------------------------------------------


def _shape_error(spec, y_pred_shape, y_true_shape, expected, axis=None):
    hint = ""
    if axis is not None and len(y_true_shape) == len(y_pred_shape) and y_pred_shape[axis] > 1 and (
        y_true_shape == y_pred_shape[:axis] + (1,) + y_pred_shape[axis + 1:]
    ):  # MONAI's habit: a label map with a channel axis of 1 (to_onehot_y=True)
        hint = f"; a label map has no class axis: squeeze axis {axis} of y_true"
    return ValueError(
        f"{spec.class_name}: y_pred has shape {y_pred_shape} and y_true has shape {y_true_shape}; "
        f"y_true must have shape {expected} (lossplug never broadcasts){hint}"
    )


def check_shapes(spec: LossSpec, xp, y_pred, y_true, params, axis):
    """Raise a ``ValueError`` naming both shapes unless ``y_true`` fits ``y_pred``.

    Returns ``y_true``, with a trailing size-1 axis squeezed off integer labels whose class axis
    is the last one (Keras's habit of ``(N, 1)`` labels).
    """
    ps, ts = tuple(xp.shape(y_pred)), tuple(xp.shape(y_true))
    if spec.targets == "same" and ts != ps:
        raise _shape_error(spec, ps, ts, ps)
    if axis is None:
        return y_true
    if spec.name not in ("dice", "tversky", "jaccard") and len(ps) == 0:
        raise ValueError(f"{spec.class_name}: y_pred must have a class axis; got a scalar")
    label_shape = ps[:axis] + ps[axis + 1:]
    if spec.targets == "labels":
        if ts == label_shape + (1,) and axis == len(ps) - 1:
            y_true, ts = xp.squeeze(y_true, -1), label_shape
        if ts != label_shape:
            raise _shape_error(spec, ps, ts, f"{label_shape} (y_pred without class axis {axis})", axis)
    if spec.targets == "same_or_labels" and ts != ps and ts != label_shape:
        raise _shape_error(spec, ps, ts, f"{ps} or the label map {label_shape}", axis)
    weights = params.get("class_weights")
    if weights is not None and len(weights) != ps[axis]:
        raise ValueError(
            f"{spec.class_name}: class_weights has {len(weights)} entries but y_pred has "
            f"{ps[axis]} classes along axis {axis}"
        )
    if params.get("per_class") and len(ps) < 2:
        raise ValueError(f"{spec.class_name}: per_class=True needs y_pred with a class axis")
    if spec.name == "generalized_dice" and len(ps) < 2:
        raise ValueError(f"{spec.class_name}: y_pred needs a class axis (the weights are per class)")
    return y_true


def _range_error(spec, what, lo, hi, allowed):
    return ValueError(
        f"{spec.class_name}: {what} must lie in {allowed}; found values from {lo:g} to {hi:g}"
    )


def check_values(spec: LossSpec, xp, y_pred, y_true, params, axis, ranges=None):
    """Data-dependent checks, run only on concrete (eager) tensors, before anything is computed.

    ``ranges`` holds the ``(min, max)`` of ``"y_pred"`` and ``"y_true"`` where a derived kernel took
    them in its own pass (``y_true``'s with ``ignore_index`` entries counted as 0); the rest are
    taken here.
    """
    if not (VALUE_CHECKS.on and xp.is_concrete(y_pred)) or not has_value_checks(spec, params):
        return
    if 0 in xp.shape(y_pred):  # an empty batch has no values to check
        return
    known = ranges or {}
    if spec.checks:
        return _check_own_values(spec, xp, y_pred, y_true, params, known)
    ignore = params.get("ignore_index")

    def true_range():
        if "y_true" in known:
            return known["y_true"]
        return xp.minmax(y_true if ignore is None else xp.where(y_true == ignore, 0 * y_true, y_true))

    def pred_range():
        return known["y_pred"] if "y_pred" in known else xp.minmax(y_pred)

    def nonintegral():
        return known["nonintegral"] if "nonintegral" in known else xp.any_nonintegral(y_true)

    # Comparisons are written so that NaN fails them: `not (lo >= 0)` is True for NaN.
    if params.get("log_input"):
        lo, hi = pred_range()
        if not hi <= 0:
            raise _range_error(spec, "y_pred (log-probabilities, log_input=True)", lo, hi, "(-inf, 0]")
    elif not params["from_logits"]:
        lo, hi = pred_range()
        if not (lo >= 0 and hi <= 1):
            error = _range_error(spec, "y_pred (probabilities, from_logits=False)", lo, hi, "[0, 1]")
            if lo == lo and hi == hi:  # finite values outside [0, 1] (not NaN): they look like logits
                error = ValueError(
                    f"{error}; these look like logits: pass from_logits=True to "
                    f"{spec.class_name} (it then applies the sigmoid or softmax itself)"
                )
            raise error

    is_labels = len(xp.shape(y_true)) != len(xp.shape(y_pred))
    if is_labels:
        if nonintegral():
            raise ValueError(
                f"{spec.class_name}: y_pred has shape {tuple(xp.shape(y_pred))} and y_true has shape "
                f"{tuple(xp.shape(y_true))}, one axis fewer, so y_true holds class labels, and "
                "labels in y_true must be integers; found non-integer values (a mask or one-hot "
                "target must have y_pred's shape)"
            )
        num_classes = xp.shape(y_pred)[axis]
        top = label_top(spec, params, num_classes)  # one channel: 0/1 where it is binary
        lo, hi = true_range()
        if not (lo >= 0 and hi < top):
            bad = hi if lo >= 0 else lo
            raise ValueError(
                f"{spec.class_name}: label {bad:g} is out of range; y_pred has {num_classes} "
                f"class(es) along axis {axis}, so labels must be in [0, {top - 1}]"
                + ("" if ignore is None else f" or equal ignore_index={ignore}")
            )
        return
    lo, hi = true_range()
    if not (lo >= 0 and hi <= 1):
        raise _range_error(spec, "y_true (targets)", lo, hi, "[0, 1]")


def range_checks(spec: LossSpec, params, labels: bool):
    """A call plan's form of ``check_values`` where it reads only ranges: ``check(xp, y_pred,
    y_true)``, true where the inputs pass (``check_values`` then has nothing to say; where it is
    false, ``check_values`` names the problem). ``None`` where the checks are more than two ranges
    (labels, ``spec.checks``)."""
    if spec.checks or labels or not has_value_checks(spec, params):
        return None
    pred = _pred_range(params)

    def check(xp, y_pred, y_true):  # (every call of a plan's route: no function of its own per range)
        if not (VALUE_CHECKS.on and xp.is_concrete(y_pred)) or 0 in xp.shape(y_pred):
            return True
        lo, hi = xp.minmax(y_true)
        if not (lo >= 0.0 and hi <= 1.0):  # (False for NaN)
            return False
        if pred is None:
            return True
        lo, hi = xp.minmax(y_pred)
        return lo >= pred[0] and hi <= pred[1]

    return check


def _pred_range(params):
    """The range the checks ask of ``y_pred`` beside ``from_logits``: ``(-inf, 0]`` for
    log-probabilities, ``[0, 1]`` for probabilities, ``None`` for logits."""
    if params.get("log_input"):
        return -float("inf"), 0.0
    return None if params["from_logits"] else (0.0, 1.0)


def has_value_checks(spec: LossSpec, params) -> bool:
    """Whether ``check_values`` reads the data: the losses with ``from_logits`` and ``spec.checks``."""
    return "from_logits" in params or bool(spec.checks)


def _check_own_values(spec: LossSpec, xp, y_pred, y_true, params, known):
    """The checks of the losses without ``from_logits`` (``spec.checks``), on the kernel's ranges
    where it took them (``known``), else on the data.

    ``"counts"`` (Poisson): counts ``y_true >= 0``, and rates ``y_pred >= 0`` unless ``log_input``;
    ``"signs"`` (hinge): integer labels all in {0, 1} or all in {-1, 1} (a 0 beside a -1 is a
    mix of the two conventions); ``"finite"`` (cosine similarity): no NaN or infinity in either
    (an infinite component makes the norm infinite and the cosine inf/inf).
    """
    def pred_range():
        return known["y_pred"] if "y_pred" in known else xp.minmax(y_pred)

    lo, hi = known["y_true"] if "y_true" in known else xp.minmax(y_true)
    name = spec.class_name
    if spec.checks == "counts":
        if not lo >= 0:  # NaN fails too
            raise _range_error(spec, "y_true (counts)", lo, hi, "[0, inf)")
        if not params.get("log_input"):
            p_lo, p_hi = pred_range()
            if not p_lo >= 0:
                raise ValueError(
                    f"{_range_error(spec, 'y_pred (rates, log_input=False)', p_lo, p_hi, '[0, inf)')}"
                    f"; a model that outputs a log-rate needs {name}(log_input=True)"
                )
    elif spec.checks == "signs":
        nonintegral = known["nonintegral"] if "nonintegral" in known else xp.any_nonintegral(y_true)
        if nonintegral or not (lo >= -1 and hi <= 1):
            raise ValueError(
                f"{name}: labels in y_true must be all in {{0, 1}} or all in {{-1, 1}}; found values "
                f"from {lo:g} to {hi:g}" + (", not all integers" if nonintegral and lo == lo else "")
            )
        if lo < 0 and xp.minmax(xp.abs(y_true))[0] < 1:  # one pass more, only for -1/1 labels
            raise ValueError(
                f"{name}: labels in y_true must be all in {{0, 1}} or all in {{-1, 1}}; found -1 and 0 "
                "together (0 means the negative class only in the 0/1 convention)"
            )
    elif spec.checks == "finite":
        for what, (a, b) in (("y_pred", pred_range()), ("y_true", (lo, hi))):
            if not (-float("inf") < a and b < float("inf")):  # NaN fails too
                raise ValueError(f"{name}: {what} must be finite (no NaN or inf, the cosine would be "
                                 f"NaN); found values from {a:g} to {b:g}")


def ranges_needed(spec: LossSpec, params) -> str:
    """Which input ranges ``check_values`` reads: ``""`` (none), ``"y_true"`` or ``"both"``.

    A compiled kernel takes them in its own pass (``lossplug.frameworks.derived``).
    """
    if spec.checks:
        counts_only = spec.checks == "signs" or (spec.checks == "counts" and params.get("log_input"))
        return "y_true" if counts_only else "both"
    if "from_logits" not in params:
        return ""
    return "y_true" if params["from_logits"] else "both"


def ranges_from(stats) -> dict:
    """``check_values``' ``ranges`` from a kernel's ``[min y_true, max y_true, non-integer y_true,
    (min y_pred, max y_pred)]``."""
    v = stats.tolist()
    out = {"y_true": (v[0], v[1]), "nonintegral": bool(v[2])}
    if len(v) == 5:
        out["y_pred"] = (v[3], v[4])
    return out


# --- reduction ----------------------------------------------------------------------------------


def safe_ratio(xp, num, den):
    positive = den > 0
    return xp.where(positive, num / xp.where(positive, den, 1.0 + 0.0 * den), 0.0 * num)


def mean_ratio(xp, num, den, numerics="lossplug"):
    """A weighted mean's ``num / den``: 0 where ``den <= 0`` (lossplug's and Keras's rule), or with
    ``numerics="torch"`` torch's plain division (0/0 = NaN: torch's mean of an all-ignored batch)."""
    return division(xp, num, den) if numerics == "torch" else safe_ratio(xp, num, den)


def reduce(spec: LossSpec, xp, loss, weight, reduction: str, framework: str, numerics="lossplug"):
    """Apply ``reduction`` to a formula's ``(loss, weight)``.

    "mean" is the formula (a weighted mean where ``weight`` is given; 0 if every target is
    ignored, NaN with ``numerics="torch"``, as torch's 0/0), "sum" the plain sum, "none" the
    formula's own values: one per position for the class
    losses (``y_pred``'s shape without the class axis, as ``torch.nn`` and ``keras.losses``), one
    per sample for Dice (or one for the batch), one per element for the elementwise losses. Keras
    reduces through ``keras_reduce`` (sample weights and masks); here ``framework="keras"`` gives
    its result without either.
    """
    if framework == "keras":
        return keras_reduce(spec, xp, loss, weight, reduction, numerics=numerics)
    if reduction == "sum":
        return xp.sum(loss)
    if reduction == "mean":
        return xp.mean(loss) if weight is None else mean_ratio(xp, xp.sum(loss), xp.sum(weight), numerics)
    return loss


KERAS_REDUCTIONS = {"sum_over_batch_size": "mean", None: "none"}
"""Keras 3's names for lossplug's reductions; ``"mean_with_sample_weight"`` is Keras's own."""


def keras_reduction(reduction):
    """lossplug's name for a Keras reduction name (``"mean_with_sample_weight"`` stays itself)."""
    return KERAS_REDUCTIONS.get(reduction, reduction)


def _fits(shape, target) -> bool:
    """Whether ``shape`` equals ``target`` where both are known (``None`` dims match anything)."""
    return len(shape) == len(target) and all(
        a is None or b is None or a == b for a, b in zip(shape, target, strict=True)
    )


def _align(spec, xp, x, values, what):
    """``x`` (sample weights or a mask) shaped to multiply ``values``, or a ``ValueError``.

    Keras's rule (a trailing axis of size 1 squeezed off), and per-sample ``(N,)`` weights spread
    over the positions of each sample (``(N, T)`` values of a sequence); a scalar multiplies all.
    """
    xs, vs = tuple(xp.shape(x)), tuple(xp.shape(values))
    if len(xs) == len(vs) + 1 and xs[-1] == 1:
        x, xs = xp.squeeze(x, -1), xs[:-1]
    if len(xs) < len(vs) and _fits(xs, vs[:len(xs)]) and xs:
        x = xp.reshape(x, tuple(-1 if d is None else d for d in xs) + (1,) * (len(vs) - len(xs)))
        xs = xs + (1,) * (len(vs) - len(xs))
    if xs and not (len(xs) == len(vs) and all(
        a is None or b is None or a == b or a == 1 for a, b in zip(xs, vs, strict=True)
    )):
        per = {"positions": "position (y_pred's shape without the class axis)",
               "sample": "sample" if len(vs) == 1 and vs != (1,) else "batch",
               "elementwise": "sample and leading axis (the mean over the last axis)"}[spec.kind]
        raise ValueError(
            f"{spec.class_name}: {what} has shape {xs} but the loss has one value per {per}, "
            f"shape {vs}; {what} must have that shape, or the batch's shape {vs[:1]} to weigh "
            "whole samples"
        )
    return xp.cast_like(x, values)


def keras_reduce(
    spec: LossSpec, xp, loss, weight, reduction, sample_weight=None, mask=None, numerics="lossplug"
):
    """Keras's reduction of a formula's ``(loss, weight)`` with ``sample_weight`` and a Keras mask.

    The values reduced are the formula's per position (class losses), per sample (Dice; one for the
    batch with ``aggregation="batch"``) or, for the elementwise losses, the mean over the last axis
    (Keras's habit; the sum over it for ``"sum"``). With ``s`` the sample weights, ``m`` the mask
    (each 1 when absent) and ``w`` the formula's weights (class weights times 0 for ignored
    targets; 1 when absent; ``loss`` already carries them):

    - ``"mean"`` (``"sum_over_batch_size"``): sum(loss s m) / sum(w m); without ``w`` and ``m``
      that is Keras's division by the number of values, with ``m`` its masked mean;
    - ``"mean_with_sample_weight"``: sum(loss s m) / sum(w s m), Keras's division by the weights;
    - ``"sum"``: sum(loss s m); ``"none"`` (``None``): loss s m, shaped like the values.

    Under ``tf.distribute`` the denominators are totals over the replicas, so each replica returns
    its share of the global mean (which Keras sums over the replicas' gradients). A ratio with a
    zero denominator is 0 (Keras's ``divide_no_nan``; NaN with ``numerics="torch"``); an empty
    batch of 1-D values gives those empty values for every reduction, as Keras's built-in losses do.
    """
    reduction = keras_reduction(reduction)
    ndim = len(xp.shape(loss))
    if ndim == 0:  # Dice over the whole batch: one value, kept 1-D
        loss = xp.reshape(loss, (1,))
    elif spec.kind == "elementwise" and ndim > 1:
        loss = xp.sum(loss, axis=-1) if reduction == "sum" else xp.mean(loss, axis=-1)
    s = None if sample_weight is None else _align(spec, xp, sample_weight, loss, "sample_weight")
    m = None if mask is None else _align(spec, xp, mask, loss, "the Keras mask")
    factor = s if m is None else m if s is None else s * m
    values = loss if factor is None else loss * factor
    if reduction == "none" or tuple(xp.shape(values)) == (0,):
        return values  # (Keras's built-ins return an empty batch's empty values for every reduction)
    total = xp.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight":
        counted = factor if weight is None else weight if factor is None else weight * factor
    else:
        counted = m if weight is None else weight if m is None else weight * m
    # 1 per value (not computed from the values: a compiler sees the count is the values' size)
    ones = xp.ones_like(values)
    den = xp.sum(ones if counted is None else counted * ones)  # counted broadcast to the values
    return mean_ratio(xp, total, xp.all_reduce_sum(den), numerics)


def poison_inputs(spec: LossSpec, xp, y_pred, y_true, params):
    """``(y_pred, taken)``: ``y_pred`` NaN at its entries that are out of range, or whose
    ``y_true`` entry is, where the value checks cannot run, for a loss of ``spec.separable`` on
    probabilities (its own formula, lossplug's numerics) on a backend whose compiler keeps that
    select inside the formula's own loop (``xp.poisons_inputs``: XLA on JAX, where a flag reduced
    along the class axis after the formula is a pass of its own, ~2x the loss's time at 2-10
    classes). The NaN reaches its position's loss through its own term, and the select gives its
    entry a zero gradient; ``taken`` tells ``poison`` that these flags are judged. Elsewhere
    ``(y_pred, False)``."""
    if not (spec.separable and getattr(xp, "poisons_inputs", False)) or not _judged(spec, xp, y_pred, params):
        return y_pred, False
    if params.get("from_logits") or params.get("numerics", "lossplug") != "lossplug":
        return y_pred, False  # (through a softmax or a renormalisation NaN reaches every entry)
    if len(xp.shape(y_true)) != len(xp.shape(y_pred)) or params.get("ignore_index") is not None:
        return y_pred, False  # (labels; an ignored sample's loss is dropped, NaN or not)
    flags = [_flag(y_pred, *_pred_range(params)), _flag(y_true, 0.0, 1.0)]
    return xp.where(functools.reduce(operator.or_, flags), float("nan"), y_pred), True


def _judged(spec, xp, y_pred, params) -> bool:
    """Whether ``poison`` has inputs to judge: in a graph, with the checks on, a batch, a range."""
    if not VALUE_CHECKS.on or not has_value_checks(spec, params) or xp.is_concrete(y_pred):
        return False
    return 0 not in xp.shape(y_pred) and spec.checks != "finite"  # (the cosine is NaN by itself)


def poison(spec: LossSpec, xp, y_pred, y_true, params, axis, loss, inputs_taken=False):
    """``loss`` made NaN where the value checks could not run and the inputs are out of range.

    Inside a compiled graph (``jit_compile``, ``torch.compile``, ``tf.function``) ``check_values``
    cannot raise; there a label out of range, a non-integer label, a probability outside [0, 1]
    or a target outside [0, 1] (and NaN in any of them) turns the loss into NaN instead of a
    plausible finite number; so do a negative Poisson count or rate and hinge labels outside
    {0, 1} and {-1, 1} (``spec.checks``). The reduced loss is NaN; unreduced, it is NaN at the bad
    entries where the checked input has the loss's shape, at the positions (samples) whose class
    vector (sample) holds one where the input reduces to the loss's shape (``_judge``), else
    everywhere. NaN or
    inf in logits propagate through the formula by themselves.
    In eager mode (the checks ran) and with ``value_checks(False)`` the loss is returned as it is,
    and so it is where ``poison_inputs`` judged the inputs (``inputs_taken``).
    """
    if inputs_taken or not _judged(spec, xp, y_pred, params):
        return loss  # (an empty batch: nothing to judge, the empty result as it is)

    flags = []  # True at the bad entries of an input, judged together at the end (``_judge``)

    def outside(x, lo, hi):
        if getattr(xp, "ranges_by_extremes", False) and _judged_whole(xp, x, loss, axis):
            flags.append(_extremes_outside(xp, x, lo, hi))
        else:
            flags.append(_flag(x, lo, hi))

    if spec.checks == "counts":
        # a negative count or rate, or NaN: one compare of the smaller, the shapes being equal
        # (XLA on TensorFlow, 4e6: 1.15-1.2x the unchecked loss's time, 1.2-1.25x with two
        # compares). XLA's minimum keeps a NaN of its first operand only: y_true's; a NaN rate
        # reaches the loss through the formula's own y_pred term
        counted = y_true if params.get("log_input") else xp.minimum(y_true, y_pred)
        outside(counted, 0.0, float("inf"))
    elif spec.checks == "signs":
        # a label other than -1, 0 or 1 (y^3 != y; NaN too), and a 0 where some label is -1 (a mix
        # of the two conventions): one pass (any y < 0), the rest in the loss's own loop
        y = xp.cast_like(y_true, loss)  # (an integer y^3 could wrap around to y)
        flags.append((y * y * y != y) | ((y == 0) & xp.any(y < 0)))
    elif _pred_range(params) is not None:
        outside(y_pred, *_pred_range(params))
    if len(xp.shape(y_true)) != len(xp.shape(y_pred)):
        labels = y_true
        ignore = params.get("ignore_index")
        if ignore is not None:
            labels = xp.where(labels == ignore, 0 * labels, labels)
        num_classes = xp.shape(y_pred)[axis]
        top = label_top(spec, params, num_classes)
        outside(labels, 0, top - 1)
        if _is_float(labels):
            flags.append(labels != xp.cast_like(xp.cast_int(labels), labels))
    elif not spec.checks:
        outside(y_true, 0.0, 1.0)
    loss, whole = _judge(xp, flags, loss, axis)
    if not whole:
        return loss
    return xp.where(functools.reduce(operator.or_, whole), float("nan"), loss)


def _flag(x, lo, hi):
    """True where ``x`` lies outside ``[lo, hi]`` (one bound may be infinite), or is NaN."""
    inside = x >= lo if hi == float("inf") else x <= hi if lo == -float("inf") else (x >= lo) & (x <= hi)
    return ~inside


def _extremes_outside(xp, x, lo, hi):
    """True (one boolean) where the least entry of ``x`` lies below ``lo`` or the greatest above
    ``hi`` (a NaN in ``x`` is both): the range test of an input judged whole, as reductions of the
    input itself (``xp.ranges_by_extremes``)."""
    inside = []
    if lo != -float("inf"):
        inside.append(xp.min(x) >= lo)
    if hi != float("inf"):
        inside.append(xp.max(x) <= hi)
    return ~functools.reduce(operator.and_, inside)


def _judged_whole(xp, flag_like, loss, axis) -> bool:
    """Whether ``_judge`` reduces a flag shaped like ``flag_like`` whole (not to the loss's shape)."""
    shape, target = _static(xp, flag_like), _static(xp, loss)
    return shape is None or (shape != target and _axes_to(shape, target, axis) is None)


def _static(xp, x):
    shape = tuple(xp.shape(x))
    return shape if all(isinstance(d, int) for d in shape) else None


def _judge(xp, flags, loss, axis):
    """``loss`` NaN where ``flags`` (True at an input's bad entries) hold a True, and the booleans
    left to judge the loss whole. The flags of one static shape are or-ed together. The flag of
    the loss's own shape (an elementwise loss's inputs, a class loss's labels) is a select per
    entry, and a flag that reduces to the loss's shape (a class loss's inputs along the class
    axis ``axis``, a per-sample loss's over each sample) is reduced by ``any`` along those axes
    and selected per position: both part of the loss's own loop rather than a pass of their own
    (XLA, inductor). Each other flag (a loss over the whole batch) is reduced by ``any`` whole
    (on TensorFlow's XLA 2-3x faster than a min or a max of a flag; on JAX, where YNNPACK takes
    the reductions, ``poison`` gives such an input's range test as its own min and max instead:
    ``_extremes_outside``)."""
    groups = {}
    for flag in flags:
        key = _static(xp, flag) or id(flag)
        groups[key] = flag if key not in groups else groups[key] | flag
    shape = _static(xp, loss)
    own, whole = groups.pop(shape, None), []
    for key, flag in groups.items():
        axes = _axes_to(key, shape, axis)
        if axes is None:
            whole.append(xp.any(flag))
        else:
            flag = xp.any(flag, axis=axes)
            own = flag if own is None else own | flag
    if own is not None:
        loss = xp.where(own, float("nan"), loss)
    return loss, whole


def _axes_to(shape, target, axis):
    """The axes whose removal makes ``shape`` the loss's shape ``target``: ``y_pred``'s class axis
    ``axis`` (for a flag of labels, one axis fewer, no match or the same as the next), or every
    axis past the batch's (a per-sample loss); else ``None``."""
    if not isinstance(shape, tuple) or not target or len(target) >= len(shape):
        return None
    samples = tuple(range(1, len(shape)))
    for axes in [samples] if axis is None else [(axis,), samples]:
        if tuple(d for a, d in enumerate(shape) if a not in axes) == target:
            return axes
    return None


def safe_labels(spec: LossSpec, xp, y_pred, y_true, params, axis):
    """Integer labels with those out of range replaced by 0 where the value checks cannot run.

    Inside a compiled graph a label out of range would index outside ``y_pred`` (an out-of-bounds
    read, or a device-side assert on a GPU); with it replaced the formula runs, and ``poison``,
    which looks at the labels as given, makes the loss NaN. Elsewhere ``y_true`` as it is.
    """
    if (not VALUE_CHECKS.on or "from_logits" not in params or xp.is_concrete(y_pred)
            or len(xp.shape(y_true)) == len(xp.shape(y_pred))):
        return y_true
    num_classes = xp.shape(y_pred)[axis] if len(xp.shape(y_pred)) else 1
    top = label_top(spec, params, num_classes)
    zero = 0 * y_true
    safe = xp.where(y_true >= 0, xp.where(y_true <= top - 1, y_true, zero), zero)
    ignore = params.get("ignore_index")
    return safe if ignore is None else xp.where(y_true == ignore, y_true, safe)


def label_top(spec: LossSpec, params, num_classes: int) -> int:
    """One past the largest valid label: ``num_classes``, or 2 on a single channel where one channel
    is binary (the overlap losses; ``numerics="monai"``: MONAI's BCE of a one-channel DiceCELoss)."""
    binary = spec.kind == "sample" or params.get("numerics") == "monai"
    return max(num_classes, 2) if binary else num_classes


def _is_float(x) -> bool:
    return "float" in str(getattr(x, "dtype", "float"))


# --- the whole path -----------------------------------------------------------------------------


def class_axis(spec: LossSpec, params, ndim: int, framework: str) -> int | None:
    """The resolved class axis of a loss that has one (0 for a scalar ``y_pred``), else ``None``."""
    if not spec.has_class_axis:
        return None
    return resolve_axis(params["axis"], ndim, framework) if ndim else 0


def formula_params(spec: LossSpec, xp, y_pred, params: dict, framework: str) -> dict:
    """The formula's keyword arguments: the parameters less ``reduction``, the axis resolved."""
    out = {k: v for k, v in params.items() if k != "reduction"}
    if spec.has_class_axis:
        out["axis"] = class_axis(spec, params, len(xp.shape(y_pred)), framework)
    return out


def prepare(spec: LossSpec, xp, y_pred, y_true, params: dict, framework: str):
    """Check shapes and values before any computation; return ``y_true`` (maybe squeezed)."""
    axis = formula_params(spec, xp, y_pred, params, framework).get("axis")
    y_true = check_shapes(spec, xp, y_pred, y_true, params, axis)
    check_values(spec, xp, y_pred, y_true, params, axis)
    return y_true


def evaluate(spec: LossSpec, xp, y_pred, y_true, params: dict, framework: str):
    """Check the inputs, run the formula, reduce: the whole path, as the NumPy functions take it."""
    y_true = prepare(spec, xp, y_pred, y_true, params, framework)
    loss, weight = spec.formula(xp, y_pred, y_true, **formula_params(spec, xp, y_pred, params, framework))
    return reduce(spec, xp, loss, weight, params["reduction"], framework, params.get("numerics", "lossplug"))
