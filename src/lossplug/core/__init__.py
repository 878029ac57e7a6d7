"""What every framework shares around a formula: input checks, the class axis and the reduction.

``evaluate`` is the single path from ``(y_pred, y_true)`` to a loss value; the NumPy functions,
torch modules and Keras classes are thin adapters around it.
"""

from __future__ import annotations

import contextlib

from lossplug._spec import LossSpec

_VALUE_CHECKS = True


@contextlib.contextmanager
def _restore(previous):
    global _VALUE_CHECKS
    try:
        yield
    finally:
        _VALUE_CHECKS = previous


def value_checks(enabled: bool):
    """Turn the data-dependent input checks (probability ranges, labels) on or off.

    They cost one small device-to-host sync per call; shape and parameter checks always run.
    Usable as a plain call or as a context manager that restores the previous setting::

        with lossplug.value_checks(False):
            trainer.fit(model)
    """
    global _VALUE_CHECKS
    previous, _VALUE_CHECKS = _VALUE_CHECKS, bool(enabled)
    return _restore(previous)


# --- the class axis -----------------------------------------------------------------------------


def resolve_axis(axis, ndim: int, framework: str) -> int:
    """The class axis as a non-negative int: torch's dim 1 (0 for 1-D), else the last axis."""
    if axis is None:
        axis = (1 if ndim >= 2 else 0) if framework == "torch" else -1
    if not -ndim <= axis < ndim:
        raise ValueError(f"class axis {axis} is out of range for y_pred with {ndim} dimension(s)")
    return axis % ndim


# --- input checks -------------------------------------------------------------------------------


def _shape_error(spec, y_pred_shape, y_true_shape, expected):
    return ValueError(
        f"{spec.class_name}: y_pred has shape {y_pred_shape} and y_true has shape {y_true_shape}; "
        f"y_true must have shape {expected} (lossplug never broadcasts)"
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
            raise _shape_error(spec, ps, ts, f"{label_shape} (y_pred without class axis {axis})")
    if spec.targets == "same_or_labels" and ts != ps and ts != label_shape:
        raise _shape_error(spec, ps, ts, f"{ps} or the label map {label_shape}")
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

    ``ranges`` holds the ``(min, max)`` of ``"y_pred"`` and ``"y_true"`` where a fused kernel took
    them in its own pass (``y_true``'s with ``ignore_index`` entries counted as 0); the rest are
    taken here.
    """
    if not (_VALUE_CHECKS and xp.is_concrete(y_pred)) or "from_logits" not in params:
        return
    if 0 in xp.shape(y_pred):  # an empty batch has no values to check
        return
    known = ranges or {}
    ignore = params.get("ignore_index")

    def true_range():
        if "y_true" in known:
            return known["y_true"]
        return xp.minmax(y_true if ignore is None else xp.where(y_true == ignore, 0 * y_true, y_true))

    def pred_range():
        return known["y_pred"] if "y_pred" in known else xp.minmax(y_pred)

    # Comparisons are written so that NaN fails them: `not (lo >= 0)` is True for NaN.
    if params.get("log_input"):
        lo, hi = pred_range()
        if not hi <= 0:
            raise _range_error(spec, "y_pred (log-probabilities, log_input=True)", lo, hi, "(-inf, 0]")
    elif not params["from_logits"]:
        lo, hi = pred_range()
        if not (lo >= 0 and hi <= 1):
            raise _range_error(spec, "y_pred (probabilities, from_logits=False)", lo, hi, "[0, 1]")

    is_labels = len(xp.shape(y_true)) != len(xp.shape(y_pred))
    if is_labels:
        if xp.any_nonintegral(y_true):
            raise ValueError(f"{spec.class_name}: labels in y_true must be integers")
        num_classes = xp.shape(y_pred)[axis]
        top = max(num_classes, 2) if spec.kind == "sample" else num_classes  # one channel: 0/1
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


# --- reduction ----------------------------------------------------------------------------------


def _safe_ratio(xp, num, den):
    positive = den > 0
    return xp.where(positive, num / xp.where(positive, den, 1.0 + 0.0 * den), 0.0 * num)


def reduce(spec: LossSpec, xp, loss, weight, reduction: str, framework: str):
    """Apply ``reduction`` to a formula's ``(loss, weight)``.

    "mean" is the formula (a weighted mean where ``weight`` is given; 0 if every target is
    ignored), "sum" the plain sum, "none" one value per sample for the class losses and Dice and
    one per element for the elementwise losses (Keras: one per sample, its habit). For Keras the
    result is the per-sample vector whose Keras reduction gives that mean or sum.
    """
    if framework == "keras":
        return _keras_per_sample(spec, xp, loss, weight, reduction)
    if reduction == "sum":
        return xp.sum(loss)
    if reduction == "mean":
        return xp.mean(loss) if weight is None else _safe_ratio(xp, xp.sum(loss), xp.sum(weight))
    if spec.kind == "positions" and len(xp.shape(loss)) > 1:
        return xp.mean(loss, axis=tuple(range(1, len(xp.shape(loss)))))
    return loss


def _keras_per_sample(spec, xp, loss, weight, reduction):
    ndim = len(xp.shape(loss))
    if ndim == 0:  # Dice over the whole batch: one value, kept 1-D so Keras scales it per replica
        return xp.reshape(loss, (1,))
    inner = tuple(range(1, ndim)) if spec.kind != "elementwise" else (-1,) if ndim > 1 else ()
    if reduction == "sum":
        return xp.sum(loss, axis=inner) if inner else loss
    if reduction == "mean" and weight is not None:
        # per-sample sums scaled by N / sum(weight): Keras's mean of them is the weighted mean.
        # N and sum(weight) are totals over tf.distribute replicas, so the mean is the global one.
        count = xp.all_reduce_sum(xp.cast_like(xp.ops.shape(loss)[0], loss))
        sums = xp.sum(loss, axis=inner) if inner else loss
        return sums * _safe_ratio(xp, count, xp.all_reduce_sum(xp.sum(weight)))
    return xp.mean(loss, axis=inner) if inner else loss


# --- the whole path -----------------------------------------------------------------------------


def formula_params(spec: LossSpec, xp, y_pred, params: dict, framework: str) -> dict:
    """The formula's keyword arguments: the parameters less ``reduction``, the axis resolved."""
    out = {k: v for k, v in params.items() if k != "reduction"}
    if framework == "keras" and "sync_dist" in out:
        out["sync_dist"] = True  # Keras's batch is the global one: Dice sums span tf.distribute replicas
    if spec.has_class_axis:
        ndim = len(xp.shape(y_pred))
        out["axis"] = resolve_axis(params["axis"], ndim, framework) if ndim else 0
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
    return reduce(spec, xp, loss, weight, params["reduction"], framework)
