"""Dice loss."""

from __future__ import annotations


def dice_score(xp, intersection, denominator, smooth):
    r"""The Dice ratio :math:`(2I + s)/(D + s)`; 1 where :math:`D + s = 0` (both masks empty).

    This is the extension point a subclass overrides for another smoothing rule.
    """
    num, den = 2.0 * intersection + smooth, denominator + smooth
    positive = den > 0
    one = 1.0 + 0.0 * den
    return xp.where(positive, num / xp.where(positive, den, one), one)


def dice(
    xp, y_pred, y_true, *, from_logits, smooth, squared, aggregation, per_class, class_weights,
    include_background, activation, ignore_index, axis, sync_dist, score=dice_score,
):
    r"""Dice loss :math:`1 - (2\sum\hat y y + s)/(\sum\hat y^2 + \sum y^2 + s)`.

    Returns one loss per sample (``aggregation="sample"``) or one for the batch (``"batch"``).
    ``y_true`` is either shaped like ``y_pred`` (binary, multilabel or one-hot masks) or an integer
    label map without the class axis, compared class by class along ``axis`` (as its one-hot
    encoding would be, but without building it where the backend has ``sum_by_label``). Positions
    labelled ``ignore_index`` are removed from numerator and denominator.
    """
    ndim = len(xp.shape(y_pred))
    label_map = len(xp.shape(y_true)) == ndim - 1
    num_classes = xp.shape(y_pred)[axis] if ndim > 1 else 1
    act = None  # the activation applied to y_pred: "softmax", "sigmoid" or None
    if from_logits:
        softmax = activation == "softmax" or (activation == "auto" and label_map and num_classes > 1)
        act = "softmax" if softmax else "sigmoid"

    if label_map and num_classes > 1 and axis != 0 and (not per_class or hasattr(xp, "sum_by_label")):
        intersection, denominator = _label_map_sums(
            xp, y_pred, y_true, activation=act, num_classes=num_classes, axis=axis, squared=squared,
            per_class=per_class, include_background=include_background, ignore_index=ignore_index,
        )
    else:
        intersection, denominator = _mask_sums(
            xp, _activate(xp, y_pred, act, axis), y_true, label_map=label_map, num_classes=num_classes,
            axis=axis, squared=squared,
            per_class=per_class, include_background=include_background, ignore_index=ignore_index,
        )
    if aggregation == "batch":
        intersection, denominator = xp.sum(intersection, axis=0), xp.sum(denominator, axis=0)
        if sync_dist:
            intersection, denominator = xp.all_reduce_sum(intersection), xp.all_reduce_sum(denominator)
    loss = 1.0 - score(xp, intersection, denominator, smooth)

    if per_class:  # loss is (N, C) or (C,): average over the class axis, now the last one
        if class_weights is None:
            return xp.mean(loss, axis=-1), None
        weights = class_weights if include_background else class_weights[1:]
        w = xp.constant(weights, loss)
        return xp.sum(w * loss, axis=-1) / xp.sum(w), None
    return loss, None


def _activate(xp, y_pred, activation, axis):
    if activation == "softmax":
        return xp.softmax(y_pred, axis)
    return xp.sigmoid(y_pred) if activation == "sigmoid" else y_pred


def _mask_sums(
    xp, p, y_true, *, label_map, num_classes, axis, squared, per_class, include_background, ignore_index
):
    """Intersection and denominator from a mask ``y`` shaped like ``p`` (label maps one-hot encoded)."""
    ndim = len(xp.shape(p))
    keep = None
    if label_map:
        labels = xp.cast_int(y_true)
        if ignore_index is not None:
            keep = xp.expand_dims(labels != ignore_index, axis)
            labels = xp.where(labels != ignore_index, labels, 0 * labels)
        if num_classes > 1:
            y = xp.one_hot(labels, num_classes, axis, like=p)
        else:
            y = xp.expand_dims(xp.cast_like(labels, p), axis)
    else:
        y = y_true
        if ignore_index is not None:
            keep = y_true != ignore_index
    if keep is not None:
        keep = xp.cast_like(keep, p)
        p, y = p * keep, y * keep
    if not include_background:
        p, y = xp.slice_axis(p, 1, axis), xp.slice_axis(y, 1, axis)

    axes = tuple(a for a in range(1, ndim) if not (per_class and a == axis % ndim))
    intersection = _sum(xp, p * y, axes)
    if squared:
        denominator = _sum(xp, xp.square(p), axes) + _sum(xp, xp.square(y), axes)
    else:
        denominator = _sum(xp, p, axes) + _sum(xp, y, axes)
    return intersection, denominator


def _label_map_sums(
    xp, y_pred, y_true, *, activation, num_classes, axis, squared, per_class, include_background,
    ignore_index,
):
    r"""The same sums for an integer label map, without building the one-hot ``y``.

    For a one-hot ``y``: :math:`\sum_c p_c y_c = p_{\text{label}}` (a gather) and
    :math:`\sum_c y_c^2 = \sum_c y_c = 1` per counted position; per class, both are sums
    grouped by label (``xp.sum_by_label``). A backend with ``label_class_sums`` (torch, class
    axis 1) computes all per-class sums of ``activation(y_pred)`` in one fused kernel instead.
    """
    ndim = len(xp.shape(y_pred))
    labels = xp.cast_int(y_true)
    counted = None  # 1 where a position counts: not ignore_index, not background when it is dropped
    if ignore_index is not None:
        keep = labels != ignore_index
        labels = xp.where(keep, labels, 0 * labels)
        counted = xp.cast_like(keep, y_pred)
    if axis == 1 and hasattr(xp, "label_class_sums"):  # torch: per-class sums in one fused kernel
        sums = xp.label_class_sums(y_pred, labels, counted, num_classes, squared, activation)  # (N, C)
        if not include_background:
            sums = [xp.slice_axis(t, 1, 1) for t in sums]
        if not per_class:
            sums = [xp.sum(t, axis=1) for t in sums]
        intersection, p_terms, y_terms = sums
        return intersection, p_terms + y_terms
    p = _activate(xp, y_pred, activation, axis)
    if counted is not None:
        p = p * xp.expand_dims(counted, axis)
    if not include_background:
        foreground = xp.cast_like(labels != 0, p)
        counted = foreground if counted is None else counted * foreground
    at_label = xp.squeeze(xp.take_along_axis(p, xp.expand_dims(labels, axis), axis), axis)
    if counted is None:
        counted = 1.0 + 0.0 * at_label
    else:
        at_label = at_label * counted
    p_terms = xp.square(p) if squared else p
    if not include_background:
        p_terms = xp.slice_axis(p_terms, 1, axis)
    if per_class:
        intersection = xp.sum_by_label(at_label, labels, num_classes)
        y_terms = xp.sum_by_label(counted, labels, num_classes)
        if not include_background:
            intersection, y_terms = xp.slice_axis(intersection, 1, 1), xp.slice_axis(y_terms, 1, 1)
        p_axes = tuple(a for a in range(1, ndim) if a != axis)
    else:
        label_axes = tuple(range(1, ndim - 1))
        intersection, y_terms = _sum(xp, at_label, label_axes), _sum(xp, counted, label_axes)
        p_axes = tuple(range(1, ndim))
    return intersection, _sum(xp, p_terms, p_axes) + y_terms


def _sum(xp, x, axes):
    return xp.sum(x, axis=axes) if axes else x
